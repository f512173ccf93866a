package minerapi_test

import (
	"errors"
	"math"
	"testing"

	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/minerapi/internal/recorded"
)

// checkStats holds for every reading a parser returns: errors come from
// this package's classes, and no hashrate is negative or not a number.
func checkStats(t *testing.T, st minerapi.Stats, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, minerapi.ErrBadReply) && !errors.Is(err, minerapi.ErrNoHashrate) {
		t.Fatalf("error outside the package's classes: %v", err)
	}
	bad := func(f float64) bool { return f < 0 || math.IsNaN(f) || math.IsInf(f, 0) }
	if bad(st.TotalHashrate) {
		t.Fatalf("TotalHashrate = %v", st.TotalHashrate)
	}
	for _, g := range st.GPUs {
		if bad(g.Hashrate) {
			t.Fatalf("GPU hashrate = %v", g.Hashrate)
		}
		if g.BusID != "" && len(g.BusID) != len("0000:01:00.0") {
			t.Fatalf("bus id %q not normalised", g.BusID)
		}
	}
}

func FuzzParseXmrig(f *testing.F) {
	f.Add(recorded.MustGet(recorded.XmrigSummary), recorded.MustGet(recorded.XmrigBackends))
	f.Add([]byte(`{"version":"6","hashrate":{"total":[null,null,null]}}`), []byte(`[]`))
	f.Add(recorded.MustGet(recorded.Xmrig2Summary), []byte(nil))
	f.Add(recorded.MustGet(recorded.WildRigSummary), []byte(nil))
	f.Fuzz(func(t *testing.T, sum, back []byte) {
		st, err := minerapi.ParseXmrig(sum, back)
		checkStats(t, st, err)
	})
}

