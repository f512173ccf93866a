using System;
using Acme.Units;

namespace Rig
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine("rig8 " + Hashrate.Mega(48.25e6));
            return 0;
        }
    }
}
