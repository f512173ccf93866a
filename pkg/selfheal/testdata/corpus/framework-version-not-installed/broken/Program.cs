using System;

namespace FanCurve
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine("75C -> 90%");
            return 0;
        }
    }
}
