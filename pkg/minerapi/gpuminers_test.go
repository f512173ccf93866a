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

func TestJSONMinersOnRealCaptures(t *testing.T) {
	tests := []struct {
		name     string
		parse    func([]byte) (minerapi.Stats, error)
		b        []byte
		total    float64
		accepted uint64
		rejected uint64
		pool     string
		gpus     int
		gpu0     float64
		temp0    float64 // 0: none reported
		bus0     string
	}{
		{"SRBMiner-Multi 0.1.8", minerapi.ParseSRBMiner, get(recorded.SRBMinerMulti), 6285550165.06798, 2171, 19,
			"kda-us.icemining.ca:3700", 6, 1052373939.1692787, 55, "0000:03:00.0"},
		{"NBMiner v10.0 (primary algorithm only)", minerapi.ParseNBMiner, get(recorded.NBMinerStatus), 2989, 99, 1,
			"btm.pool.zhizh.com:3859", 2, 1499, 65, ""},
		{"nanominer", minerapi.ParseNanominer, get(recorded.NanominerStats), 4591157, 3, 0,
			"eth-us-east1.nanopool.org:9999", 1, 4591157, 46, "0000:01:00.0"},
		{"miniZ", minerapi.ParseMiniZ, get(recorded.MiniZGetstat), 20.3, 3, 0,
			"us-btg.2miners.com:4040", 1, 20.3, 68, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := tc.parse(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if !near(st.TotalHashrate, tc.total) || st.Accepted != tc.accepted || st.Rejected != tc.rejected || st.Pool != tc.pool {
				t.Errorf("reading = %+v", st)
			}
			if len(st.GPUs) != tc.gpus {
				t.Fatalf("%d GPUs, want %d: %+v", len(st.GPUs), tc.gpus, st.GPUs)
			}
			g := st.GPUs[0]
			if !near(g.Hashrate, tc.gpu0) || g.BusID != tc.bus0 {
				t.Errorf("GPU 0 = %+v", g)
			}
			if tc.temp0 != 0 && (g.TemperatureC == nil || *g.TemperatureC != tc.temp0) {
				t.Errorf("GPU 0 temperature = %v, want %v", g.TemperatureC, tc.temp0)
			}
		})
	}
	// miniZ's 0 fan and 0 W are "cannot read", not readings.
	st, _ := minerapi.ParseMiniZ(get(recorded.MiniZGetstat))
	if st.GPUs[0].FanPercent != nil || st.GPUs[0].PowerW != nil {
		t.Errorf("miniZ fan/power = %v/%v, want none", st.GPUs[0].FanPercent, st.GPUs[0].PowerW)
	}
	for _, parse := range []func([]byte) (minerapi.Stats, error){
		minerapi.ParseSRBMiner, minerapi.ParseNBMiner, minerapi.ParseNanominer, minerapi.ParseMiniZ, minerapi.ParseRigel,
	} {
		if _, err := parse([]byte(`{"unrelated":true}`)); !errors.Is(err, minerapi.ErrBadReply) {
			t.Errorf("unrelated JSON: err = %v, want bad reply", err)
		}
	}
}

func TestJSONMinersAgainstFakeMiner(t *testing.T) {
	for _, tc := range []struct {
		api, adapter string // adapter "" = api
		total        float64
	}{
		{"srbminer", "", 6285550165.06798}, {"srbminer-multi", "srbminer", 63404632916632.73}, {"rigel", "", 12112.195564915472},
		{"nbminer", "", 2989}, {"nanominer", "", 4591157}, {"miniz", "", 20.3},
	} {
		t.Run(tc.api, func(t *testing.T) {
			t.Parallel()
			if tc.adapter == "" {
				tc.adapter = tc.api
			}
			f := startFake(t, tc.api)
			a := newAdapter(t, tc.adapter, minerapi.Options{})
			st, err := a.Stats(ctx(t), f.ep)
			if err != nil || !near(st.TotalHashrate, tc.total) || st.Miner != tc.adapter {
				t.Fatalf("Stats = %s %g, %v", st.Miner, st.TotalHashrate, err)
			}
			f.cue(t, "hashrate 0.5")
			eventually(t, "half rate", func() (bool, string) {
				st, err := a.Stats(ctx(t), f.ep)
				return err == nil && st.TotalHashrate > tc.total*0.49 && st.TotalHashrate < tc.total*0.51, errString(st, err)
			})
		})
	}
}

