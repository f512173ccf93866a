namespace Miner.Util
{
    public static class Fmt { public static string Temp(int c) { return c + "C"; } }
}
