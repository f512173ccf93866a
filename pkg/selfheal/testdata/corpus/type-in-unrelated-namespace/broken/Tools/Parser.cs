namespace Payout.Tools
{
    public class Parser { public string Name = "parser"; }
}
