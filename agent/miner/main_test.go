package miner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
)

// testMiner is the path of the built testdata/testminer program, set once
// by TestMain before any test runs.
var testMiner string

func TestMain(m *testing.M) {
	if os.Getenv("QUARRY_TEST_AGENT") != "" {
		os.Exit(fakeAgent())
	}
	dir, err := os.MkdirTemp("", "testminer-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testMiner = filepath.Join(dir, "testminer")
	if out, err := exec.Command("go", "build", "-o", testMiner, "./testdata/testminer").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build testminer: %v\n%s", err, out)
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

// fakeAgent is the test binary re-run as an agent process: it starts a
// miner under a supervisor and then waits to be killed, leaving the miner
// orphaned the way a crashed agent would.
func fakeAgent() int {
	ctx := context.Background()
	pidFile := filepath.Join(os.Getenv("QUARRY_TEST_AGENT"), "test-pids")
	s, err := New(ctx, Config{DataDir: os.Getenv("QUARRY_TEST_AGENT"), MinersDir: filepath.Dir(os.Getenv("QUARRY_TEST_MINER")), Launcher: argsFrom("-fork", "-pid-file", pidFile)})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	if err := s.Start(ctx, sheetFor(os.Getenv("QUARRY_TEST_MINER"))); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	// Report ready only once the miner has forked, so the test knows the
	// whole group it must later find gone.
	for {
		b, _ := os.ReadFile(pidFile)
		if len(strings.Fields(string(b))) >= 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("ready", s.Status().PID)
	select {}
}

// argsFrom builds a fixed command line plus "-say pool=URL" so tests can see
// which pool a run was given.
func argsFrom(args ...string) Launcher {
	return ArgsFunc(func(fs *flightsheet.FlightSheet) ([]string, error) {
		return append(append([]string(nil), args...), "-say", "pool="+fs.Pools[0].URL), nil
	})
}

func sheetFor(path string) *flightsheet.FlightSheet {
	sum, err := FileSHA256(path)
	if err != nil {
		panic(err)
	}
	return &flightsheet.FlightSheet{
		Name: "test", Coin: "XMR", Algorithm: "rx/0",
		Miner: flightsheet.Miner{Name: "xmrig", Path: path, SHA256: sum},
		Pools: []flightsheet.Pool{
			{URL: "stratum+tcp://pool-a.example:3333", User: "wallet.rig"},
			{URL: "stratum+tcp://pool-b.example:3333", User: "wallet.rig"},
		},
	}
}

// recorder collects events and lets a test wait for one kind.
type recorder struct {
	ch  chan Event
	mu  sync.Mutex
	all []Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan Event, 1024)} }

func (r *recorder) on(e Event) {
	r.mu.Lock()
	r.all = append(r.all, e)
	r.mu.Unlock()
	select {
	case r.ch <- e:
	default:
	}
}

func (r *recorder) waitFor(t *testing.T, kind EventKind) Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-r.ch:
			if e.Kind == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event within 10s; saw %v", kind, r.kinds())
		}
	}
}

func (r *recorder) kinds() []EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ks []EventKind
	for _, e := range r.all {
		ks = append(ks, e.Kind)
	}
	return ks
}

func (r *recorder) count(kind EventKind) int {
	n := 0
	for _, k := range r.kinds() {
		if k == kind {
			n++
		}
	}
	return n
}

type harness struct {
	s   *Supervisor
	ev  *recorder
	dir string
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{ev: newRecorder(), dir: t.TempDir()}
	if cfg.DataDir == "" {
		cfg.DataDir = h.dir
	}
	if cfg.Launcher == nil {
		cfg.Launcher = argsFrom()
	}
	if cfg.MinersDir == "" {
		// The test miner's directory is the miners directory: the
		// supervisor runs nothing from anywhere else.
		cfg.MinersDir = filepath.Dir(testMiner)
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 2 * time.Second
	}
	cfg.OnEvent = h.ev.on
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

func assertGroupGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := syscall.Kill(-pgid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still exists (kill: %v)", pgid, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func assertPidGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		// A zombie still answers kill; only its state tells.
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readPids(t *testing.T, path string, want int) []int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			n, err := strconv.Atoi(f)
			if err == nil {
				pids = append(pids, n)
			}
		}
		if len(pids) >= want {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid file %s has %d pids, want %d", path, len(pids), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitTail(t *testing.T, s *Supervisor, substr string) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines, err := s.Tail(50)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if strings.Contains(l, substr) {
				return lines
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("log never showed %q; tail:\n%s", substr, strings.Join(lines, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
