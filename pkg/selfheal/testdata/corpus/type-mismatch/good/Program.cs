using System;

namespace Payout
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            int shares = 1200;
            Console.WriteLine(shares);
            return 0;
        }
    }
}