func FuzzParseTrex(f *testing.F) {
	f.Add(recorded.MustGet(recorded.TrexSummary))
	f.Add([]byte(`{"hashrate":1,"gpus":[{"pci_bus":300,"pci_id":-1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := minerapi.ParseTrex(b)
		checkStats(t, st, err)
	})
}

func FuzzParseLolminer(f *testing.F) {
	f.Add(recorded.MustGet(recorded.Lolminer1x))
	f.Add(recorded.MustGet(recorded.LolminerNew))
	f.Add(recorded.MustGet(recorded.Lolminer041))
	f.Add([]byte(`{"Algorithms":[{"Total_Performance":1,"Performance_Factor":0,"Performance_Unit":"x"}],"Workers":[{"PCIE_Address":"1:99"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := minerapi.ParseLolminer(b)
		checkStats(t, st, err)
	})
}

func FuzzParseGminer(f *testing.F) {
	f.Add(recorded.MustGet(recorded.GminerStat))
	f.Add([]byte(`{"miner":"g","speedUnit":"MH/s","devices":[{"speed":"1.5","bus_id":"zz"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := minerapi.ParseGminer(b)
		checkStats(t, st, err)
	})
}

func FuzzParseCGMiner(f *testing.F) {
	g := recorded.MustGet
	f.Add(g(recorded.CGMinerSummary), g(recorded.CGMinerDevs), g(recorded.CGMinerPools), []byte(nil), []byte(nil), []byte(nil), "")
	f.Add(g(recorded.BMMinerSummary), []byte(nil), g(recorded.BMMinerPools), g(recorded.BMMinerStats), []byte(nil), []byte(nil), "")
	f.Add([]byte(nil), []byte(nil), g(recorded.AntminerL3PlusPools), g(recorded.AntminerL3PlusStats), []byte(nil), []byte(nil), "scrypt")
	f.Add(g(recorded.AntminerZ9Summary), []byte(nil), []byte(nil), []byte(nil), g(recorded.AntminerZ9Version), []byte(nil), "equihash")
	f.Add([]byte(nil), []byte(nil), g(recorded.InnosiliconA9Pools), g(recorded.InnosiliconA9Stats), []byte(nil), []byte(nil), "equihash")
	f.Add(g(recorded.BOSminerSummary), []byte(nil), g(recorded.BOSminerPools), []byte(nil), g(recorded.BOSminerVersion), g(recorded.BOSminerTemps), "")
	f.Add(g(recorded.WhatsminerSummary), []byte(nil), g(recorded.WhatsminerPools), g(recorded.WhatsminerBadCmd), []byte(nil), []byte(nil), "")
	f.Add(append(g(recorded.AntminerD3Summary), "\x00junk"...), []byte(nil), []byte(nil), g(recorded.AntminerS17Stats), []byte(nil), []byte(nil), "")
	f.Fuzz(func(t *testing.T, sum, devs, pools, stats, version, temps []byte, algo string) {
		st, err := minerapi.ParseCGMinerReplies(minerapi.CGReplies{
			Summary: sum, Devs: devs, Pools: pools, Stats: stats, Version: version, Temps: temps, Algorithm: algo,
		})
		checkStats(t, st, err)
		if st.HottestC != nil && (*st.HottestC <= 0 || *st.HottestC >= 150) {
			t.Fatalf("HottestC = %v is not a real reading", *st.HottestC)
		}
	})
}

func FuzzParseClaymore(f *testing.F) {
	f.Add(recorded.MustGet(recorded.PhoenixGetstat1), "")
	f.Add(recorded.MustGet(recorded.TTMinerGetstat1), "ethash")
	f.Add([]byte(`{"result":["x","-1","-5;a;b","off;1e400","","","999;-1;nan","",""]}`), "kawpow")
	f.Fuzz(func(t *testing.T, b []byte, algo string) {
		st, err := minerapi.ParseClaymore(b, algo)
		checkStats(t, st, err)
	})
}

func FuzzParseCCMiner(f *testing.F) {
	g := recorded.MustGet
	f.Add(g(recorded.CCMinerSummary), []byte(nil), g(recorded.CCMinerPool), g(recorded.CCMinerHWInfo))
	f.Add(g(recorded.CPUMinerSummary), g(recorded.CPUMinerThreads), []byte(nil), []byte(nil))
	f.Add([]byte("NAME=x;KHS=-1|"), []byte("GPU=99999;BUS=300;KHS=1e400;POWER=-5|CPU=-1|"), []byte("|||"), []byte("GPU=0;TEMP=nan|"))
	f.Fuzz(func(t *testing.T, sum, threads, pool, hw []byte) {
		st, err := minerapi.ParseCCMiner(minerapi.CCMinerReplies{Summary: sum, Threads: threads, Pool: pool, HWInfo: hw})
		checkStats(t, st, err)
	})
}

func FuzzParseJSONMiners(f *testing.F) {
	for _, n := range []string{recorded.SRBMinerMulti, recorded.SRBMinerMultiCPU, recorded.SRBMinerMulti363,
		recorded.NBMinerStatus, recorded.NanominerStats, recorded.MiniZGetstat} {
		f.Add(recorded.MustGet(n))
	}
	f.Add([]byte(`{"Algorithms":[{"X":{"GPU 99999":{"Hashrate":"-1"},"Total":{"Hashrate":"1e400"}}}],"Devices":[{"GPU -1":{"Pci":"zz"}}]}`))
	f.Add([]byte(`{"miner":{"devices":[{"hashrate_raw":-3,"fan":300,"pci_bus_id":"ff:1f.7"}]},"gpu_hashrate":[{"GPU-1":1,"total":-2}]}`))
	f.Add([]byte(`{"algorithms":[{"hashrate":{"gpu":{"gpu01":1,"gpu1":2,"gpu-1":3,"total":-1},"cpu":{"total":1e308}}}],"gpu_devices":[{"device":"gpu1","bus_id":999,"fan_speed_percent":101}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, parse := range []func([]byte) (minerapi.Stats, error){
			minerapi.ParseSRBMiner, minerapi.ParseNBMiner, minerapi.ParseNanominer, minerapi.ParseMiniZ,
		} {
			st, err := parse(b)
			checkStats(t, st, err)
		}
	})
}

func FuzzParseRigel(f *testing.F) {
	f.Add(recorded.MustGet(recorded.Rigel))
	f.Add([]byte(`{"algorithm":"a+b","hashrate":{"a":1},"pools":{"a":[{"connection_details":{"hostname":"h","port":1e9}}]},` +
		`"devices":[{"id":-5,"pci_address":"zz:99","hashrate":{"a":-1},"monitoring_info":{"fan_speed":300}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := minerapi.ParseRigel(b)
		checkStats(t, st, err)
	})
}

func FuzzParseCustom(f *testing.F) {
	f.Add(recorded.MustGet(recorded.LolminerNew), "Algorithms.0.Total_Performance", "Algorithms.0.Worker_Performance")
	f.Add([]byte(`{"a":[1,"2",null,{"b":3}]}`), "a.3.b", "a")
	f.Fuzz(func(t *testing.T, b []byte, total, rates string) {
		m := minerapi.CustomMapping{URL: "/", Total: total, GPURates: rates, GPUBusIDs: rates, GPUTemps: rates, UnitPath: total}
		st, err := minerapi.ParseCustom(m, b)
		checkStats(t, st, err)
	})
}

func FuzzNormalizeBusID(f *testing.F) {
	for _, s := range []string{"0000:01:00.0", "00000000:0A:00.0", "01:00.0", "1:0", "", "::.", "ffff:ff:1f.7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := minerapi.NormalizeBusID(s)
		if err != nil {
			return
		}
		again, err := minerapi.NormalizeBusID(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeBusID(%q) = %q, not a fixed point (%q, %v)", s, got, again, err)
		}
	})
}
