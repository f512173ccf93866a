package minerapi_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/minerapi/internal/recorded"
)

func TestRigelOnRealCapture(t *testing.T) {
	st, err := minerapi.ParseRigel(get(recorded.Rigel))
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "1.23.2" || st.Algorithm != "xelishashv3" || st.Uptime != 286*time.Second ||
		st.Pool != "stratum.hashnomletz.com:13333" || st.Accepted != 1405 || st.Rejected != 0 {
		t.Errorf("reading = %+v", st)
	}
	// The miner's own 10 s figure, not pool_hashrate (11388.11, what the
	// pool credited).
	if st.TotalHashrate != 12112.195564915472 {
		t.Errorf("TotalHashrate = %v, want 12112.195564915472", st.TotalHashrate)
	}
	if len(st.GPUs) != 1 {
		t.Fatalf("GPUs = %+v", st.GPUs)
	}
	g := st.GPUs[0]
	if g.Index != 0 || g.Name != "RTX 3080 Ti" || g.BusID != "0000:0b:00.0" || g.Hashrate != 12112.195564915472 ||
		g.Accepted != 1405 || g.Rejected != 0 || !is(g.FanPercent, 83) || !is(g.PowerW, 294.36225) {
		t.Errorf("GPU 0 = %+v", g)
	}
	// Core 72 °C, memory 88 °C: the hottest sensor is the GPU's temperature.
	if !is(g.TemperatureC, 88) || !is(st.HottestC, 88) {
		t.Errorf("temperature %v hottest %v, want 88 (memory)", g.TemperatureC, st.HottestC)
	}
}

// TestRigelVariants edits the real capture the way other Rigel states look:
// unknown readings stay absent, never zero.
func TestRigelVariants(t *testing.T) {
	full := string(get(recorded.Rigel))
	edit := func(t *testing.T, pairs ...string) []byte {
		t.Helper()
		s := full
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				t.Fatalf("capture changed: %q not found", pairs[i])
			}
			s = strings.Replace(s, pairs[i], pairs[i+1], 1)
		}
		return []byte(s)
	}
	const totalRate = `"hashrate": {"xelishashv3": 12112.195564915472}, "pool_hashrate": {"xelishashv3": 11388.111888111887},
  "power_usage"`
	tests := []struct {
		name  string
		b     []byte
		check func(t *testing.T, st minerapi.Stats, err error)
	}{
		{"warming up: no rate yet", edit(t, totalRate, `"hashrate": {}, "pool_hashrate": {},
  "power_usage"`), func(t *testing.T, st minerapi.Stats, err error) {
			if !errors.Is(err, minerapi.ErrNoHashrate) || st.TotalHashrate != 0 || st.Accepted != 1405 || len(st.GPUs) != 1 {
				t.Errorf("%+v, %v; want ErrNoHashrate with shares and devices", st, err)
			}
		}},
		{"no monitoring", edit(t, `"core_temperature": 72, "memory_temperature": 88, "fan_speed": 83,
      "power_usage": 294.36225,`, ``), func(t *testing.T, st minerapi.Stats, err error) {
			g := st.GPUs[0]
			if err != nil || g.TemperatureC != nil || g.FanPercent != nil || g.PowerW != nil || st.HottestC != nil {
				t.Errorf("%+v, %v; want no temperature, fan or power", g, err)
			}
		}},
		{"device excluded with -d", edit(t, `"selected": true`, `"selected": false`), func(t *testing.T, st minerapi.Stats, err error) {
			if err != nil || len(st.GPUs) != 0 || st.TotalHashrate != 12112.195564915472 {
				t.Errorf("%+v, %v; want no devices", st, err)
			}
		}},
		{"dual mining reads the first algorithm", edit(t, `"algorithm": "xelishashv3"`, `"algorithm": "xelishashv3+zil"`),
			func(t *testing.T, st minerapi.Stats, err error) {
				if err != nil || st.Algorithm != "xelishashv3" || st.TotalHashrate != 12112.195564915472 {
					t.Errorf("%+v, %v", st, err)
				}
			}},
		{"negative rate", edit(t, `"hashrate": {"xelishashv3": 12112.195564915472}, "pool_hashrate": {"xelishashv3": 11388.111888111887},
    "dual_ratio"`, `"hashrate": {"xelishashv3": -1}, "pool_hashrate": {"xelishashv3": 11388.111888111887},
    "dual_ratio"`), func(t *testing.T, _ minerapi.Stats, err error) {
			if !errors.Is(err, minerapi.ErrBadReply) {
				t.Errorf("err = %v, want bad reply", err)
			}
		}},
		{"not a Rigel document", []byte(`{"miner":"GMiner 3.44","devices":[]}`), func(t *testing.T, _ minerapi.Stats, err error) {
			if !errors.Is(err, minerapi.ErrBadReply) {
				t.Errorf("err = %v, want bad reply", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := minerapi.ParseRigel(tc.b)
			tc.check(t, st, err)
		})
	}
}

func TestRigelLaunch(t *testing.T) {
	fs := sheet()
	fs.Pools[1].Password = "x"
	l, err := newAdapter(t, "rigel", minerapi.Options{}).Launch(fs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-a", "kawpow", "-o", "stratum+tcp://rvn.2miners.com:6060", "-o", "stratum+ssl://rvn-eu.example.org:16060",
		"-u", "RWallet", "-p", "x", "-w", "rig07", "--api-bind", "127.0.0.1:4067", "--no-tui", "--no-watchdog",
		"-d", "0,2", "--extra", "1"}
	if !slices.Equal(l.Args, want) {
		t.Errorf("args = %q\nwant   %q", l.Args, want)
	}

	refusals := []struct {
		name   string
		edit   func(*minerapi.FlightSheet)
		naming string
	}{
		{"pools with different passwords", func(f *minerapi.FlightSheet) { f.Pools[1].Password = "d=8" }, "pools[1]"},
		{"pools with different users", func(f *minerapi.FlightSheet) { f.Pools[1].User = "Other" }, "pools[1]"},
		{"dual algorithm", func(f *minerapi.FlightSheet) { f.Algorithm = "kawpow+zil" }, "one algorithm"},
		{"indexed pool", func(f *minerapi.FlightSheet) { f.Pools[0].URL = "[2]stratum+tcp://a.example:1" }, "pools[0].url"},
	}
	for _, tc := range refusals {
		f := sheet()
		f.Pools = slices.Clone(f.Pools)
		f.Pools[1].Password = "x"
		tc.edit(&f)
		if _, err := newAdapter(t, "rigel", minerapi.Options{}).Launch(f); !errors.Is(err, minerapi.ErrConfig) || !strings.Contains(err.Error(), tc.naming) {
			t.Errorf("%s: err = %v, want ErrConfig naming %q", tc.name, err, tc.naming)
		}
	}
}
