package minerapi_test

import (
	"bytes"
	"context"
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

	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

var fake struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if fake.dir != "" {
			os.RemoveAll(fake.dir)
		}
	}))
}

// fakeminerBinary builds the fake miner once per test run.
func fakeminerBinary(t testing.TB) string {
	t.Helper()
	fake.once.Do(func() {
		fake.dir, fake.err = os.MkdirTemp("", "fakeminer-")
		if fake.err != nil {
			return
		}
		fake.path = filepath.Join(fake.dir, "fakeminer")
		out, err := exec.Command("go", "build", "-o", fake.path, "./fakeminer").CombinedOutput()
		if err != nil {
			fake.err = err
			fake.path = string(out)
		}
	})
	if fake.err != nil {
		t.Fatalf("building fakeminer: %v\n%s", fake.err, fake.path)
	}
	return fake.path
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type fakeMiner struct {
	cmd     *exec.Cmd
	ep      minerapi.Endpoint
	control string
	stdout  *lockedBuffer
	stderr  *lockedBuffer
	done    chan struct{}
	waitErr error
}

// startFake runs fakeminer with args and waits until its API is bound. The
// process is stopped (SIGTERM, then SIGKILL) when the test ends.
func startFake(t testing.TB, api string, args ...string) *fakeMiner {
	t.Helper()
	dir := t.TempDir()
	f := &fakeMiner{control: filepath.Join(dir, "control"), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	portFile := filepath.Join(dir, "addr")
	all := append([]string{"-api", api, "-listen", "127.0.0.1:0", "-port-file", portFile, "-control", f.control,
		"-log-interval", "50ms"}, args...)
	f.cmd = exec.Command(fakeminerBinary(t), all...)
	f.cmd.Stdout, f.cmd.Stderr = f.stdout, f.stderr
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { f.waitErr = f.cmd.Wait(); close(f.done) }()
	t.Cleanup(func() {
		_ = f.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-f.done:
		case <-time.After(3 * time.Second):
			_ = f.cmd.Process.Kill()
			<-f.done
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(portFile)
		if err == nil && len(b) > 0 {
			_, port, _ := strings.Cut(string(b), ":")
			p, err := strconv.Atoi(port)
			if err != nil {
				t.Fatalf("port file %q: %v", b, err)
			}
			f.ep = minerapi.Endpoint{Host: "127.0.0.1", Port: p}
			return f
		}
		select {
		case <-f.done:
			t.Fatalf("fakeminer exited early: %v\nstderr: %s", f.waitErr, f.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("fakeminer did not bind; stderr: %s", f.stderr)
		}
	}
}

func (f *fakeMiner) cue(t testing.TB, text string) {
	t.Helper()
	tmp := f.control + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f.control); err != nil {
		t.Fatal(err)
	}
}

// eventually polls fn until it returns true or the time runs out; the fake
// re-reads its control file every 100ms.
func eventually(t testing.TB, what string, fn func() (bool, string)) {
	t.Helper()
	testsupport.Poll(t, what, 5*time.Second, fn)
}

func newAdapter(t testing.TB, name string, opts minerapi.Options) minerapi.Adapter {
	t.Helper()
	if opts.Client == nil {
		opts.Client = minerapi.NewClient(minerapi.WithTimeout(2 * time.Second))
	}
	a, err := minerapi.Default().New(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}
