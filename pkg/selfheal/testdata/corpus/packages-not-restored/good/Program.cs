using System;
using Acme.Units;

namespace Rig
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine("rig0 " + Hashrate.Mega(61.5e6));
            return 0;
        }
    }
}
