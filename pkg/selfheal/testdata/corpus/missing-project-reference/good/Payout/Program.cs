using System;
using Pool.Math;

namespace Payout
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine("payout " + Shares.Payout(1200m, 0.0025m));
            return 0;
        }
    }
}
