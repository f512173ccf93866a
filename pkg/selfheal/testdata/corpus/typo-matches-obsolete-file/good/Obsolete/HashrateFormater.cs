namespace RigReport
{
    // Kept for reference; replaced by HashrateFormatter.
    public sealed class HashrateFormater
    {
        public string Format(double hashesPerSecond)
        {
            return hashesPerSecond + " H/s";
        }
    }
}
