namespace Payout
{
    public sealed class PayoutTable { public override string ToString() { return "table"; } }
}