func TestJSONMinersLaunchRefusals(t *testing.T) {
	fs := minerapi.FlightSheet{Algorithm: "kawpow", API: minerapi.Endpoint{Port: 4067},
		Pools: []minerapi.Pool{{URL: "stratum+tcp://a.example:1", User: "w", Password: "secret"}}}
	if _, err := newAdapter(t, "nbminer", minerapi.Options{}).Launch(fs); !errors.Is(err, minerapi.ErrConfig) || !strings.Contains(err.Error(), "password") {
		t.Errorf("nbminer with a pool password: err = %v", err)
	}
	fs.Pools[0].Password = ""
	fs.Pools[0].User = "w,x"
	if _, err := newAdapter(t, "srbminer", minerapi.Options{}).Launch(fs); !errors.Is(err, minerapi.ErrConfig) {
		t.Errorf("srbminer with a comma in the wallet: err = %v", err)
	}
	fs.Pools[0].User = "w\nwebPort=1"
	if _, err := newAdapter(t, "nanominer", minerapi.Options{}).Launch(fs); !errors.Is(err, minerapi.ErrConfig) {
		t.Errorf("nanominer with a newline in the wallet: err = %v", err)
	}
	fs.Pools[0].User = "w"
	fs.Worker = "rig7"
	l, err := newAdapter(t, "nanominer", minerapi.Options{}).Launch(fs)
	if err != nil || l.ConfigName != "config.ini" || string(l.Config) != "webPort=4067\n\n[kawpow]\nwallet=w\nrigName=rig7\npool1=a.example:1\n" {
		t.Errorf("nanominer config = %q, %v", l.Config, err)
	}
}

// TestSRBMinerAlgorithmsFormat reads the algorithms[] document SRBMiner-Multi
// has served since 0.5: the total is the per-device table's own (GPU total
// plus CPU total), never the 1min/5min/1hr windows beside it.
func TestSRBMinerAlgorithmsFormat(t *testing.T) {
	type gpu struct {
		name               string
		rate               float64
		accepted, rejected uint64
		temp, fan, power   float64
	}
	tests := []struct {
		name               string
		b                  []byte
		version, algo      string
		pool               string
		uptime             time.Duration
		total              float64
		accepted, rejected uint64
		gpus               []gpu
		hottest            float64 // 0: none
	}{
		{"0.5.6 CPU only", get(recorded.SRBMinerMultiCPU), "0.5.6", "verushash", "verus.alphatechit.co.uk:9997",
			1368 * time.Second, 206111.5149227829, 15, 0, nil, 0},
		{"3.6.3 one RTX 3070", get(recorded.SRBMinerMulti363), "3.6.3", "pearlhash", "prl-eu.kryptex.network:7048",
			0, 63404632916632.73, 64, 0,
			[]gpu{{"nvidia_geforce_rtx_3070", 63404632916632.73, 64, 0, 74, 86, 149}}, 74},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := minerapi.ParseSRBMiner(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if st.Version != tc.version || st.Algorithm != tc.algo || st.Pool != tc.pool || st.Uptime != tc.uptime ||
				st.TotalHashrate != tc.total || st.Accepted != tc.accepted || st.Rejected != tc.rejected {
				t.Errorf("reading = %+v", st)
			}
			if len(st.GPUs) != len(tc.gpus) {
				t.Fatalf("GPUs = %+v, want %d", st.GPUs, len(tc.gpus))
			}
			for i, w := range tc.gpus {
				g := st.GPUs[i]
				if g.Index != i || g.Name != w.name || g.Hashrate != w.rate || g.Accepted != w.accepted || g.Rejected != w.rejected ||
					g.BusID != "" || !is(g.TemperatureC, w.temp) || !is(g.FanPercent, w.fan) || !is(g.PowerW, w.power) {
					t.Errorf("GPU %d = %+v", i, g)
				}
			}
			if (tc.hottest == 0) != (st.HottestC == nil) || tc.hottest != 0 && *st.HottestC != tc.hottest {
				t.Errorf("HottestC = %v, want %v", st.HottestC, tc.hottest)
			}
		})
	}
}

