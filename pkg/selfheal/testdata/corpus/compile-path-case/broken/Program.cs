using System;
using Rig.Models;

namespace Rig
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            Console.WriteLine(new RigStatus("rig7", 71).ToString());
            return 0;
        }
    }
}
