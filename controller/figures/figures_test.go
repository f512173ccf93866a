package figures

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, path string) (*Learner, *store.DB) {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "quarry.db")
	}
	db := testsupport.OpenStore(t, path)
	l, err := Open(db, Options{Alpha: 0.5, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l, db
}

func gpus(w ...float64) []*quarryv1.GPUStats {
	out := make([]*quarryv1.GPUStats, len(w))
	for i, v := range w {
		out[i] = &quarryv1.GPUStats{Index: uint32(i), PowerW: proto.Float64(v)}
	}
	return out
}

func running(algo string, h float64) *quarryv1.MinerStats {
	return &quarryv1.MinerStats{Miner: "lolminer", Algorithm: algo, State: "running", Hashrate: h}
}

func state(algo, st string) *quarryv1.MinerStats {
	return &quarryv1.MinerStats{Miner: "lolminer", Algorithm: algo, State: st, Error: "why"}
}

func report(g []*quarryv1.GPUStats, m ...*quarryv1.MinerStats) *quarryv1.Report {
	return &quarryv1.Report{TimeUnixNano: time.Unix(1000, 0).UnixNano(), Gpus: g, Miners: m}
}

// want is a figure's hash rate, power and sample count.
type want struct {
	hashrate, power float64
	samples         uint64
}

func TestObserveReport(t *testing.T) {
	lost := gpus(100, 400)
	lost[1].Lost = true
	for _, tc := range []struct {
		name    string
		reports []*quarryv1.Report
		want    map[string]want
	}{
		{"one miner: hash rate and power", []*quarryv1.Report{report(gpus(110, 115), running("etchash", 100e6))},
			map[string]want{"etchash": {100e6, 225, 1}}},
		{"smoothed over reports", []*quarryv1.Report{report(gpus(200), running("etchash", 100e6)), report(gpus(300), running("etchash", 120e6))},
			map[string]want{"etchash": {110e6, 250, 2}}},
		{"two miners on two algorithms: hash rates, no power", []*quarryv1.Report{report(gpus(150, 150), running("etchash", 50e6), running("kawpow", 20e6))},
			map[string]want{"etchash": {50e6, 0, 1}, "kawpow": {20e6, 0, 1}}},
		{"case-different names merge and add up", []*quarryv1.Report{report(gpus(150, 150), running("KawPow", 20e6), running("KAWPOW", 22e6))},
			map[string]want{"kawpow": {42e6, 300, 1}}},
		{"case-different names across reports are one figure", []*quarryv1.Report{report(gpus(200), running("EtcHash", 100e6)), report(gpus(200), running("etchash", 120e6))},
			map[string]want{"etchash": {110e6, 200, 2}}},
		{"market spellings fold", []*quarryv1.Report{report(gpus(90), running("SHA256", 1e12)), report(gpus(90), running("sha256d", 1e12))},
			map[string]want{"sha256d": {1e12, 90, 2}}},
		{"unreachable miner: no sample", []*quarryv1.Report{report(gpus(999), state("etchash", "api-unreachable"))}, map[string]want{}},
		{"crashed miner: no sample", []*quarryv1.Report{report(gpus(999), state("etchash", "crashed"))}, map[string]want{}},
		{"warming miner: no sample", []*quarryv1.Report{report(gpus(999), state("etchash", "starting"))}, map[string]want{}},
		{"running at zero is not a reading", []*quarryv1.Report{report(gpus(999), running("etchash", 0))}, map[string]want{}},
		{"unreachable miner beside a running one: its power is not attributed", []*quarryv1.Report{report(gpus(300), running("etchash", 50e6), state("kawpow", "api-unreachable"))},
			map[string]want{"etchash": {50e6, 0, 1}}},
		{"unknown share of an algorithm: no sample for it", []*quarryv1.Report{report(gpus(300), running("etchash", 50e6), state("etchash", "api-unreachable"))}, map[string]want{}},
		{"a stopped miner mines nothing", []*quarryv1.Report{report(gpus(300), running("etchash", 50e6), state("kawpow", "stopped"))},
			map[string]want{"etchash": {50e6, 300, 1}}},
		{"a miner without an algorithm blocks power", []*quarryv1.Report{report(gpus(300), running("etchash", 50e6), running("", 1e6))},
			map[string]want{"etchash": {50e6, 0, 1}}},
		{"no power reading: power unknown", []*quarryv1.Report{report([]*quarryv1.GPUStats{{Index: 0}}, running("etchash", 50e6))},
			map[string]want{"etchash": {50e6, 0, 1}}},
		{"lost GPU left out of power", []*quarryv1.Report{report(lost, running("etchash", 50e6))},
			map[string]want{"etchash": {50e6, 100, 1}}},
		{"infinite and NaN hash rates are not readings", []*quarryv1.Report{report(gpus(1), running("etchash", math.Inf(1))), report(gpus(1), running("kawpow", math.NaN()))}, map[string]want{}},
		{"no miners", []*quarryv1.Report{report(gpus(100))}, map[string]want{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := open(t, "")
			for _, r := range tc.reports {
				l.ObserveReport("r1", r)
			}
			got := l.Figures("r1")
			if len(got) != len(tc.want) {
				t.Fatalf("figures %+v, want %+v", got, tc.want)
			}
			for algo, w := range tc.want {
				f, ok := got[algo]
				if !ok || f.HashrateHs != w.hashrate || f.PowerW != w.power || f.Samples != w.samples || f.Source != SourceLive {
					t.Errorf("%s: %+v, want %+v (live)", algo, f, w)
				}
			}
		})
	}
}

// A benchmark sets the figure, live reports refine it from there, and a
// new benchmark replaces what was learned.
func TestBenchmarkThenLive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "quarry.db")
	l, db := open(t, path)
	at := time.Unix(500, 0)
	n, err := l.PutBenchmark("r1", []flightsheet.BenchmarkResult{
		{Algorithm: "KawPow", HashrateHs: 50e6, PowerW: proto.Float64(230), Samples: 30},
		{Algorithm: "etchash", HashrateHs: 90e6, Samples: 10},
		{Algorithm: "autolykos", Error: "miner crashed"},
	}, at)
	if err != nil || n != 2 {
		t.Fatalf("PutBenchmark = %d, %v", n, err)
	}
	if f := l.Figures("r1")["kawpow"]; f != (Figure{HashrateHs: 50e6, PowerW: 230, Source: SourceBenchmark, Updated: at, Samples: 30}) {
		t.Fatalf("benchmark figure %+v", f)
	}
	l.ObserveReport("r1", report(gpus(250), running("kawpow", 60e6)))
	if f := l.Figures("r1")["kawpow"]; f.Source != SourceLive || f.HashrateHs != 55e6 || f.PowerW != 240 || f.Samples != 31 {
		t.Fatalf("after a live reading %+v, want 55 MH/s at 240 W", f)
	}
	// The benchmark had no power for etchash; the first live reading sets it.
	l.ObserveReport("r1", report(gpus(180), running("etchash", 100e6)))
	if f := l.Figures("r1")["etchash"]; f.HashrateHs != 95e6 || f.PowerW != 180 {
		t.Fatalf("etchash %+v", f)
	}
	if _, err := l.PutBenchmark("r1", []flightsheet.BenchmarkResult{{Algorithm: "kawpow", HashrateHs: 40e6, Samples: 5}}, at); err != nil {
		t.Fatal(err)
	}
	if f := l.Figures("r1")["kawpow"]; f.Source != SourceBenchmark || f.HashrateHs != 40e6 || f.PowerW != 0 || f.Samples != 5 {
		t.Fatalf("re-benchmarked %+v", f)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(db, Options{Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	got := l2.Figures("r1")
	if len(got) != 2 || got["kawpow"].HashrateHs != 40e6 || got["etchash"].PowerW != 180 {
		t.Errorf("after reopen %+v", got)
	}
	if rigs := l2.Rigs(); len(rigs) != 1 || rigs[0] != "r1" {
		t.Errorf("Rigs = %v", rigs)
	}
}

// Figures stored under names from before the names were folded load under
// the folded name, the newer of two winning, and the old keys are gone.
func TestLoadFoldsStoredNames(t *testing.T) {
	db := testsupport.OpenStore(t, filepath.Join(t.TempDir(), "quarry.db"), Bucket)
	put := func(k string, f Figure) {
		t.Helper()
		v := fmt.Sprintf(`{"hashrate_hs":%g,"power_w":%g,"source":%q,"updated":%q,"samples":%d}`, f.HashrateHs, f.PowerW, f.Source, f.Updated.Format(time.RFC3339), f.Samples)
		if err := db.Update(func(tx *store.Tx) error { return tx.Bucket([]byte(Bucket)).Put([]byte(k), []byte(v)) }); err != nil {
			t.Fatal(err)
		}
	}
	put("r1/sha256", Figure{HashrateHs: 1, Source: SourceLive, Updated: time.Unix(100, 0), Samples: 1})
	put("r1/sha256d", Figure{HashrateHs: 2, Source: SourceLive, Updated: time.Unix(200, 0), Samples: 2})
	put("r1/equihash 144,5", Figure{HashrateHs: 3, Source: SourceBenchmark, Updated: time.Unix(100, 0), Samples: 3})
	l, err := Open(db, Options{Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := l.Figures("r1")
	if len(got) != 2 || got["sha256d"].HashrateHs != 2 || got["zhash"].HashrateHs != 3 {
		t.Fatalf("figures %+v", got)
	}
	var keys []string
	_ = db.View(func(tx *store.Tx) error {
		return tx.Bucket([]byte(Bucket)).ForEach(func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
	})
	if fmt.Sprint(keys) != "[r1/sha256d r1/zhash]" {
		t.Errorf("stored keys %v", keys)
	}
}

func TestOpenRejectsCorruptFigure(t *testing.T) {
	for _, tc := range []struct{ key, val, want string }{
		{"no-slash", "{}", "no-slash"},
		{"r1/kawpow", "{not json", "r1/kawpow"},
	} {
		db := testsupport.OpenStore(t, filepath.Join(t.TempDir(), "quarry.db"), Bucket)
		if err := db.Update(func(tx *store.Tx) error { return tx.Bucket([]byte(Bucket)).Put([]byte(tc.key), []byte(tc.val)) }); err != nil {
			t.Fatal(err)
		}
		if l, err := Open(db, Options{}); err == nil {
			l.Close()
			t.Errorf("%s: Open succeeded", tc.key)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Open = %v", tc.key, err)
		}
	}
}

// A rig cannot grow its figures past MaxAlgorithms by naming new ones.
func TestAlgorithmsPerRigBounded(t *testing.T) {
	l, _ := open(t, "")
	for i := range MaxAlgorithms + 10 {
		l.ObserveReport("r1", report(gpus(100), running(fmt.Sprintf("algo%d", i), 1e6)))
	}
	if n := len(l.Figures("r1")); n != MaxAlgorithms {
		t.Fatalf("%d figures, want %d", n, MaxAlgorithms)
	}
	l.ObserveReport("r1", report(gpus(100), running("algo0", 3e6)))
	if f := l.Figures("r1")["algo0"]; f.Samples != 2 {
		t.Errorf("a known algorithm still learns at the limit: %+v", f)
	}
}

// The one power helper every consumer uses: GPUs that report power and are
// not lost, plus the CPU package.
func TestMeasuredPowerW(t *testing.T) {
	lost := gpus(120.5, 80, 500)
	lost[2].Lost = true
	for _, tc := range []struct {
		name   string
		gpus   []*quarryv1.GPUStats
		cpuW   *float64
		want   float64
		wantOK bool
	}{
		{"no gpus", nil, nil, 0, false},
		{"gpu without power", []*quarryv1.GPUStats{{Index: 0}}, nil, 0, false},
		{"sum, lost skipped", lost, nil, 200.5, true},
		{"zero is a reading", gpus(0), nil, 0, true},
		{"only a lost gpu", []*quarryv1.GPUStats{{PowerW: proto.Float64(10), Lost: true}}, nil, 0, false},
		{"cpu package only", nil, proto.Float64(65), 65, true},
		{"gpus and cpu package", gpus(100, 50), proto.Float64(30), 180, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &quarryv1.Report{Gpus: tc.gpus}
			if tc.cpuW != nil {
				r.Host = &quarryv1.HostStats{CpuPowerW: tc.cpuW}
			}
			got, ok := r.MeasuredPowerW()
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("got %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
