using System;

namespace PayoutCalc
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            decimal balance = 0.0421m;
            int satoshis = "4210000";
            Console.WriteLine(balance + satoshis);
            return 0;
        }
    }
}
