package minerapi_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/minerapi"
)

type gpuWant struct {
	bus  string
	rate float64
	temp float64 // 0: do not check
}

func near(a, b float64) bool {
	if b == 0 {
		return a == 0
	}
	return math.Abs(a-b)/math.Abs(b) < 1e-6
}

func TestAdaptersAgainstFakeMiner(t *testing.T) {
	tests := []struct {
		api, adapter string
		token        string
		total        float64
		accepted     uint64 // at least
		rejected     uint64
		stale        uint64
		pool, algo   string
		version      string
		uptime       time.Duration
		gpus         []gpuWant
	}{
		{api: "xmrig", adapter: "xmrig", token: "s3cret", total: 13321.44, accepted: 412, rejected: 3,
			pool: "pool.supportxmr.com:443", algo: "rx/0", version: "6.21.0", uptime: 3712 * time.Second,
			gpus: []gpuWant{{"0000:01:00.0", 1240.11, 61}, {"0000:0a:00.0", 1080.13, 58}}},
		{api: "trex", adapter: "trex", total: 54046200, accepted: 1843, rejected: 3,
			pool: "stratum+tcp://rvn.2miners.com:6060", algo: "kawpow", version: "0.26.8", uptime: 3021 * time.Second,
			gpus: []gpuWant{{"0000:01:00.0", 28612300, 63}, {"0000:0a:00.0", 25433900, 60}}},
		{api: "lolminer", adapter: "lolminer", total: 121.84e6, accepted: 304, rejected: 2,
			pool: "etc.2miners.com:1010", algo: "Ethash", version: "1.42", uptime: 5403 * time.Second,
			gpus: []gpuWant{{"0000:03:00.0", 61.93e6, 58}, {"0000:0c:00.0", 59.91e6, 60}}},
		{api: "lolminer-new", adapter: "lolminer", total: 124.3e6, accepted: 611, rejected: 2, stale: 1,
			pool: "etc.2miners.com:1010", algo: "Etchash", version: "1.82", uptime: 8120 * time.Second,
			gpus: []gpuWant{{"0000:03:00.0", 62.6e6, 57}, {"0000:0c:00.0", 61.7e6, 59}}},
		{api: "gminer", adapter: "gminer", total: 781455360 + 461100544, accepted: 2410, rejected: 3, stale: 5,
			pool: "stratum+tcp://kas.2miners.com:2020", algo: "KHeavyHash", version: "GMiner 3.44", uptime: 7245 * time.Second,
			gpus: []gpuWant{{"0000:02:00.0", 781455360, 62}, {"0000:05:00.0", 461100544, 57}}},
		{api: "cgminer", adapter: "teamredminer", total: 1213.55e6, accepted: 881, rejected: 2, stale: 4,
			pool: "stratum+tcp://eu.ethash-hub.example:4444", version: "sgminer 5.6.1-teamredminer 0.10.14", uptime: 4210 * time.Second,
			gpus: []gpuWant{{"", 611.9e6, 64}, {"", 601.65e6, 67}}},
		{api: "bmminer", adapter: "bmminer", total: 13987.42e9, accepted: 21744, rejected: 21, stale: 3,
			pool: "stratum+tcp://ss.antpool.com:3333", version: "Antminer S9 16.8.1.3", uptime: 91233 * time.Second,
			gpus: []gpuWant{{"", 4671.83e9, 75}, {"", 4652.11e9, 78}, {"", 4663.48e9, 73}}},
	}
	for _, tc := range tests {
		t.Run(tc.api, func(t *testing.T) {
			t.Parallel()
			var args []string
			if tc.token != "" {
				args = append(args, "-token", tc.token)
			}
			f := startFake(t, tc.api, args...)
			f.ep.Token = tc.token
			st, err := newAdapter(t, tc.adapter, minerapi.Options{}).Stats(ctx(t), f.ep)
			if err != nil {
				t.Fatalf("Stats: %v", err)
			}
			if !near(st.TotalHashrate, tc.total) {
				t.Errorf("TotalHashrate = %v, want %v", st.TotalHashrate, tc.total)
			}
			if st.Miner != tc.adapter {
				t.Errorf("Miner = %q, want %q", st.Miner, tc.adapter)
			}
			// The fake's share counters grow while it runs.
			if st.Accepted < tc.accepted || st.Accepted > tc.accepted+1000 {
				t.Errorf("Accepted = %d, want about %d", st.Accepted, tc.accepted)
			}
			if tc.api != "lolminer" && st.Rejected != tc.rejected {
				t.Errorf("Rejected = %d, want %d", st.Rejected, tc.rejected)
			}
			if st.Stale != tc.stale {
				t.Errorf("Stale = %d, want %d", st.Stale, tc.stale)
			}
			if st.Pool != tc.pool || st.Algorithm != tc.algo || st.Version != tc.version || st.Uptime != tc.uptime {
				t.Errorf("pool/algo/version/uptime = %q %q %q %v, want %q %q %q %v",
					st.Pool, st.Algorithm, st.Version, st.Uptime, tc.pool, tc.algo, tc.version, tc.uptime)
			}
			if len(st.GPUs) != len(tc.gpus) {
				t.Fatalf("got %d GPUs, want %d: %+v", len(st.GPUs), len(tc.gpus), st.GPUs)
			}
			for i, w := range tc.gpus {
				g := st.GPUs[i]
				if g.BusID != w.bus || !near(g.Hashrate, w.rate) {
					t.Errorf("GPU %d = %s %v, want %s %v", i, g.BusID, g.Hashrate, w.bus, w.rate)
				}
				if w.temp != 0 && (g.TemperatureC == nil || *g.TemperatureC != w.temp) {
					t.Errorf("GPU %d temperature = %v, want %v", i, g.TemperatureC, w.temp)
				}
			}
		})
	}
}

