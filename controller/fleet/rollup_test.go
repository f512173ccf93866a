package fleet

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// rollupMessage is the rollup's definition: the report's message holding
// only the fields history keeps. encodeRollup must encode exactly this.
func rollupMessage(rep *quarryv1.Report) *quarryv1.Report {
	out := &quarryv1.Report{Seq: rep.GetSeq(), TimeUnixNano: rep.GetTimeUnixNano()}
	if h := rep.GetHost(); h != nil {
		out.Host = &quarryv1.HostStats{CpuPercent: h.CpuPercent, MemoryUsedBytes: h.MemoryUsedBytes, MemoryTotalBytes: h.MemoryTotalBytes, Load1: h.Load1, CpuPowerW: h.CpuPowerW}
	}
	for _, g := range rep.GetGpus() {
		if g == nil {
			g = &quarryv1.GPUStats{}
		}
		out.Gpus = append(out.Gpus, &quarryv1.GPUStats{Index: g.GetIndex(), BusId: g.GetBusId(), TemperatureC: g.TemperatureC, PowerW: g.PowerW,
			FanPercent: g.GetFanPercent(), SmClockMhz: g.SmClockMhz, MemoryClockMhz: g.MemoryClockMhz, Lost: g.GetLost()})
	}
	for _, m := range rep.GetMiners() {
		out.Miners = append(out.Miners, &quarryv1.MinerStats{Miner: m.GetMiner(), Algorithm: m.GetAlgorithm(), Coin: m.GetCoin(),
			Hashrate: m.GetHashrate(), Accepted: m.GetAccepted(), Rejected: m.GetRejected(), State: m.GetState()})
	}
	return out
}

func checkRollup(t *testing.T, rep *quarryv1.Report) {
	t.Helper()
	want, werr := proto.Marshal(rollupMessage(rep))
	got, gerr := encodeRollup(rep)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("encodeRollup error %v, proto.Marshal error %v", gerr, werr)
	}
	if werr != nil {
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encodeRollup\n got  %x\n want %x (proto.Marshal of the rollup message)", got, want)
	}
	if cap(got) != len(got) {
		t.Errorf("rollup of %d bytes in a slice of capacity %d: its size was miscounted", len(got), cap(got))
	}
}

