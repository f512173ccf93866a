using System;
using System.Xml.Linq;

namespace PoolConfig
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            var doc = XDocument.Parse("<pools><pool url=\"stratum+tcp://pool.example:3333\"/></pools>");
            foreach (var p in doc.Root.Elements("pool"))
            {
                Console.WriteLine((string)p.Attribute("url"));
            }
            return 0;
        }
    }
}
