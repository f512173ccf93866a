namespace Rig.Models
{
    public sealed class RigStatus
    {
        readonly string name; readonly int temp;
        public RigStatus(string name, int temp) { this.name = name; this.temp = temp; }
        public override string ToString() { return name + " " + temp + "C"; }
    }
}