func TestFakeMinerCues(t *testing.T) {
	tests := []struct {
		name  string
		api   string
		adapt string
		cue   string
		check func(st minerapi.Stats, err error) (bool, string)
	}{
		{"hashrate drop", "trex", "trex", "hashrate 0.1", func(st minerapi.Stats, err error) (bool, string) {
			return err == nil && near(st.TotalHashrate, 5404620), errString(st, err)
		}},
		{"hashrate drop string units", "bmminer", "bmminer", "hashrate 0.5", func(st minerapi.Stats, err error) (bool, string) {
			return err == nil && near(st.TotalHashrate, 6993.71e9), errString(st, err)
		}},
		{"hot gpu", "gminer", "gminer", "hot 95", func(st minerapi.Stats, err error) (bool, string) {
			return err == nil && len(st.GPUs) == 2 && st.GPUs[0].TemperatureC != nil && *st.GPUs[0].TemperatureC == 95 &&
				*st.GPUs[1].TemperatureC == 57, errString(st, err)
		}},
		{"hot board", "bmminer", "bmminer", "hot 105", func(st minerapi.Stats, err error) (bool, string) {
			return err == nil && len(st.GPUs) == 3 && st.GPUs[0].TemperatureC != nil && *st.GPUs[0].TemperatureC == 105, errString(st, err)
		}},
		{"garbage http", "lolminer-new", "lolminer", "garbage", func(_ minerapi.Stats, err error) (bool, string) {
			return errors.Is(err, minerapi.ErrBadReply) && !errors.Is(err, minerapi.ErrUnreachable) && !errors.Is(err, minerapi.ErrAuth), errString(minerapi.Stats{}, err)
		}},
		{"garbage tcp", "cgminer", "cgminer", "garbage", func(_ minerapi.Stats, err error) (bool, string) {
			return errors.Is(err, minerapi.ErrBadReply) && !errors.Is(err, minerapi.ErrUnreachable), errString(minerapi.Stats{}, err)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, tc.api)
			a := newAdapter(t, tc.adapt, minerapi.Options{})
			f.cue(t, tc.cue)
			eventually(t, tc.cue, func() (bool, string) { return tc.check(a.Stats(ctx(t), f.ep)) })
			// Clearing the cue brings the miner back.
			f.cue(t, "")
			eventually(t, "recovery", func() (bool, string) {
				st, err := a.Stats(ctx(t), f.ep)
				return err == nil && st.TotalHashrate > 0, errString(st, err)
			})
		})
	}
}

func errString(st minerapi.Stats, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("total=%g accepted=%d gpus=%d", st.TotalHashrate, st.Accepted, len(st.GPUs))
}

