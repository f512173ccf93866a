using System;

namespace FanCurve
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            int[] temps = { 40, 60, 75 };
            foreach (var t in temps)
            {
                Console.WriteLine("{0}C -> {1}%", t, Math.Min(100, Math.Max(30, (t - 30) * 2)));
            }
            return 0;
        }
    }
}
