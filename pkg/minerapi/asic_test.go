package minerapi_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/minerapi/internal/recorded"
)

func get(name string) []byte {
	if name == "" {
		return nil
	}
	return recorded.MustGet(name)
}

// TestASICUnitsOnRealCaptures: each machine's rate, read from its own
// capture, lands next to the machine's rated figure. Before the unit table
// the Scrypt and X11 readings were 1,000 times too high and the Equihash
// ones 1,000 to 1,000,000 times off.
func TestASICUnitsOnRealCaptures(t *testing.T) {
	tests := []struct {
		name      string
		r         minerapi.CGReplies
		model     string
		total     float64 // H/s or Sol/s
		rated     float64 // the machine's rated figure, for the sanity bound
		boards    []float64
		wrongWith float64 // what the field name alone would have said
	}{
		{name: "Antminer L3+ (scrypt, 504 MH/s)",
			r:     minerapi.CGReplies{Stats: get(recorded.AntminerL3PlusStats), Pools: get(recorded.AntminerL3PlusPools)},
			model: "Antminer L3+", total: 504.56e6, rated: 504e6,
			boards: []float64{126.12e6, 125.79e6, 126.06e6, 126.59e6}, wrongWith: 504.56e9},
		{name: "Antminer D3 summary and stats (X11, 15-19 GH/s)",
			r:     minerapi.CGReplies{Summary: get(recorded.AntminerD3Summary), Stats: get(recorded.AntminerD3Stats)},
			model: "Antminer D3 Blissz v2.06 beta", total: 15679.6e6, rated: 17e9,
			boards: []float64{5287.83e6, 5631.41e6, 5427.41e6}, wrongWith: 15679.6e9},
		{name: "Antminer Z9-Mini by model (Equihash, 10 kSol/s rated, tuned)",
			r:     minerapi.CGReplies{Summary: get(recorded.AntminerZ9Summary), Version: get(recorded.AntminerZ9Version)},
			model: "Antminer Z9-Mini", total: 16.76e3, rated: 10e3, wrongWith: 16.76e9},
		{name: "Antminer Z9-Mini by algorithm",
			r:     minerapi.CGReplies{Summary: get(recorded.AntminerZ9Summary), Algorithm: "equihash"},
			total: 16.76e3, rated: 10e3, wrongWith: 16.76e9},
		{name: "Innosilicon A9 by algorithm (Equihash, 50 kSol/s)",
			r:     minerapi.CGReplies{Stats: get(recorded.InnosiliconA9Stats), Pools: get(recorded.InnosiliconA9Pools), Algorithm: "Equihash"},
			total: 49500, rated: 50e3, boards: []float64{16500, 16500, 16500}, wrongWith: 49500e6},
		{name: "Antminer S17 Pro (SHA-256, 53 TH/s): GHS means GH/s",
			r:     minerapi.CGReplies{Stats: get(recorded.AntminerS17Stats), Pools: get(recorded.AntminerS17Pools)},
			model: "Antminer S17 Pro", total: 54997.01e9, rated: 53e12,
			boards: []float64{17968.26e9, 18418.00e9, 18610.75e9}, wrongWith: 54997.01e9},
		{name: "BOSminer S9 (SHA-256, 14 TH/s): MHS means MH/s",
			r:     minerapi.CGReplies{Summary: get(recorded.BOSminerSummary), Version: get(recorded.BOSminerVersion), Temps: get(recorded.BOSminerTemps)},
			total: 15740915.842676325e6, rated: 14e12, wrongWith: 15740915.842676325e6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := minerapi.ParseCGMinerReplies(tc.r)
			if err != nil {
				t.Fatalf("ParseCGMinerReplies: %v", err)
			}
			if !near(st.TotalHashrate, tc.total) {
				t.Errorf("TotalHashrate = %g, want %g", st.TotalHashrate, tc.total)
			}
			// Within a factor of two of the rated figure: a unit error is
			// a factor of 1,000 or more.
			if st.TotalHashrate < tc.rated/2 || st.TotalHashrate > tc.rated*2 {
				t.Errorf("TotalHashrate %g is not near the rated %g", st.TotalHashrate, tc.rated)
			}
			if tc.wrongWith != tc.total && near(st.TotalHashrate, tc.wrongWith) {
				t.Errorf("TotalHashrate %g is the field name's unit", st.TotalHashrate)
			}
			if st.Model != tc.model {
				t.Errorf("Model = %q, want %q", st.Model, tc.model)
			}
			if tc.boards != nil {
				if len(st.GPUs) != len(tc.boards) {
					t.Fatalf("%d boards, want %d: %+v", len(st.GPUs), len(tc.boards), st.GPUs)
				}
				for i, want := range tc.boards {
					if !near(st.GPUs[i].Hashrate, want) {
						t.Errorf("board %d = %g, want %g", i, st.GPUs[i].Hashrate, want)
					}
				}
			}
		})
	}
}

