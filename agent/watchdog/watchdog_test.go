package watchdog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

// reading is what the scripted sources hand out on the next Check.
type reading struct {
	stats    minerapi.Stats
	statsErr error
	gpus     []GPU
	gpuErr   error
}

type script struct{ r reading }

func (s *script) Stats(context.Context) (minerapi.Stats, error) { return s.r.stats, s.r.statsErr }
func (s *script) GPUs(context.Context) ([]GPU, error)           { return s.r.gpus, s.r.gpuErr }

// calls records what the watchdog asked of the miner and the GPUs.
type calls struct {
	mu  sync.Mutex
	log []string
}

func (c *calls) add(s string) {
	c.mu.Lock()
	c.log = append(c.log, s)
	c.mu.Unlock()
}
func (c *calls) Restart(_ context.Context, reason string) error  { c.add("restart"); return nil }
func (c *calls) NextPool(_ context.Context, reason string) error { c.add("next_pool"); return nil }
func (c *calls) Stop(context.Context) error                      { c.add("stop"); return nil }
func (c *calls) LowerPowerLimit(_ context.Context, bus string) error {
	c.add("power " + bus)
	return nil
}

func stats(h float64, accepted uint64) reading {
	return reading{stats: minerapi.Stats{Miner: "xmrig", TotalHashrate: h, Accepted: accepted}}
}

// warmingUp is a reply with no reading yet, as xmrig gives for its first
// seconds; a partial figure may come with it.
func warmingUp(accepted uint64) reading {
	return reading{stats: minerapi.Stats{Miner: "xmrig", TotalHashrate: 445, Accepted: accepted},
		statsErr: fmt.Errorf("xmrig: hashrate window not full: %w", minerapi.ErrNoHashrate)}
}

// badReply is a miner that answers with bytes no repair makes readable.
func badReply() reading {
	return reading{statsErr: fmt.Errorf("cgminer: summary: %w: invalid character 'x'", minerapi.ErrBadReply)}
}

// asicAt is an ASIC whose hottest chip the miner reports at c °C; NVML sees
// no cards on such a machine.
func asicAt(c float64) reading {
	return reading{stats: minerapi.Stats{Miner: "bmminer", TotalHashrate: 1000, Accepted: 1, HottestC: &c}}
}

func gpus(temps ...float64) []GPU {
	var out []GPU
	for i, t := range temps {
		out = append(out, GPU{BusID: "0000:0" + string(rune('1'+i)) + ":00.0", TemperatureC: t})
	}
	return out
}

var quiet = slog.New(slog.DiscardHandler)

var errUnreachable = errors.New("dial tcp 127.0.0.1:18080: connect: connection refused")

// step advances the clock by after, applies the inputs, runs one Check and
// expects exactly the listed action kinds (reports by topic).
type step struct {
	after   time.Duration
	start   bool // MinerStarted before the check
	stop    bool // MinerStopped before the check
	line    string
	in      reading
	want    []string
	because string // substring of the first action's reason
}

