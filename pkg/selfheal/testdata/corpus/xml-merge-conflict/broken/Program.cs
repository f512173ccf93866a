using System;

namespace Uptime
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine("uptime ok");
            return 0;
        }
    }
}
