using System;

namespace Payout
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine(new Randm(1).Next(10));
            return 0;
        }
    }
}
