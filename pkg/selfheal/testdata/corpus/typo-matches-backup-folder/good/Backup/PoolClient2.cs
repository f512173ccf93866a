namespace Payout
{
    public class PoolClient2 { public string Url = "stratum+tcp://old:1"; }
}
