package watchdog

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/quarryfleet/quarry/agent/miner"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/minerapi"
)

// fakeMiner is the built pkg/minerapi/fakeminer program, set by TestMain.
var fakeMiner string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "watchdog-fakeminer-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fakeMiner = filepath.Join(dir, "fakeminer")
	out, err := exec.Command("go", "build", "-o", fakeMiner, "github.com/quarryfleet/quarry/pkg/minerapi/fakeminer").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build fakeminer: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

var _ Miner = (*miner.Supervisor)(nil)

// portFileStats reads an xmrig-style API at whatever address the current
// miner process wrote to its port file.
type portFileStats struct {
	path    string
	adapter minerapi.Adapter
}

func (p *portFileStats) Stats(ctx context.Context) (minerapi.Stats, error) {
	b, err := os.ReadFile(p.path)
	if err != nil {
		return minerapi.Stats{}, fmt.Errorf("miner API address: %w", err)
	}
	host, port, err := net.SplitHostPort(strings.TrimSpace(string(b)))
	if err != nil {
		return minerapi.Stats{}, err
	}
	n, _ := strconv.Atoi(port)
	return p.adapter.Stats(ctx, minerapi.Endpoint{Host: host, Port: n})
}

// A real miner process whose hashrate drops is restarted by the watchdog
// through the real supervisor, and the new process mines at full speed.
func TestEndToEndLowHashrateRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	portFile := filepath.Join(dir, "api-addr")
	adapter, err := minerapi.Default().New("xmrig", minerapi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := &portFileStats{path: portFile, adapter: adapter}

	var (
		wd       atomic.Pointer[Watchdog]
		expected atomic.Uint64 // float64 bits
		started  = make(chan miner.Event, 64)
		wdEvents = make(chan Event, 64)
	)
	sup, err := miner.New(ctx, miner.Config{
		DataDir: dir, MinersDir: filepath.Dir(fakeMiner), StopGrace: 2 * time.Second, BackoffMin: 50 * time.Millisecond,
		Launcher: miner.ArgsFunc(func(*flightsheet.FlightSheet) ([]string, error) {
			os.Remove(portFile) // the new process writes its own address
			return []string{"-api", "xmrig", "-port-file", portFile, "-log-interval", "100ms"}, nil
		}),
		OnEvent: func(e miner.Event) {
			if e.Kind != miner.EventStarted {
				return
			}
			if w := wd.Load(); w != nil {
				w.MinerStarted(fromBits(expected.Load()))
			}
			started <- e
		},
		OnLogLine: func(l string) {
			if w := wd.Load(); w != nil {
				w.ObserveLogLine(l)
			}
		},
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sup.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	sum, err := miner.FileSHA256(fakeMiner)
	if err != nil {
		t.Fatal(err)
	}
	sheet := &flightsheet.FlightSheet{
		Name: "e2e", Coin: "XMR", Algorithm: "rx/0",
		Miner: flightsheet.Miner{Name: "xmrig", Path: fakeMiner, SHA256: sum},
		Pools: []flightsheet.Pool{{URL: "stratum+tcp://pool.example:3333", User: "wallet.rig"}},
	}
	if err := sup.Start(ctx, sheet); err != nil {
		t.Fatal(err)
	}
	first := <-started
	firstPID, _ := strconv.Atoi(first.Fields["pid"])

	// Learn the healthy rate from the miner itself, as a benchmark would.
	base := waitStats(t, src, func(s minerapi.Stats) bool { return s.TotalHashrate > 0 })
	expected.Store(toBits(base.TotalHashrate))

	w, err := New(Config{
		PollInterval: 25 * time.Millisecond, StartupGrace: time.Millisecond,
		LowHashrateFor: 300 * time.Millisecond, StatsUnreachableFor: 10 * time.Second,
	}, Deps{Stats: src, Miner: sup, Logger: quiet, OnEvent: func(e Event) { wdEvents <- e }})
	if err != nil {
		t.Fatal(err)
	}
	wd.Store(w)
	w.MinerStarted(base.TotalHashrate)
	runDone := make(chan error, 1)
	go func() { runDone <- w.Run(ctx) }()

	// SIGUSR1 makes the fake miner drop to 10% of its hashrate.
	if err := syscall.Kill(firstPID, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(15 * time.Second)
	var restart Event
wait:
	for {
		select {
		case e := <-wdEvents:
			if e.Kind == "watchdog_restart_miner" {
				restart = e
				break wait
			}
		case <-timeout:
			t.Fatal("watchdog never restarted the slow miner")
		}
	}
	if !strings.Contains(restart.Message, "below 70% of expected") {
		t.Errorf("restart reason = %q", restart.Message)
	}
	second := <-started
	if second.Fields["pid"] == first.Fields["pid"] {
		t.Fatal("miner was not replaced")
	}
	if err := syscall.Kill(-firstPID, 0); !errors.Is(err, syscall.ESRCH) {
		// The kernel may take a moment to reap; give it one.
		time.Sleep(2 * time.Second)
		if err := syscall.Kill(-firstPID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("old miner group %d still present: %v", firstPID, err)
		}
	}
	after := waitStats(t, src, func(s minerapi.Stats) bool { return s.TotalHashrate >= 0.7*base.TotalHashrate })
	t.Logf("hashrate %.0f -> dropped -> restarted at %.0f H/s", base.TotalHashrate, after.TotalHashrate)

	cancel()
	if err := <-runDone; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
}

func waitStats(t *testing.T, src StatsSource, ok func(minerapi.Stats) bool) minerapi.Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		s, err := src.Stats(context.Background())
		if err == nil && ok(s) {
			return s
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("stats never became as expected (last error %v)", last)
	return minerapi.Stats{}
}

func toBits(f float64) uint64   { return math.Float64bits(f) }
func fromBits(b uint64) float64 { return math.Float64frombits(b) }
