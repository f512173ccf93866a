using System;
using System.Web.Script.Serialization;

namespace PoolList
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            var js = new JavaScriptSerializer();
            Console.WriteLine(js.Serialize(new[] { "eth", "etc" }));
            return 0;
        }
    }
}
