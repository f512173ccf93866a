using System;

namespace MinerTool
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine("tool");
            return 0;
        }
    }
}
