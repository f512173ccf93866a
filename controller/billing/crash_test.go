package billing

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/controller/billing/faultproxy"
	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	"go.etcd.io/bbolt"
)

const crashChildEnv = "QUARRY_BILLING_CRASH_CHILD"

// crashChild runs the relay against the database and Stripe URL it is given
// until the outbox is empty. The parent kills it at random moments.
func crashChild() int {
	path, url := os.Getenv("QUARRY_BILLING_DB"), os.Getenv("QUARRY_BILLING_STRIPE")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 2
	}
	defer db.Close()
	client := NewStripeClient("sk_test_123", url, &httpClientNoKeepAlive)
	s, err := New(Config{DB: store.NewDB(db), Stripe: client, RetryBase: time.Millisecond, Logger: discardLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child new:", err)
		return 2
	}
	ctx := context.Background()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		if _, err := s.RelayOnce(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "child relay:", err)
			return 2
		}
		pending, _ := s.Outbox()
		dead, _ := s.DeadLetter()
		for _, r := range dead {
			// What an operator does after the alert.
			if err := s.Retry(ctx, r.ID); err != nil {
				fmt.Fprintln(os.Stderr, "child retry:", err)
				return 2
			}
		}
		if len(pending) == 0 && len(dead) == 0 {
			return 0
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "child: outbox not drained in 60s")
	return 3
}

