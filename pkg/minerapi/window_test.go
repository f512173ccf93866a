package minerapi_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/minerapi/internal/recorded"
)

func TestXmrig2HealthOnRealCapture(t *testing.T) {
	st, err := minerapi.ParseXmrig(get(recorded.Xmrig2Summary), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !near(st.TotalHashrate, 3522.59) || st.Version != "2.6.1" || st.Accepted != 4 || st.Rejected != 0 ||
		st.Pool != "pool.supportxmr.com:7777" || st.Algorithm != "cryptonight" {
		t.Errorf("reading = %+v", st)
	}
	if len(st.GPUs) != 8 {
		t.Fatalf("%d GPUs from health, want 8", len(st.GPUs))
	}
	g := st.GPUs[0]
	if g.Name != "GeForce GTX 1070 Ti" || !near(g.Hashrate, 477.26) || *g.TemperatureC != 54 || *g.FanPercent != 53 || *g.PowerW != 93 {
		t.Errorf("GPU 0 = %+v", g)
	}
	if st.HottestC == nil || *st.HottestC != 54 {
		t.Errorf("HottestC = %v, want 54", st.HottestC)
	}
}

// TestXmrigCompleteWindow: a total taken while some threads have no 10 s
// figure yet is partial; the reading moves to the 60 s window for the total
// and for every device, or reports warming up when no window is complete.
func TestXmrigCompleteWindow(t *testing.T) {
	full := string(get(recorded.Xmrig2Summary))
	thread3 := "[\n                471.32,\n                468.27,"
	if !strings.Contains(full, thread3) {
		t.Fatal("capture changed")
	}
	partial := strings.Replace(full, thread3, "[\n                null,\n                468.27,", 1)
	st, err := minerapi.ParseXmrig([]byte(partial), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !near(st.TotalHashrate, 3526.79) {
		t.Errorf("TotalHashrate = %g, want the 60 s total 3526.79", st.TotalHashrate)
	}
	if !near(st.GPUs[0].Hashrate, 479.49) || !near(st.GPUs[3].Hashrate, 468.27) {
		t.Errorf("GPU rates %g, %g: want both from the 60 s window", st.GPUs[0].Hashrate, st.GPUs[3].Hashrate)
	}

	warming := strings.Replace(partial, "[\n                471.32", "[\n                null", 1)
	warming = strings.Replace(warming, "null,\n                468.27,", "null,\n                null,", 1)
	warming = strings.Replace(warming, "0.0\n        ],\n        \"highest\"", "null\n        ],\n        \"highest\"", 1)
	st, err = minerapi.ParseXmrig([]byte(warming), nil)
	if !errors.Is(err, minerapi.ErrNoHashrate) || !strings.Contains(err.Error(), "warming") || st.TotalHashrate != 0 {
		t.Errorf("err = %v total %g; want warming up with no made-up total", err, st.TotalHashrate)
	}
	if st.Version != "2.6.1" || len(st.GPUs) != 8 {
		t.Errorf("a warming reading still carries the rest: %+v", st)
	}

	// xmrig 6: threads live in /2/backends.
	back := string(get(recorded.XmrigBackends))
	sum := get(recorded.XmrigSummary)
	whole, err := minerapi.ParseXmrig(sum, []byte(back))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(back, `"threads": [`)
	i += strings.Index(back[i:], `"hashrate": [`)
	if i < 0 {
		t.Fatal("backends capture has no thread hashrate")
	}
	j := i + len(`"hashrate": [`)
	k := strings.IndexAny(back[j:], ",]")
	nulled := back[:j] + "null" + back[j+k:]
	st, err = minerapi.ParseXmrig(sum, []byte(nulled))
	if err != nil {
		t.Fatal(err)
	}
	if near(st.TotalHashrate, whole.TotalHashrate) {
		t.Errorf("TotalHashrate %g is the 10 s total although a thread has no 10 s figure", st.TotalHashrate)
	}
}

func TestLolminerFlatOnRealCapture(t *testing.T) {
	st, err := minerapi.ParseLolminer(get(recorded.Lolminer041))
	if err != nil {
		t.Fatal(err)
	}
	// TotalSpeed(60s) is still blank: the 5 s window is the complete one.
	if !near(st.TotalHashrate, 24722.0225) || st.Version != "0.41" || st.Algorithm != "Equihash 144.5" ||
		st.Pool != "mine-btcz-euro.equipool.1ds.us:50061" {
		t.Errorf("reading = %+v", st)
	}
	if len(st.GPUs) != 2 || !near(st.GPUs[0].Hashrate, 13468.8252) || !near(st.GPUs[1].Hashrate, 11253.1973) ||
		st.GPUs[1].Name != "Radeon RX 580 Series" {
		t.Errorf("GPUs = %+v", st.GPUs)
	}
	// One card without a 5 s figure and no 60 s total yet: warming up,
	// not a total that leaves the card out.
	b := strings.Replace(string(get(recorded.Lolminer041)), `"Speed(5s)": "11253.1973"`, `"Speed(5s)": " "`, 1)
	st, err = minerapi.ParseLolminer([]byte(b))
	if !errors.Is(err, minerapi.ErrNoHashrate) || st.TotalHashrate != 0 {
		t.Errorf("err = %v total %g; want no hashrate yet", err, st.TotalHashrate)
	}
}

func TestCGMinerWindow(t *testing.T) {
	// cgminer's scrypt builds report "MHS 20s"; it beats "MHS av", and 5 s
	// beats it.
	sum := func(fields string) []byte {
		return []byte(`{"STATUS":[{"STATUS":"S","Description":"cgminer 3.7.2"}],"SUMMARY":[{"Elapsed":60,` + fields + `}],"id":1}`)
	}
	for _, tc := range []struct {
		fields string
		want   float64
	}{
		{`"MHS av":0.9,"MHS 20s":0.68`, 0.68e6},
		{`"MHS av":0.9,"MHS 20s":0.68,"MHS 5s":0.7`, 0.7e6},
		{`"MHS av":0.9,"MHS 1m":0.8,"MHS 20s":0.68`, 0.68e6},
		{`"MHS av":0.9,"MHS 20s":null`, 0.9e6},
	} {
		st, err := minerapi.ParseCGMiner(sum(tc.fields), nil, nil, nil)
		if err != nil || !near(st.TotalHashrate, tc.want) {
			t.Errorf("%s: %g, %v; want %g", tc.fields, st.TotalHashrate, err, tc.want)
		}
	}
}

func TestOlderAPIsAgainstFakeMiner(t *testing.T) {
	tests := []struct {
		api, adapter string
		total        float64
		version      string
		gpus         int
		hottest      float64
	}{
		{"xmrig2", "xmrig", 3522.59, "2.6.1", 8, 54},
		{"wildrig", "wildrig", 693.13, "0.10.0", 0, 0},
		{"lolminer-041", "lolminer", 24722.0225, "0.41", 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.api, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, tc.api)
			st, err := newAdapter(t, tc.adapter, minerapi.Options{}).Stats(ctx(t), f.ep)
			if err != nil {
				t.Fatalf("Stats: %v", err)
			}
			if !near(st.TotalHashrate, tc.total) || st.Version != tc.version || len(st.GPUs) != tc.gpus || st.Miner != tc.adapter {
				t.Errorf("got %s %g %q %d GPUs; want %s %g %q %d", st.Miner, st.TotalHashrate, st.Version, len(st.GPUs),
					tc.adapter, tc.total, tc.version, tc.gpus)
			}
			if tc.hottest != 0 && (st.HottestC == nil || *st.HottestC != tc.hottest) {
				t.Errorf("HottestC = %v, want %v", st.HottestC, tc.hottest)
			}
			f.cue(t, "hashrate 0.5")
			eventually(t, "half rate", func() (bool, string) {
				st, err := newAdapter(t, tc.adapter, minerapi.Options{}).Stats(ctx(t), f.ep)
				return err == nil && near(st.TotalHashrate, tc.total/2), errString(st, err)
			})
		})
	}
}

func TestGPUMinersReportHottest(t *testing.T) {
	for name, parse := range map[string]func([]byte) (minerapi.Stats, error){
		recorded.TrexSummary: minerapi.ParseTrex, recorded.GminerStat: minerapi.ParseGminer, recorded.LolminerNew: minerapi.ParseLolminer,
	} {
		st, err := parse(get(name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var want float64
		for _, g := range st.GPUs {
			if g.TemperatureC != nil && *g.TemperatureC > want {
				want = *g.TemperatureC
			}
		}
		if want == 0 || st.HottestC == nil || *st.HottestC != want {
			t.Errorf("%s: HottestC = %v, want %v", name, st.HottestC, want)
		}
	}
}