func TestRules(t *testing.T) {
	const expected = 1000.0
	tests := []struct {
		name  string
		cfg   func(*Config)
		steps []step
	}{
		{
			name: "low hashrate for 5m restarts",
			steps: []step{
				{start: true, in: stats(100, 1)},                           // in startup grace
				{after: 2 * time.Minute, in: stats(500, 2)},                // low from here
				{after: 2 * time.Minute, in: stats(500, 3)},                // 2m low
				{after: 2*time.Minute + 59*time.Second, in: stats(690, 4)}, // 4m59s
				{after: time.Second, in: stats(699, 5), want: []string{"restart_miner"}, because: "below 70% of expected"},
			},
		},
		{
			name: "dip that recovers resets the timer",
			steps: []step{
				{start: true, in: stats(1000, 1)},
				{after: 2 * time.Minute, in: stats(500, 2)},
				{after: 3 * time.Minute, in: stats(800, 3)},
				{after: time.Minute, in: stats(500, 4)},
				{after: 4 * time.Minute, in: stats(500, 5)},
				{after: time.Minute, in: stats(500, 6), want: []string{"restart_miner"}},
			},
		},
		{
			name: "exactly 70 percent is healthy",
			steps: []step{
				{start: true, in: stats(700, 1)},
				{after: 3 * time.Minute, in: stats(700, 2)},
				{after: 6 * time.Minute, in: stats(700, 3)},
			},
		},
		{
			name: "startup grace hides low hashrate",
			cfg:  func(c *Config) { c.StartupGrace = 10 * time.Minute },
			steps: []step{
				{start: true, in: stats(0, 0)},
				{after: 6 * time.Minute, in: stats(0, 1)},
				{after: 3 * time.Minute, in: stats(0, 2)},
			},
		},
		{
			name: "no expected hashrate, no hashrate rule",
			steps: []step{
				{start: true, in: stats(1, 1)},
				{after: 9 * time.Minute, in: stats(1, 2)},
			},
		},
		{
			name: "unreachable stats are not zero hashrate",
			steps: []step{
				{start: true, in: stats(1000, 1)},
				{after: 2 * time.Minute, in: reading{statsErr: errUnreachable}, want: []string{"stats_unreachable"}},
				{after: 2 * time.Minute, in: reading{statsErr: errUnreachable}},
				{after: time.Minute, in: reading{statsErr: errUnreachable}, want: []string{"restart_miner"}, because: "unreachable for 3m0s"},
			},
		},
		{
			name: "an unreadable reply is not an unreachable miner",
			steps: []step{
				{start: true, in: stats(1000, 1)},
				{after: 2 * time.Minute, in: badReply(), want: []string{"stats_bad_reply"}, because: "cannot be read"},
				{after: 5 * time.Minute, in: badReply()},
				{after: 5 * time.Minute, in: badReply()},
				{after: time.Minute, in: stats(1000, 2)},
			},
		},
		{
			name: "the miner's own hottest sensor stops a machine NVML does not see",
			steps: []step{
				{start: true, in: asicAt(95), want: []string{"stop_miner"}, because: "hottest sensor at 95 °C"},
				// Restarted by hand once cool; hot again, stopped again, once.
				{after: time.Hour, start: true, in: asicAt(70)},
				{after: time.Minute, in: asicAt(93), want: []string{"stop_miner"}, because: "hottest sensor at 93 °C"},
				{after: time.Minute, start: true, in: asicAt(96)},
			},
		},
		{
			name: "warming up is not unreachable",
			steps: []step{
				{start: true, in: warmingUp(0)},
				{after: time.Minute, in: warmingUp(0)},
				{after: 2 * time.Minute, in: warmingUp(1)},
				{after: time.Minute, in: stats(1000, 2)},
			},
		},
		{
			name: "stuck warming past the grace restarts",
			steps: []step{
				{start: true, in: warmingUp(0)},
				{after: 2 * time.Minute, in: warmingUp(0)},
				{after: 5 * time.Minute, in: warmingUp(0), want: []string{"restart_miner"}, because: "no hashrate reading (still warming up)"},
			},
		},
		{
			name: "stats come back before the limit",
			steps: []step{
				{start: true, in: stats(1000, 1)},
				{after: 2 * time.Minute, in: reading{statsErr: errUnreachable}, want: []string{"stats_unreachable"}},
				{after: 2 * time.Minute, in: stats(1000, 2), want: []string{"stats_reachable"}},
				{after: 2 * time.Minute, in: reading{statsErr: errUnreachable}, want: []string{"stats_unreachable"}},
				{after: 2 * time.Minute, in: stats(1000, 3), want: []string{"stats_reachable"}},
			},
		},
		{
			name: "no accepted share for 10m moves pools",
			steps: []step{
				{start: true, in: stats(1000, 5)},
				{after: 5 * time.Minute, in: stats(1000, 5)},
				{after: 4*time.Minute + 59*time.Second, in: stats(1000, 5)},
				{after: time.Second, in: stats(1000, 5), want: []string{"next_pool"}, because: "no accepted share for 10m0s"},
				// The new pool gets its own 10 minutes.
				{after: 9 * time.Minute, in: stats(1000, 5)},
			},
		},
		{
			name: "shares keep the pool",
			steps: []step{
				{start: true, in: stats(1000, 5)},
				{after: 8 * time.Minute, in: stats(1000, 6)},
				{after: 8 * time.Minute, in: stats(1000, 7)},
				{after: 8 * time.Minute, in: stats(1000, 2)}, // counters reset: new baseline
				{after: 8 * time.Minute, in: stats(1000, 3)},
			},
		},
		{
			name: "refused login moves pools at once, then cools down",
			steps: []step{
				{start: true, in: stats(1000, 0)},
				{line: "[2026-11-29 21:00:01] net  pool.example:3333 login error code: 6", in: stats(1000, 0), want: []string{"next_pool"}, because: "login error"},
				{after: 10 * time.Second, line: "ERROR: Unauthorized worker", in: stats(1000, 0)},
				{after: time.Minute, in: stats(1000, 0), want: []string{"next_pool"}, because: "Unauthorized worker"},
				{after: time.Minute, line: "speed 10s/60s/15m 1000.0 n/a n/a H/s", in: stats(1000, 1)},
			},
		},
		{
			name: "restart storm without reboot command is reported",
			steps: []step{
				{start: true}, {start: true}, {start: true}, {start: true}, {start: true},
				{start: true, want: []string{"restart_storm"}, because: "5 times within 1h0m0s; no reboot command"},
				{start: true},
			},
		},
		{
			name: "restarts spread over more than the window are fine",
			steps: []step{
				{start: true},
				{after: 20 * time.Minute, start: true},
				{after: 20 * time.Minute, start: true},
				{after: 20 * time.Minute, start: true},
				{after: 20 * time.Minute, start: true},
				{after: 20 * time.Minute, start: true},
			},
		},
		{
			name: "overheat stops the miner until the GPUs cool",
			steps: []step{
				{start: true, in: reading{gpus: gpus(70, 85)}},
				{after: time.Minute, in: reading{gpus: gpus(70, 90)}, want: []string{"stop_miner"}, because: "0000:02:00.0 at 90 °C"},
				{after: time.Minute, in: reading{gpus: gpus(70, 91)}},
				{after: time.Minute, in: reading{gpus: gpus(70, 82)}},
				{after: time.Minute, in: reading{gpus: gpus(70, 79)}, want: []string{"restart_miner"}, because: "below 80 °C"},
			},
		},
		{
			name: "overheat beats a pending restart",
			steps: []step{
				{start: true, in: stats(1000, 1)},
				{after: 2 * time.Minute, in: reading{statsErr: errUnreachable, gpus: gpus(60)}, want: []string{"stats_unreachable"}},
				{after: 3 * time.Minute, in: reading{statsErr: errUnreachable, gpus: gpus(95)}, want: []string{"stop_miner"}},
				// Stopped: stats are not judged while it is down.
				{after: 5 * time.Minute, in: reading{statsErr: errUnreachable, gpus: gpus(88)}},
			},
		},
		{
			name: "power limit mode lowers once a minute while hot",
			cfg:  func(c *Config) { c.OnOverheat = OverheatPowerLimit },
			steps: []step{
				{start: true, in: reading{gpus: gpus(92)}, want: []string{"lower_power_limit"}},
				{after: 30 * time.Second, in: reading{gpus: gpus(91)}},
				{after: 30 * time.Second, in: reading{gpus: gpus(90)}, want: []string{"lower_power_limit"}},
				{after: time.Minute, in: reading{gpus: gpus(85)}},
				// Still above the cool-down line: same episode, next step due.
				{after: time.Minute, in: reading{gpus: gpus(90)}, want: []string{"lower_power_limit"}},
				{after: 10 * time.Second, in: reading{gpus: gpus(70)}},
				{after: 10 * time.Second, in: reading{gpus: gpus(90)}, want: []string{"lower_power_limit"}},
			},
		},
		{
			name: "lost GPU is reported once and its return too",
			steps: []step{
				{start: true, in: reading{gpus: gpus(60, 60)}},
				{in: reading{gpus: []GPU{{BusID: "0000:01:00.0", TemperatureC: 60}, {BusID: "0000:02:00.0", Lost: true}}}, want: []string{"gpu_lost"}},
				{in: reading{gpus: []GPU{{BusID: "0000:01:00.0", TemperatureC: 60}, {BusID: "0000:02:00.0", Lost: true}}}},
				{in: reading{gpus: gpus(60, 60)}, want: []string{"gpu_recovered"}},
				{in: reading{gpus: gpus(60)}, want: []string{"gpu_lost"}, because: "missing from telemetry"},
			},
		},
		{
			name: "telemetry failure is reported once",
			steps: []step{
				{start: true, in: reading{gpuErr: errors.New("nvml: driver not loaded")}, want: []string{"telemetry_unavailable"}},
				{in: reading{gpuErr: errors.New("nvml: driver not loaded")}},
			},
		},
		{
			name: "a stopped miner is not judged",
			steps: []step{
				{start: true, in: stats(1000, 1)},
				{after: 3 * time.Minute, stop: true, in: reading{statsErr: errUnreachable}},
				{after: 30 * time.Minute, in: reading{statsErr: errUnreachable}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			clock := testsupport.NewClock(time.Date(2026, 11, 29, 21, 0, 0, 0, time.UTC))
			src := &script{}
			c := &calls{}
			var events []Event
			w, err := New(cfg, Deps{Stats: src, GPUs: src, Miner: c, Power: c, Clock: clock, Logger: quiet, OnEvent: func(e Event) { events = append(events, e) }})
			if err != nil {
				t.Fatal(err)
			}
			exp := expected
			if strings.HasPrefix(tt.name, "no expected") {
				exp = 0
			}
			total := 0
			for i, s := range tt.steps {
				clock.Advance(s.after)
				if s.start {
					w.MinerStarted(exp)
				}
				if s.stop {
					w.MinerStopped()
				}
				if s.line != "" {
					w.ObserveLogLine(s.line)
				}
				src.r = s.in
				acts := w.Check(context.Background())
				var got []string
				for _, a := range acts {
					if a.Kind == ActionReport {
						got = append(got, a.Topic)
					} else {
						got = append(got, string(a.Kind))
					}
				}
				if !slices.Equal(got, s.want) {
					t.Fatalf("step %d: actions %v, want %v (%+v)", i, got, s.want, acts)
				}
				if s.because != "" && !strings.Contains(acts[0].Reason, s.because) {
					t.Errorf("step %d: reason %q, want it to mention %q", i, acts[0].Reason, s.because)
				}
				total += len(acts)
				if len(events) != total {
					t.Fatalf("step %d: %d events for %d actions: every action must be an event", i, len(events), total)
				}
			}
			for _, e := range events {
				if !strings.HasPrefix(e.Kind, "watchdog_") || e.Message == "" || e.Time.IsZero() || e.Fields["reason"] == "" {
					t.Errorf("malformed event %+v", e)
				}
			}
		})
	}
}

func TestActionsReachTheMiner(t *testing.T) {
	clock := testsupport.NewClock(time.Unix(0, 0))
	src := &script{r: stats(1000, 1)}
	c := &calls{}
	w, err := New(Config{OnOverheat: OverheatPowerLimit}, Deps{Stats: src, GPUs: src, Miner: c, Power: c, Clock: clock, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	w.MinerStarted(0)
	w.ObserveLogLine("stratum authorization failed for wallet")
	w.Check(context.Background())
	src.r.gpus = gpus(95)
	w.Check(context.Background())
	if want := []string{"next_pool", "power 0000:01:00.0"}; !slices.Equal(c.log, want) {
		t.Errorf("calls = %v, want %v", c.log, want)
	}
}

func TestRebootRunsCommand(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "rebooted")
	clock := testsupport.NewClock(time.Unix(0, 0))
	var events []Event
	cfg := Config{MaxRestarts: 2, RebootCommand: []string{"sh", "-c", `echo "reboot requested" > "$0"; echo done`, marker}}
	w, err := New(cfg, Deps{Miner: &calls{}, Clock: clock, Logger: quiet, OnEvent: func(e Event) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		w.MinerStarted(0)
		clock.Advance(time.Minute)
	}
	acts := w.Check(context.Background())
	if len(acts) != 1 || acts[0].Kind != ActionReboot {
		t.Fatalf("actions = %+v", acts)
	}
	b, err := os.ReadFile(marker)
	if err != nil || string(b) != "reboot requested\n" {
		t.Fatalf("reboot command did not run: %q, %v", b, err)
	}
	if len(events) != 1 || events[0].Kind != "watchdog_reboot" || events[0].Fields["output"] != "done" {
		t.Errorf("events = %+v", events)
	}
	// A second storm inside the window is only reported: a reboot loop
	// would make the rig unreachable.
	for range 2 {
		w.MinerStarted(0)
	}
	acts = w.Check(context.Background())
	if len(acts) != 1 || acts[0].Topic != "restart_storm" {
		t.Errorf("second storm: %+v", acts)
	}
}

func TestRebootFailureIsAnEvent(t *testing.T) {
	var events []Event
	w, err := New(Config{MaxRestarts: 1, RebootCommand: []string{"sh", "-c", "echo no permission >&2; exit 1"}},
		Deps{Miner: &calls{}, Logger: quiet, OnEvent: func(e Event) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	w.MinerStarted(0)
	w.MinerStarted(0)
	w.Check(context.Background())
	if len(events) != 1 || !strings.Contains(events[0].Fields["error"], "exit status 1") || events[0].Fields["output"] != "no permission" {
		t.Errorf("events = %+v", events)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config (all defaults) invalid: %v", err)
	}
	tests := []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.LowHashrateFraction = 1.5 }, "LowHashrateFraction"},
		{func(c *Config) { c.LoginFailurePatterns = []string{"("} }, "LoginFailurePatterns[0]"},
		{func(c *Config) { c.MaxRestarts = -1 }, "MaxRestarts"},
		{func(c *Config) { c.CriticalTempC = 300 }, "CriticalTempC"},
		{func(c *Config) { c.CoolDownC = 95 }, "CoolDownC"},
		{func(c *Config) { c.OnOverheat = "explode" }, "OnOverheat"},
		{func(c *Config) { c.RebootCommand = []string{""} }, "RebootCommand"},
		{func(c *Config) { c.PollInterval = -time.Second }, "PollInterval"},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		tt.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate = %v, want it to name %s", err, tt.want)
		}
	}
	if _, err := New(Config{OnOverheat: OverheatPowerLimit}, Deps{Miner: &calls{}}); err == nil {
		t.Error("power_limit without a PowerLimiter accepted")
	}
	if _, err := New(Config{}, Deps{}); err == nil {
		t.Error("no Miner accepted")
	}
}
