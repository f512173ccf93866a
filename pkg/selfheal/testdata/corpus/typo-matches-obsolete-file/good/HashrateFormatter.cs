using System.Globalization;

namespace RigReport
{
    public sealed class HashrateFormatter
    {
        public string Format(double hashesPerSecond)
        {
            return (hashesPerSecond / 1e6).ToString("0.00", CultureInfo.InvariantCulture) + " MH/s";
        }
    }
}
