namespace Pool.Math
{
    public static class Shares
    {
        public static decimal Payout(decimal shares, decimal perShare)
        {
            return shares * perShare;
        }
    }
}
