using System.Globalization;

namespace RigReport
{
    // Added to the tree but never to the project file: the classic
    // "works in the IDE on my machine" mistake.
    public sealed class HashrateFormatter
    {
        public string Format(double hashesPerSecond)
        {
            return (hashesPerSecond / 1e6).ToString("0.00", CultureInfo.InvariantCulture) + " MH/s";
        }
    }
}
