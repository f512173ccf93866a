using System;

namespace PayoutCalc
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            decimal shares = 1200m;
            decimal perShare = 0.0025m;
            Console.WriteLine("payout: " + (shares * perShare));
            return 0;
        }
    }
}
