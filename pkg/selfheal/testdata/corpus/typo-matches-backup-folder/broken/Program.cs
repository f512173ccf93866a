using System;

namespace Payout
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine(new PoolClient2().Url);
            return 0;
        }
    }
}
