using System;

namespace Watchdog
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine("watchdog ok");
            return 0;
        }
    }
}
