namespace Payout
{
    public sealed class PayoutTableOld { public override string ToString() { return "old table"; } }
}
