package minerapi_test

import (
	"errors"
	"strings"
	"testing"

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
		minerapi.ParseSRBMiner, minerapi.ParseNBMiner, minerapi.ParseNanominer, minerapi.ParseMiniZ,
	} {
		if _, err := parse([]byte(`{"unrelated":true}`)); !errors.Is(err, minerapi.ErrBadReply) {
			t.Errorf("unrelated JSON: err = %v, want bad reply", err)
		}
	}
}

func TestJSONMinersAgainstFakeMiner(t *testing.T) {
	for _, tc := range []struct {
		api   string
		total float64
	}{
		{"srbminer", 6285550165.06798}, {"nbminer", 2989}, {"nanominer", 4591157}, {"miniz", 20.3},
	} {
		t.Run(tc.api, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, tc.api)
			a := newAdapter(t, tc.api, minerapi.Options{})
			st, err := a.Stats(ctx(t), f.ep)
			if err != nil || !near(st.TotalHashrate, tc.total) || st.Miner != tc.api {
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
