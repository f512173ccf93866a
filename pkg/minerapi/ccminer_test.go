package minerapi_test

import (
	"errors"
	"testing"

	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/minerapi/internal/recorded"
)

func TestCCMinerTextOnRealCaptures(t *testing.T) {
	t.Run("nevermore summary, pool, hwinfo", func(t *testing.T) {
		st, err := minerapi.ParseCCMiner(minerapi.CCMinerReplies{
			Summary: get(recorded.CCMinerSummary), Pool: get(recorded.CCMinerPool), HWInfo: get(recorded.CCMinerHWInfo),
		})
		if err != nil {
			t.Fatal(err)
		}
		if !near(st.TotalHashrate, 1230) || st.Version != "nevermore 0.2.3" || st.Algorithm != "x16r" ||
			st.Pool != "stratum+tcp://us.ravenminer.com:4567" || st.Uptime.Seconds() != 6 {
			t.Errorf("reading = %+v", st)
		}
		if len(st.GPUs) != 8 {
			t.Fatalf("%d GPUs from hwinfo, want 8", len(st.GPUs))
		}
		g := st.GPUs[4]
		if g.BusID != "0000:06:00.0" || *g.TemperatureC != 80 || *g.FanPercent != 80 || !near(*g.PowerW, 176.852) || g.Name != "EVGA GTX 1070 Ti" {
			t.Errorf("GPU 4 = %+v (bus 6 decimal, 176852 mW)", g)
		}
		if st.HottestC == nil || *st.HottestC != 82 {
			t.Errorf("HottestC = %v, want 82", st.HottestC)
		}
	})
	t.Run("cpuminer-opt summary and threads", func(t *testing.T) {
		st, err := minerapi.ParseCCMiner(minerapi.CCMinerReplies{
			Summary: get(recorded.CPUMinerSummary), Threads: get(recorded.CPUMinerThreads),
		})
		if err != nil {
			t.Fatal(err)
		}
		// HS=117826.50 is the exact figure; KHS=117.83 its rounding.
		if !near(st.TotalHashrate, 117826.50) || st.Pool != "lyra2z.mine.zergpool.com:4553" || len(st.GPUs) != 12 {
			t.Errorf("reading = %+v", st)
		}
		if !near(st.GPUs[0].Hashrate, 36590) || !near(st.GPUs[11].Hashrate, 39240) {
			t.Errorf("threads = %+v", st.GPUs)
		}
		// TEMP=0.0 in the summary is no sensor, not 0 °C.
		if st.HottestC != nil {
			t.Errorf("HottestC = %v, want none", *st.HottestC)
		}
	})
	for _, bad := range []string{"", "garbage", `{"json":1}`, "STATUS=S|"} {
		if _, err := minerapi.ParseCCMiner(minerapi.CCMinerReplies{Summary: []byte(bad)}); !errors.Is(err, minerapi.ErrBadReply) {
			t.Errorf("summary %q: err = %v, want bad reply", bad, err)
		}
	}
}

func TestCCMinerAdaptersAgainstFakeMiner(t *testing.T) {
	for _, tc := range []struct {
		api, adapter string
		total        float64
		gpus         int
	}{
		{"ccminer", "ccminer", 1230, 8},
		{"cpuminer", "cpuminer-opt", 117826.50, 12},
	} {
		t.Run(tc.adapter, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, tc.api)
			a := newAdapter(t, tc.adapter, minerapi.Options{})
			st, err := a.Stats(ctx(t), f.ep)
			if err != nil || !near(st.TotalHashrate, tc.total) || len(st.GPUs) != tc.gpus || st.Miner != tc.adapter {
				t.Fatalf("Stats = %s %g %d GPUs, %v", st.Miner, st.TotalHashrate, len(st.GPUs), err)
			}
			f.cue(t, "hashrate 0.5")
			eventually(t, "half rate", func() (bool, string) {
				st, err := a.Stats(ctx(t), f.ep)
				return err == nil && near(st.TotalHashrate, tc.total/2), errString(st, err)
			})
			f.cue(t, "garbage")
			eventually(t, "bad reply", func() (bool, string) {
				_, err := a.Stats(ctx(t), f.ep)
				return errors.Is(err, minerapi.ErrBadReply), errString(minerapi.Stats{}, err)
			})
		})
	}
}
