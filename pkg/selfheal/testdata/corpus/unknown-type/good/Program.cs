using System;

namespace Payout
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine(new Random(1).Next(10));
            return 0;
        }
    }
}