// TestSRBMinerUnknownIsNotZero: readings the miner did not give stay absent.
func TestSRBMinerUnknownIsNotZero(t *testing.T) {
	full := string(get(recorded.SRBMinerMulti363))
	edit := func(t *testing.T, old, new string) []byte {
		t.Helper()
		if !strings.Contains(full, old) {
			t.Fatalf("capture changed: %q not found", old)
		}
		return []byte(strings.Replace(full, old, new, 1))
	}
	// No table totals: the devices are the whole table.
	st, err := minerapi.ParseSRBMiner(edit(t, `"cpu":{"total":0.0},
                 "gpu":{"gpu0":63404632916632.73,"total":63404632916632.73}`, `"cpu":{},
                 "gpu":{"gpu0":63404632916632.73}`))
	if err != nil || st.TotalHashrate != 63404632916632.73 {
		t.Errorf("without totals: %g, %v", st.TotalHashrate, err)
	}
	// No rate table at all: no hashrate, everything else kept.
	st, err = minerapi.ParseSRBMiner(edit(t, `"cpu":{"total":0.0},
                 "gpu":{"gpu0":63404632916632.73,"total":63404632916632.73}`, `"cpu":{},"gpu":{}`))
	if !errors.Is(err, minerapi.ErrNoHashrate) || st.TotalHashrate != 0 || st.Accepted != 64 || st.Pool != "prl-eu.kryptex.network:7048" {
		t.Errorf("without rates: %+v, %v; want ErrNoHashrate with shares and pool", st, err)
	}
	// A device without fan, power or temperature has none, not zeros.
	st, err = minerapi.ParseSRBMiner(edit(t, `"fan_speed_percent":86,"core_clock":1455,"memory_clock":6801,
     "temperature":74,"asic_power":149,`, ``))
	if err != nil || len(st.GPUs) != 1 || st.GPUs[0].FanPercent != nil || st.GPUs[0].PowerW != nil || st.GPUs[0].TemperatureC != nil || st.HottestC != nil {
		t.Errorf("bare device: %+v, %v", st.GPUs, err)
	}
	// A negative rate is a broken reply.
	if _, err := minerapi.ParseSRBMiner(edit(t, `"gpu0":63404632916632.73,`, `"gpu0":-1,`)); !errors.Is(err, minerapi.ErrBadReply) {
		t.Errorf("negative rate: err = %v", err)
	}
}

// is reports whether an optional reading is present and equal to want.
func is(p *float64, want float64) bool { return p != nil && *p == want }

// TestSRBMinerLaunchSeparators: SRBMiner splits its pool lists on "," (and
// passwords on "!", algorithms on ";"), so a field holding one would be
// read as a different pool list; such sheets are refused, a comma in a
// password is not.
func TestSRBMinerLaunchSeparators(t *testing.T) {
	tests := []struct {
		name string
		edit func(*minerapi.FlightSheet)
		want string // "" = refused
	}{
		{"comma in a password is kept", func(f *minerapi.FlightSheet) { f.Pools[1].Password = "d=8,m=solo" }, "x!d=8,m=solo"},
		{"bang in a password", func(f *minerapi.FlightSheet) { f.Pools[1].Password = "a!b" }, ""},
		{"semicolon in a wallet", func(f *minerapi.FlightSheet) { f.Pools[0].User = "w;x" }, ""},
		{"comma in a wallet", func(f *minerapi.FlightSheet) { f.Pools[0].User = "w,x" }, ""},
		{"two algorithms", func(f *minerapi.FlightSheet) { f.Algorithm = "randomx;kawpow" }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := sheet()
			fs.Pools = slices.Clone(fs.Pools)
			tc.edit(&fs)
			l, err := newAdapter(t, "srbminer", minerapi.Options{}).Launch(fs)
			if tc.want == "" {
				if !errors.Is(err, minerapi.ErrConfig) {
					t.Fatalf("err = %v, want refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			i := slices.Index(l.Args, "--password")
			if i < 0 || l.Args[i+1] != tc.want {
				t.Errorf("args = %q, want --password %q", l.Args, tc.want)
			}
		})
	}
}
