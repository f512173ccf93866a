namespace Payout
{
    public class PoolClient { public string Url = "stratum+tcp://a:1"; }
}
