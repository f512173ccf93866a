package billing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	code := m.Run()
	sharedMock.stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// openDB opens a bbolt file under dir and checks its consistency when the
// test ends, the way bbolt's own tests do.
func openDB(t testing.TB, path string) *store.DB {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() {
		if db.Path() == "" {
			return // closed by the test
		}
		if err := db.View(func(tx *bbolt.Tx) error {
			for err := range tx.Check() {
				return err
			}
			return nil
		}); err != nil {
			t.Errorf("bbolt check: %v", err)
		}
		_ = db.Close()
	})
	return store.NewDB(db)
}

func newTestService(t testing.TB, db *store.DB, cfg Config) *Service {
	t.Helper()
	cfg.DB = db
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

var testPlan = Plan{ID: "std", Name: "Standard", MonthlyFeePerRigCents: 4500, EnergyMilliCentsPerKWh: 12_500,
	StripeRigPriceID: "price_rig_monthly", StripeEnergyPriceID: "price_energy_wh"}

func mustCustomer(t testing.TB, s *Service, id string) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.GetPlan(testPlan.ID); err != nil {
		if err := s.PutPlan(ctx, testPlan); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateCustomer(ctx, Customer{ID: id, Name: "Customer " + id, Email: id + "@example.com", Plan: testPlan.ID}); err != nil {
		t.Fatal(err)
	}
}

// repoRoot finds the module root so bin/stripe-mock can be located.
func repoRoot() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// stripeMock is one stripe-mock process shared by the package's tests.
type stripeMock struct {
	once sync.Once
	cmd  *exec.Cmd
	url  string
	err  error
}

var sharedMock stripeMock

func (m *stripeMock) stop() {
	if m.cmd != nil && m.cmd.Process != nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
	}
}

// mockURL starts stripe-mock on a free loopback port, or skips the test if
// the binary is missing (make test installs it into bin/).
func mockURL(t testing.TB) string {
	t.Helper()
	sharedMock.once.Do(func() {
		bin := os.Getenv("QUARRY_STRIPE_MOCK")
		if bin == "" {
			bin = filepath.Join(repoRoot(), "bin", "stripe-mock")
		}
		if _, err := os.Stat(bin); err != nil {
			sharedMock.err = fmt.Errorf("stripe-mock not found at %s (set QUARRY_STRIPE_MOCK or run `GOBIN=$PWD/bin go install github.com/stripe/stripe-mock@latest`): %w", bin, err)
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			sharedMock.err = err
			return
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		cmd := exec.Command(bin, "-http-addr", addr)
		if err := cmd.Start(); err != nil {
			sharedMock.err = fmt.Errorf("start stripe-mock: %w", err)
			return
		}
		sharedMock.cmd = cmd
		sharedMock.url = "http://" + addr
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if c, err := net.Dial("tcp", addr); err == nil {
				_ = c.Close()
				return
			}
		}
		sharedMock.err = errors.New("stripe-mock did not start listening within 20s")
	})
	if sharedMock.err != nil {
		if errors.Is(sharedMock.err, os.ErrNotExist) {
			testsupport.Missing(t, sharedMock.err.Error(), "make tools installs bin/stripe-mock")
		}
		t.Fatal(sharedMock.err)
	}
	return sharedMock.url
}

// testHTTPClient has no idle connections left behind for goleak to find.
func testHTTPClient(t testing.TB, timeout time.Duration) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

var httpClientNoKeepAlive = http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