func TestASICUnitTableRows(t *testing.T) {
	// Rows without a capture of their own follow the same field layout;
	// a version reply naming the model is enough to pick them.
	sum := get(recorded.AntminerZ9Summary) // "GHS 5s":"16.76"
	tests := []struct {
		model, algo string
		want        float64
	}{
		{"Antminer L3++", "", 16.76e6},
		{"Antminer D3", "", 16.76e6},
		{"Antminer E3", "", 16.76e6},
		{"Antminer B3", "", 16.76},
		{"Antminer Z15", "", 16.76e3},
		{"Antminer S9", "", 16.76e9},
		{"", "scrypt", 16.76e6},
		{"", "X11", 16.76e6},
		{"", "equihash144_5", 16.76e3},
		{"", "sha256", 16.76e9},
		{"Antminer L3+", "sha256", 16.76e6}, // the model wins over a wrong sheet
	}
	for _, tc := range tests {
		var ver []byte
		if tc.model != "" {
			ver = []byte(`{"STATUS":[{"STATUS":"S","Description":"cgminer 4.9.0"}],"VERSION":[{"Type":"` + tc.model + `"}],"id":1}`)
		}
		st, err := minerapi.ParseCGMinerReplies(minerapi.CGReplies{Summary: sum, Version: ver, Algorithm: tc.algo})
		if err != nil || !near(st.TotalHashrate, tc.want) {
			t.Errorf("%q/%q: %g, %v; want %g", tc.model, tc.algo, st.TotalHashrate, err, tc.want)
		}
	}
}

