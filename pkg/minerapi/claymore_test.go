package minerapi_test

import (
	"errors"
	"testing"

	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/minerapi/internal/recorded"
)

func TestClaymoreProtocolOnRealCaptures(t *testing.T) {
	tests := []struct {
		name, algo string
		b          []byte
		total      float64
		accepted   uint64
		gpu0       float64
		temp0, fan float64
		pool       string
	}{
		{"PhoenixMiner 3.0c (version says ETH)", "", get(recorded.PhoenixGetstat1), 237936e3, 1, 29792e3, 50, 49, "ssl://eu1.ethermine.org:5555"},
		{"TT-Miner 2.2.5 (algorithm says Ethash)", "ethash", get(recorded.TTMinerGetstat1), 235321e3, 2, 29482e3, 60, 60, "eth-eu1.nanopool.org:9999"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := minerapi.ParseClaymore(tc.b, tc.algo)
			if err != nil {
				t.Fatal(err)
			}
			if !near(st.TotalHashrate, tc.total) || st.Accepted != tc.accepted || st.Pool != tc.pool || len(st.GPUs) != 8 {
				t.Errorf("reading = %+v", st)
			}
			g := st.GPUs[0]
			if !near(g.Hashrate, tc.gpu0) || g.TemperatureC == nil || *g.TemperatureC != tc.temp0 || g.FanPercent == nil || *g.FanPercent != tc.fan {
				t.Errorf("GPU 0 = %+v", g)
			}
			// Eight Ethash GPUs of this class do 25-35 MH/s each.
			if g.Hashrate < 20e6 || g.Hashrate > 40e6 {
				t.Errorf("GPU 0 rate %g H/s is not an Ethash GPU's", g.Hashrate)
			}
		})
	}
	if _, err := minerapi.ParseClaymore([]byte(`{"id":0,"result":null,"error":"unauthorized"}`), ""); !errors.Is(err, minerapi.ErrBadReply) {
		t.Errorf("error reply: err = %v", err)
	}
}

func TestClaymoreAdaptersAgainstFakeMiner(t *testing.T) {
	for _, tc := range []struct {
		api, adapter, algo string
		total              float64
	}{
		{"phoenix", "phoenixminer", "", 237936e3},
		{"ttminer", "ttminer", "ethash", 235321e3},
		{"phoenix", "claymore", "ethash", 237936e3},
	} {
		t.Run(tc.adapter, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, tc.api)
			st, err := newAdapter(t, tc.adapter, minerapi.Options{Algorithm: tc.algo}).Stats(ctx(t), f.ep)
			if err != nil || !near(st.TotalHashrate, tc.total) || st.Miner != tc.adapter {
				t.Fatalf("Stats = %s %g, %v", st.Miner, st.TotalHashrate, err)
			}
			f.cue(t, "garbage")
			eventually(t, "garbage is a bad reply", func() (bool, string) {
				_, err := newAdapter(t, tc.adapter, minerapi.Options{}).Stats(ctx(t), f.ep)
				return errors.Is(err, minerapi.ErrBadReply) && !errors.Is(err, minerapi.ErrUnreachable), errString(minerapi.Stats{}, err)
			})
		})
	}
}
