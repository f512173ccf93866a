using System;
using System.Xml.Linq;

namespace PoolConfig
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            var x = XElement.Parse("<pool url=\"stratum+tcp://pool.example:3333\" />");
            Console.WriteLine((string)x.Attribute("url"));
            return 0;
        }
    }
}
