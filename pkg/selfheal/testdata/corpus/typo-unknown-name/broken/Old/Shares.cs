namespace PayoutCalc
{
    static class Old { public static decimal sharez = 1m; }
}
