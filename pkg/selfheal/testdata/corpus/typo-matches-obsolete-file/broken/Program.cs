using System;

namespace RigReport
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            var f = new HashrateFormater();
            Console.WriteLine(f.Format(61.5e6));
            return 0;
        }
    }
}