func TestCrashRecoveryDeliversEveryFactOnce(t *testing.T) {
	mock := mockURL(t)
	proxy, err := faultproxy.Start(mock, faultproxy.Config{Seed: 42, Delay: 20 * time.Millisecond,
		Rates: map[faultproxy.Fault]float64{faultproxy.Drop: 0.07, faultproxy.DropAfter: 0.07, faultproxy.Delay: 0.05,
			faultproxy.Status500: 0.07, faultproxy.Status409: 0.03, faultproxy.Status429: 0.03}})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()

	path := filepath.Join(t.TempDir(), "billing.db")
	db := openDB(t, path)
	s := newTestService(t, db, Config{Now: testsupport.NewClock(t10.Add(-time.Hour)).Now})
	ctx := context.Background()
	for c := range 5 {
		cust := fmt.Sprintf("cust%d", c)
		mustCustomer(t, s, cust)
		for r := range 4 {
			if err := s.AssignRigs(ctx, cust, fmt.Sprintf("rig%d-%d", c, r)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for at := t10; !at.After(t10.Add(3 * time.Hour)); at = at.Add(30 * time.Second) {
		for c := range 5 {
			for r := range 4 {
				if err := s.Meter().Observe(fmt.Sprintf("rig%d-%d", c, r), at, float64(1000+100*c+r)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// One more rig per customer is cut off at 10:40 and replays its buffer
	// after hour 10 was sent: hour 10 gets a correction. 1 kW: 10:00–10:40
	// is 666.67 Wh (666 sent), 10:40–11:00 333.33 Wh + 0.67 carried (334),
	// 11:00–11:30 500 Wh.
	for c := range 5 {
		if err := s.AssignRigs(ctx, fmt.Sprintf("cust%d", c), fmt.Sprintf("late%d", c)); err != nil {
			t.Fatal(err)
		}
	}
	lateRigs := func(from, to time.Duration) {
		for d := from; d <= to; d += 30 * time.Second {
			for c := range 5 {
				if err := s.Meter().Observe(fmt.Sprintf("late%d", c), t10.Add(d), 1000); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	lateRigs(0, 40*time.Minute)
	if err := s.Meter().Flush(ctx, t10.Add(time.Hour+4*time.Minute)); err != nil {
		t.Fatal(err)
	}
	lateRigs(40*time.Minute+30*time.Second, 90*time.Minute)
	if err := s.Meter().Flush(ctx, t10.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	facts, err := s.AllRecords()
	if err != nil {
		t.Fatal(err)
	}
	if countKind(facts, KindMeterEvent) != 75 {
		t.Fatalf("seeded %d meter events, want 75", countKind(facts, KindMeterEvent))
	}
	wantValue := map[string]int64{}
	for c := range 5 {
		base := fmt.Sprintf("energy:late%d:2026-11-29T%%s:cust%d", c, c)
		wantValue[fmt.Sprintf(base, "10")] = 666
		wantValue[fmt.Sprintf(base, "10")+":c1"] = 334
		wantValue[fmt.Sprintf(base, "11")] = 500
	}
	for _, r := range facts {
		if w, ok := wantValue[r.Identifier]; ok && r.ValueWh != w {
			t.Errorf("%s: %d Wh queued, want %d", r.Identifier, r.ValueWh, w)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	rnd := rand.New(rand.NewPCG(7, 7))
	// runChild starts a relay; with killAfter > 0 it is SIGKILLed once the
	// proxy has seen that many more requests, i.e. in the middle of work.
	runChild := func(killAfter int) error {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"=1", "QUARRY_BILLING_DB="+path, "QUARRY_BILLING_STRIPE="+proxy.URL())
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		if killAfter == 0 {
			if err := cmd.Wait(); err != nil {
				return fmt.Errorf("child: %w: %s", err, stderr.String())
			}
			return nil
		}
		target := len(proxy.Log()) + killAfter
		for deadline := time.Now().Add(20 * time.Second); len(proxy.Log()) < target && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		return nil
	}
	kills := 0
	for range 8 {
		before := len(proxy.Log())
		if err := runChild(1 + rnd.IntN(20)); err != nil {
			t.Fatal(err)
		}
		if len(proxy.Log()) > before {
			kills++ // killed while it was talking to Stripe
		}
	}
	if kills < 3 {
		t.Fatalf("only %d kills landed while the relay was busy", kills)
	}
	if err := runChild(0); err != nil {
		t.Fatal(err)
	}

	// The database says everything is done...
	s = newTestService(t, openDB(t, path), Config{})
	recs, err := s.AllRecords()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.State != StateDone {
			t.Errorf("record %d %s is %s: %s", r.ID, r.Key, r.State, r.LastError)
		}
	}
	// ...and the proxy's log proves it: every fact reached Stripe, each
	// under exactly one idempotency key, and each meter identifier under one
	// key.
	log := proxy.Log()
	delivered := map[string]bool{}
	identKeys := map[string]map[string]bool{}
	keyIdents := map[string]map[string]bool{}
	faults := map[faultproxy.Fault]int{}
	for _, e := range log {
		faults[e.Fault]++
		if e.Method != "POST" {
			continue
		}
		if e.Forwarded && (e.Status == 200 || e.Fault == faultproxy.DropAfter) {
			delivered[e.IdempotencyKey] = true
		}
		if e.Identifier != "" {
			add(identKeys, e.Identifier, e.IdempotencyKey)
			add(keyIdents, e.IdempotencyKey, e.Identifier)
		}
	}
	for _, r := range recs {
		if !delivered[r.IdempotencyKey()] && !strings.HasPrefix(r.Result, "superseded") {
			t.Errorf("fact %s never reached Stripe", r.Key)
		}
		if r.Kind == KindMeterEvent && len(identKeys[r.Identifier]) != 1 {
			t.Errorf("identifier %s sent under keys %v", r.Identifier, identKeys[r.Identifier])
		}
	}
	for k, ids := range keyIdents {
		if len(ids) != 1 {
			t.Errorf("key %s carried identifiers %v", k, ids)
		}
	}
	if len(identKeys) != 75 {
		t.Errorf("%d distinct identifiers reached the proxy, want 75", len(identKeys))
	}
	for ident := range wantValue {
		if len(identKeys[ident]) != 1 {
			t.Errorf("%s reached the proxy under keys %v", ident, identKeys[ident])
		}
	}
	t.Logf("%d requests, %d kills while busy, faults %v", len(log), kills, faults)
}

func add(m map[string]map[string]bool, k, v string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][v] = true
}