// TestASICTemperatures: the hottest real sensor of each board counts,
// including the per-chip strings, and empty chain slots are not boards.
func TestASICTemperatures(t *testing.T) {
	t.Run("S17 Pro temp_chip strings and 13 empty slots", func(t *testing.T) {
		st, err := minerapi.ParseCGMinerReplies(minerapi.CGReplies{Stats: get(recorded.AntminerS17Stats)})
		if err != nil {
			t.Fatal(err)
		}
		// temp_chip1 "48-80-49-70", temp2_1 80, temp1 50, temp_pcb1 "22-53-21-50".
		want := []float64{80, 75, 63}
		if len(st.GPUs) != len(want) {
			t.Fatalf("%d boards, want 3 (slots 4-16 have 0 chips): %+v", len(st.GPUs), st.GPUs)
		}
		for i, w := range want {
			if got := st.GPUs[i].TemperatureC; got == nil || *got != w {
				t.Errorf("board %d temperature = %v, want %v", i, got, w)
			}
		}
		if st.HottestC == nil || *st.HottestC != 80 {
			t.Errorf("HottestC = %v, want 80", st.HottestC)
		}
	})
	t.Run("chip string hotter than the board sensors", func(t *testing.T) {
		// The shape from the field: PCB sensors at 56 while the chip
		// string reads 85. Only temp_chip1 is changed from the capture.
		b := replaceOnce(t, get(recorded.AntminerS17Stats), `"temp_chip1":"48-80-49-70"`, `"temp_chip1":"29-54-30-85"`)
		b = replaceOnce(t, b, `"temp2_1":80`, `"temp2_1":56`)
		b = replaceOnce(t, b, `"temp3_1":80`, `"temp3_1":56`)
		st, err := minerapi.ParseCGMinerReplies(minerapi.CGReplies{Stats: b})
		if err != nil {
			t.Fatal(err)
		}
		if got := st.GPUs[0].TemperatureC; got == nil || *got != 85 {
			t.Errorf("board 0 temperature = %v, want 85 from temp_chip1", got)
		}
	})
	t.Run("D3 empty fourth slot", func(t *testing.T) {
		st, err := minerapi.ParseCGMinerReplies(minerapi.CGReplies{Stats: get(recorded.AntminerD3Stats)})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.GPUs) != 3 {
			t.Fatalf("%d boards, want 3", len(st.GPUs))
		}
		if got := st.GPUs[0].TemperatureC; got == nil || *got != 69 {
			t.Errorf("board 0 temperature = %v, want 69 (temp2_1)", got)
		}
	})
	t.Run("A9 board without chips", func(t *testing.T) {
		st, err := minerapi.ParseCGMinerReplies(minerapi.CGReplies{Stats: get(recorded.InnosiliconA9Stats), Algorithm: "equihash"})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.GPUs) != 3 || st.HottestC == nil || *st.HottestC != 48 {
			t.Errorf("boards %+v hottest %v; want 3 boards (STATS3 has no chips), 48 °C", st.GPUs, st.HottestC)
		}
	})
	t.Run("BOSminer temps", func(t *testing.T) {
		st, err := minerapi.ParseCGMinerReplies(minerapi.CGReplies{
			Summary: get(recorded.BOSminerSummary), Temps: get(recorded.BOSminerTemps),
		})
		if err != nil {
			t.Fatal(err)
		}
		// Board 75, 63, 70; every Chip is 0.0, which is no sensor.
		if st.HottestC == nil || *st.HottestC != 75 {
			t.Errorf("HottestC = %v, want 75 from temps", st.HottestC)
		}
	})
	t.Run("BOSminer temps join devs boards", func(t *testing.T) {
		devs := []byte(`{"STATUS":[{"STATUS":"S","Description":"BOSminer+ 0.2.0-36c56a9363"}],"DEVS":[` +
			`{"ASC":0,"ID":6,"MHS 5s":5e6,"Temperature":0},{"ASC":1,"ID":7,"MHS 5s":5e6,"Temperature":0},{"ASC":2,"ID":8,"MHS 5s":5e6,"Temperature":0}],"id":1}`)
		st, err := minerapi.ParseCGMinerReplies(minerapi.CGReplies{
			Summary: get(recorded.BOSminerSummary), Devs: devs, Temps: get(recorded.BOSminerTemps),
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []float64{75, 63, 70}
		for i, w := range want {
			if got := st.GPUs[i].TemperatureC; got == nil || *got != w {
				t.Errorf("board %d temperature = %v, want %v (devs say 0, which is no sensor)", i, got, w)
			}
		}
	})
	t.Run("no sensor is no temperature", func(t *testing.T) {
		b := replaceOnce(t, get(recorded.BOSminerTemps), `"Board":75.0`, `"Board":0.0`)
		b = replaceOnce(t, b, `"Board":63.0`, `"Board":0.0`)
		b = replaceOnce(t, b, `"Board":70.0`, `"Board":255.0`)
		st, err := minerapi.ParseCGMinerReplies(minerapi.CGReplies{Summary: get(recorded.BOSminerSummary), Temps: b})
		if err != nil || st.HottestC != nil {
			t.Errorf("HottestC = %v, %v; want nil: 0 and 255 are failed sensors", st.HottestC, err)
		}
	})
}

func TestCGMinerStatsOnlyWithoutRate(t *testing.T) {
	// Stats that carry neither a rate nor boards are not a reading.
	_, err := minerapi.ParseCGMinerReplies(minerapi.CGReplies{Stats: get(recorded.AntminerZ9Version)})
	if !errors.Is(err, minerapi.ErrBadReply) && !errors.Is(err, minerapi.ErrNoHashrate) {
		t.Errorf("err = %v", err)
	}
}

func replaceOnce(t *testing.T, b []byte, old, new string) []byte {
	t.Helper()
	s := string(b)
	i := strings.Index(s, old)
	if i < 0 {
		t.Fatalf("capture lacks %q", old)
	}
	return []byte(s[:i] + new + s[i+len(old):])
}

// TestASICAdaptersAgainstFakeMiner reads the real captures over the cgminer
// TCP protocol from fakeminer, through the adapters the agent uses.
func TestASICAdaptersAgainstFakeMiner(t *testing.T) {
	tests := []struct {
		api, adapter, algo string
		total              float64
		model, pool        string
		boards             int
		hottest            float64
	}{
		{api: "antminer-l3plus", adapter: "bmminer", total: 504.56e6, model: "Antminer L3+",
			pool: "stratum+tcp://us.litecoinpool.org:3333", boards: 4, hottest: 56},
		{api: "antminer-s17", adapter: "bmminer", total: 54997.01e9, model: "Antminer S17 Pro",
			pool: "stratum+tcp://xxxxxx:3333", boards: 3, hottest: 80},
		{api: "innosilicon-a9", adapter: "cgminer", algo: "equihash", total: 49500,
			pool: "stratum+tcp://zcl.suprnova.cc:4042", boards: 3, hottest: 48},
		{api: "bosminer", adapter: "bosminer", total: 15740915.842676325e6,
			pool: "stratum+tcp://stratum.antpool.com:3333", boards: 0, hottest: 75},
	}
	for _, tc := range tests {
		t.Run(tc.api, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, tc.api)
			st, err := newAdapter(t, tc.adapter, minerapi.Options{Algorithm: tc.algo}).Stats(ctx(t), f.ep)
			if err != nil {
				t.Fatalf("Stats: %v", err)
			}
			if !near(st.TotalHashrate, tc.total) || st.Model != tc.model || st.Pool != tc.pool || len(st.GPUs) != tc.boards {
				t.Errorf("got total %g model %q pool %q boards %d; want %g %q %q %d",
					st.TotalHashrate, st.Model, st.Pool, len(st.GPUs), tc.total, tc.model, tc.pool, tc.boards)
			}
			if st.HottestC == nil || *st.HottestC != tc.hottest {
				t.Errorf("HottestC = %v, want %v", st.HottestC, tc.hottest)
			}
			// A hot board reaches HottestC through the adapter too.
			f.cue(t, "hot 97")
			eventually(t, "hot board", func() (bool, string) {
				st, err := newAdapter(t, tc.adapter, minerapi.Options{Algorithm: tc.algo}).Stats(ctx(t), f.ep)
				return err == nil && st.HottestC != nil && *st.HottestC == 97, errString(st, err)
			})
		})
	}
}

