using System;
using Miner.Util;

namespace Miner
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine(Fmt.Temp(71));
            return 0;
        }
    }
}
