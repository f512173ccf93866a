// Acme.Units 1.0.0, the package the case's local feed holds. The test
// compiles it with mcs once per lib folder (net40, net45, net472), each
// build marking its output, so the program prints which one the project
// references: a v4.5 project must get net45.
namespace Acme.Units
{
    public static class Hashrate
    {
        public static string Mega(double h)
        {
            return (h / 1e6).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture) + " MH/s (" + Lib + ")";
        }

#if NET472
        const string Lib = "net472";
#elif NET45
        const string Lib = "net45";
#else
        const string Lib = "net40";
#endif
    }
}