func TestWhatsminerOnRealCaptures(t *testing.T) {
	st, err := minerapi.ParseCGMinerReplies(minerapi.CGReplies{
		Summary: get(recorded.WhatsminerSummary), Pools: get(recorded.WhatsminerPools), Stats: get(recorded.WhatsminerBadCmd),
	})
	if err != nil {
		t.Fatal(err)
	}
	// An M20S is rated 68 TH/s; "MHS 5s":65371302.78 is MH/s.
	if !near(st.TotalHashrate, 65371302.78e6) || st.Accepted != 33825 || st.Rejected != 185 || st.Stale != 27 ||
		st.Pool != "stratum+tcp://us-east.stratum.slushpool.com:3333" {
		t.Errorf("reading = %+v", st)
	}
	if st.HottestC == nil || *st.HottestC != 75 {
		t.Errorf("HottestC = %v, want 75 from the summary", st.HottestC)
	}
	// btminer answers an unknown command with a flat STATUS string.
	_, err = minerapi.ParseCGMiner(get(recorded.WhatsminerBadCmd), nil, nil, nil)
	if !errors.Is(err, minerapi.ErrBadReply) || !strings.Contains(err.Error(), "invalid cmd") {
		t.Errorf("err = %v, want a bad reply quoting the miner", err)
	}

	f := startFake(t, "whatsminer")
	a := newAdapter(t, "whatsminer", minerapi.Options{})
	st, err = a.Stats(ctx(t), f.ep)
	if err != nil || !near(st.TotalHashrate, 65371302.78e6) || st.Miner != "whatsminer" {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	f.cue(t, "hot 92")
	eventually(t, "hot", func() (bool, string) {
		st, err := a.Stats(ctx(t), f.ep)
		return err == nil && st.HottestC != nil && *st.HottestC == 92, errString(st, err)
	})
	if _, err := a.Launch(minerapi.FlightSheet{Pools: []minerapi.Pool{{URL: "stratum+tcp://a:1", User: "u"}}, API: minerapi.Endpoint{Port: 4028}}); !errors.Is(err, minerapi.ErrConfig) {
		t.Errorf("Launch err = %v, want a refusal: the firmware runs btminer", err)
	}
}