func TestRollupEncodingMatchesMarshal(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	u := func(v uint32) *uint32 { return &v }
	full := &quarryv1.Report{Seq: 1 << 40, TimeUnixNano: 1_780_000_000_123_456_789,
		Host: &quarryv1.HostStats{CpuPercent: 12.5, MemoryUsedBytes: 3 << 30, MemoryTotalBytes: 16 << 30, Load1: 0.75, Load5: 9, UptimeSeconds: 7,
			CpuPowerW: f(65), CpuPowerSource: "rapl", CpuCorePercent: []float64{1, 2}},
		Gpus: []*quarryv1.GPUStats{
			{Index: 0, Vendor: "nvidia", Name: "NVIDIA GeForce RTX 3070", BusId: "0000:01:00.0", TemperatureC: f(61), PowerW: f(118.5),
				FanPercent: []float64{55, 60}, SmClockMhz: u(1500), MemoryClockMhz: u(7000), PowerLimitW: f(130), ThrottleReasons: []string{"power"}},
			{Index: 1, BusId: "0000:02:00.0", Lost: true},
			nil,
			{Index: 300, TemperatureC: f(0), PowerW: f(math.Copysign(0, -1)), SmClockMhz: u(0), FanPercent: []float64{math.NaN()}},
		},
		Miners: []*quarryv1.MinerStats{
			{Miner: "lolminer", Version: "1.88", Algorithm: "autolykos2", Coin: "erg", Pool: "stratum+tcp://p:1", Hashrate: 840e6, Accepted: 12, Rejected: 1, Stale: 3, State: "running"},
			{Miner: "t-rex", Hashrate: math.Inf(1), State: "crashed", Error: "exit 1"},
		},
		Events: []*quarryv1.Event{{Kind: "miner_started"}},
	}
	cases := []struct {
		name string
		rep  *quarryv1.Report
	}{
		{"empty report", &quarryv1.Report{}},
		{"sequence and time only", &quarryv1.Report{Seq: 1, TimeUnixNano: 2}},
		{"negative time", &quarryv1.Report{Seq: 1, TimeUnixNano: -5}},
		{"every kept field, and fields that are not kept", full},
		{"host of zeros and negative zero", &quarryv1.Report{Host: &quarryv1.HostStats{CpuPercent: math.Copysign(0, -1), CpuPowerW: f(0)}}},
		{"empty GPU and miner", &quarryv1.Report{Gpus: []*quarryv1.GPUStats{{}}, Miners: []*quarryv1.MinerStats{{}}}},
		{"GPU bus id not UTF-8", &quarryv1.Report{Gpus: []*quarryv1.GPUStats{{BusId: "\xff"}}}},
		{"miner state not UTF-8", &quarryv1.Report{Miners: []*quarryv1.MinerStats{{State: "run\xc3"}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkRollup(t, c.rep) })
	}
}

// FuzzRollupEncoding decodes arbitrary bytes as a report, as a rig's
// report arrives, and holds the direct encoding to proto.Marshal's.
func FuzzRollupEncoding(f *testing.F) {
	seed := &quarryv1.Report{Seq: 9, TimeUnixNano: 10, Host: &quarryv1.HostStats{CpuPercent: 1, Load1: 2},
		Gpus:   []*quarryv1.GPUStats{{Index: 1, BusId: "b", FanPercent: []float64{3}}},
		Miners: []*quarryv1.MinerStats{{Miner: "m", Hashrate: 4, State: "running"}}}
	b, err := proto.Marshal(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		rep := &quarryv1.Report{}
		if proto.Unmarshal(data, rep) != nil {
			return
		}
		checkRollup(t, rep)
	})
}

func BenchmarkRollupEncoding(b *testing.B) {
	rep := benchRollupReport()
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeRollup(rep); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("message+marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(rollupMessage(rep)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchRollupReport is a six-GPU rig's report, as fleetbench makes them
// (that package imports this one, so it cannot be used here).
func benchRollupReport() *quarryv1.Report {
	f := func(v float64) *float64 { return &v }
	u := func(v uint32) *uint32 { return &v }
	rep := &quarryv1.Report{Seq: 1, TimeUnixNano: 1_780_000_000_000_000_000,
		Host: &quarryv1.HostStats{CpuPercent: 7.5, MemoryUsedBytes: 3 << 30, MemoryTotalBytes: 16 << 30, Load1: 0.8, Load5: 0.7, Load15: 0.6, UptimeSeconds: 86400}}
	miner := &quarryv1.MinerStats{Miner: "t-rex", Version: "0.26.8", Algorithm: "kawpow", Coin: "RVN", Pool: "stratum+tcp://rvn.pool.example:3333",
		State: "running", Accepted: 1200, Rejected: 3, UptimeSeconds: 86000}
	for k := range 6 {
		bus := fmt.Sprintf("00000000:%02X:00.0", k+1)
		rep.Gpus = append(rep.Gpus, &quarryv1.GPUStats{Index: uint32(k), Vendor: "nvidia", Name: "NVIDIA GeForce RTX 3070", BusId: bus,
			Uuid: fmt.Sprintf("GPU-%04x", k), TemperatureC: f(60 + float64(k)), MemoryTemperatureC: f(70), FanPercent: []float64{55},
			PowerW: f(120 + float64(k)), PowerLimitW: f(130), SmClockMhz: u(1500), MemoryClockMhz: u(7000), UtilizationPercent: f(100)})
		miner.Gpus = append(miner.Gpus, &quarryv1.MinerGPU{BusId: bus, Hashrate: 30e6})
		miner.Hashrate += 30e6
	}
	rep.Miners = []*quarryv1.MinerStats{miner}
	return rep
}
