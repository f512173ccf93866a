using System;

namespace Payout
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine(Math.Rnd(2.5));
            return 0;
        }
    }
}
