using System;

namespace Payout
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine(new Tools.Parser().Name);
            return 0;
        }
    }
}