func TestFakeMinerNoShares(t *testing.T) {
	t.Parallel()
	f := startFake(t, "xmrig")
	a := newAdapter(t, "xmrig", minerapi.Options{})
	accepted := func() uint64 {
		st, err := a.Stats(ctx(t), f.ep)
		if err != nil {
			t.Fatal(err)
		}
		return st.Accepted
	}
	first := accepted()
	eventually(t, "shares grow", func() (bool, string) { return accepted() > first, "" })
	f.cue(t, "noshares")
	// The fake logs each change of cues it applies; once it has logged
	// noshares, the counter must stay where it is.
	eventually(t, "cue applied", func() (bool, string) {
		return strings.Contains(f.stderr.String(), "noshares:true"), f.stderr.String()
	})
	frozen := accepted()
	// Its status line is printed once per log interval, where the share
	// counter would otherwise grow; wait for five more of them.
	lines := func() int { return strings.Count(f.stdout.String(), "accepted +") }
	seen := lines()
	eventually(t, "five more log intervals", func() (bool, string) {
		return lines() >= seen+5, f.stdout.String()
	})
	if got := accepted(); got != frozen {
		t.Errorf("accepted grew from %d to %d under noshares", frozen, got)
	}
}

func TestFakeMinerHangTimesOut(t *testing.T) {
	for _, api := range []string{"xmrig", "cgminer"} {
		t.Run(api, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, api, "-hang")
			c := minerapi.NewClient(minerapi.WithTimeout(300 * time.Millisecond))
			_, err := newAdapter(t, api, minerapi.Options{Client: c}).Stats(ctx(t), f.ep)
			if !errors.Is(err, minerapi.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want unreachable by deadline", err)
			}
			// The caller's own context wins when it is shorter.
			short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err = newAdapter(t, api, minerapi.Options{}).Stats(short, f.ep)
			if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
				t.Fatalf("err = %v after %v, want caller deadline", err, time.Since(start))
			}
		})
	}
}

func TestFakeMinerCrash(t *testing.T) {
	t.Parallel()
	f := startFake(t, "trex")
	f.cue(t, "crash")
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		t.Fatal("fakeminer did not crash")
	}
	if code := f.cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("exit code = %d, want 3", code)
	}
	_, err := newAdapter(t, "trex", minerapi.Options{}).Stats(ctx(t), f.ep)
	if !errors.Is(err, minerapi.ErrUnreachable) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after crash err = %v, want connection refused", err)
	}
}

func TestFakeMinerSignals(t *testing.T) {
	t.Run("sigterm exits 0 and logs", func(t *testing.T) {
		t.Parallel()
		f := startFake(t, "gminer")
		eventually(t, "log lines", func() (bool, string) {
			return strings.Count(f.stdout.String(), "accepted +") >= 2, f.stdout.String()
		})
		_ = f.cmd.Process.Signal(syscall.SIGTERM)
		<-f.done
		if code := f.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code = %d, want 0", code)
		}
	})
	t.Run("ignore sigterm needs sigkill", func(t *testing.T) {
		t.Parallel()
		f := startFake(t, "gminer", "-ignore-sigterm")
		_ = f.cmd.Process.Signal(syscall.SIGTERM)
		eventually(t, "ignore logged", func() (bool, string) {
			return strings.Contains(f.stderr.String(), "ignoring"), f.stderr.String()
		})
		select {
		case <-f.done:
			t.Fatal("exited on SIGTERM despite -ignore-sigterm")
		default:
		}
		_ = f.cmd.Process.Kill()
		<-f.done
		if ws, ok := f.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Errorf("state = %v, want killed by SIGKILL", f.cmd.ProcessState)
		}
	})
	t.Run("sigusr1 drops hashrate", func(t *testing.T) {
		t.Parallel()
		f := startFake(t, "trex")
		a := newAdapter(t, "trex", minerapi.Options{})
		_ = f.cmd.Process.Signal(syscall.SIGUSR1)
		eventually(t, "drop", func() (bool, string) {
			st, err := a.Stats(ctx(t), f.ep)
			return err == nil && near(st.TotalHashrate, 5404620), errString(st, err)
		})
	})
}

func TestXmrigAuth(t *testing.T) {
	t.Parallel()
	f := startFake(t, "xmrig", "-token", "right")
	a := newAdapter(t, "xmrig", minerapi.Options{})
	for _, tc := range []struct {
		token string
		want  error
	}{{"", minerapi.ErrUnauthorized}, {"wrong", minerapi.ErrForbidden}} {
		ep := f.ep
		ep.Token = tc.token
		_, err := a.Stats(ctx(t), ep)
		if !errors.Is(err, tc.want) || !errors.Is(err, minerapi.ErrAuth) || errors.Is(err, minerapi.ErrUnreachable) {
			t.Errorf("token %q: err = %v, want %v", tc.token, err, tc.want)
		}
	}
}
