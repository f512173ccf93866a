using System;
using System.Runtime.Serialization.Json;

namespace ShareLog
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            var ser = new DataContractJsonSerializer(typeof(int[]));
            var ms = new System.IO.MemoryStream();
            ser.WriteObject(ms, new[] { 3, 1, 4 });
            Console.WriteLine(System.Text.Encoding.UTF8.GetString(ms.ToArray()));
            return 0;
        }
    }
}
