using System;
using System.Net.Http;

namespace PoolApi
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            var req = new HttpRequestMessage(HttpMethod.Post, "http://pool.example/api");
            Console.WriteLine(req.Method + " " + req.RequestUri.AbsolutePath);
            return 0;
        }
    }
}
