package billing

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/controller/billing/faultproxy"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

type auditLog struct {
	mu     sync.Mutex
	events []AuditEvent
}

func (a *auditLog) BillingEvent(_ context.Context, e AuditEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
}

func (a *auditLog) kinds(kind string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, e := range a.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

type harness struct {
	s     *Service
	proxy *faultproxy.Proxy
	clk   *testsupport.Clock
	audit *auditLog
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	proxy, err := faultproxy.Start(mockURL(t), faultproxy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	h := &harness{proxy: proxy, clk: testsupport.NewClock(t10.Add(-time.Hour)), audit: &auditLog{}}
	h.s = newTestService(t, openDB(t, filepath.Join(t.TempDir(), "b.db")), Config{
		Stripe: NewStripeClient("sk_test_123", proxy.URL(), testHTTPClient(t, 5*time.Second)),
		Now:    h.clk.Now, RetryBase: time.Second, Audit: h.audit})
	return h
}

// drain relays until nothing is pending, moving the clock past backoffs.
func (h *harness) drain(t *testing.T) {
	t.Helper()
	for range 50 {
		if _, err := h.s.RelayOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if recs, _ := h.s.Outbox(); len(recs) == 0 {
			return
		}
		h.clk.Advance(time.Minute)
	}
	recs, _ := h.s.Outbox()
	t.Fatalf("outbox not drained: %+v", recs)
}

func (h *harness) posts(path string) []faultproxy.Entry {
	var out []faultproxy.Entry
	for _, e := range h.proxy.Log() {
		if e.Method == "POST" && strings.HasPrefix(e.Path, path) {
			out = append(out, e)
		}
	}
	return out
}

func TestOutboxDeliversToStripeMock(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	mustCustomer(t, h.s, "alice")
	for _, r := range []string{"rig1", "rig2", "rig3"} {
		if err := h.s.AssignRigs(ctx, "alice", r); err != nil {
			t.Fatal(err)
		}
	}
	for d := time.Duration(0); d <= time.Hour; d += 10 * time.Second {
		_ = h.s.Meter().Observe("rig1", t10.Add(d), 1500)
	}
	if err := h.s.Meter().Flush(ctx, t10.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	c, _ := h.s.GetCustomer("alice")
	if c.StripeCustomerID == "" || c.StripeSubscriptionID == "" || c.StripeSubscriptionItemID == "" {
		t.Fatalf("stripe ids not recorded: %+v", c)
	}
	if n := len(h.posts("/v1/customers")); n != 1 {
		t.Errorf("%d customer creates, want 1", n)
	}
	// Three quantity changes, the first two superseded before they were sent.
	if n := len(h.posts("/v1/subscriptions/" + c.StripeSubscriptionID)); n != 1 {
		t.Errorf("%d quantity updates, want 1 (older versions superseded)", n)
	}
	me := h.posts("/v1/billing/meter_events")
	if len(me) != 1 || me[0].Identifier != "energy:rig1:2026-11-29T10:alice" || me[0].IdempotencyKey != "quarry:energy:rig1:2026-11-29T10:alice" || me[0].Status != 200 {
		t.Errorf("meter events = %+v", me)
	}
	st, err := h.s.Status("alice", t10.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// 3 rigs × 45.00 + 1.5 kWh × 12.5 ¢ = 135.18 (rounded down).
	if st.ActiveRigs != 3 || st.MonthToDateMilliWh != 1_500_000 || st.EstimateCents != 13518 || st.PendingRecords != 0 {
		t.Errorf("status = %+v", st)
	}
}

func TestOutboxRetriesTransientFailuresWithTheSameKey(t *testing.T) {
	tests := []struct {
		name   string
		faults []faultproxy.Fault
	}{
		{"500", []faultproxy.Fault{faultproxy.Status500}},
		{"409 then 429", []faultproxy.Fault{faultproxy.Status409, faultproxy.Status429}},
		{"connection dropped", []faultproxy.Fault{faultproxy.Drop}},
		{"dropped after Stripe acted", []faultproxy.Fault{faultproxy.DropAfter, faultproxy.DropAfter, faultproxy.Status500, faultproxy.Drop}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			mustCustomer(t, h.s, "alice")
			h.proxy.Next(tc.faults...)
			start := h.clk.Now()
			if _, err := h.s.RelayOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			recs, _ := h.s.Outbox()
			if recs[0].Attempts != 1 || !recs[0].NextAttempt.Equal(start.Add(time.Second)) {
				t.Errorf("after first failure: attempts %d next %v, want 1 and +1s", recs[0].Attempts, recs[0].NextAttempt.Sub(start))
			}
			h.drain(t)
			posts := h.posts("/v1/customers")
			if len(posts) != len(tc.faults)+1 {
				t.Fatalf("%d attempts, want %d", len(posts), len(tc.faults)+1)
			}
			for _, p := range posts {
				if p.IdempotencyKey != "quarry:customer:alice" {
					t.Errorf("attempt used key %q", p.IdempotencyKey)
				}
			}
		})
	}
}

func TestOutboxDeadLetterAndRetry(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	mustCustomer(t, h.s, "alice")
	h.proxy.Next(faultproxy.Status500, faultproxy.Status500, faultproxy.Status500, faultproxy.Status500, faultproxy.Status500)
	var waits []time.Duration
	for range 5 {
		if _, err := h.s.RelayOnce(ctx); err != nil {
			t.Fatal(err)
		}
		recs, _ := h.s.AllRecords()
		if recs[0].State == StatePending {
			waits = append(waits, recs[0].NextAttempt.Sub(h.clk.Now()))
			h.clk.Set(recs[0].NextAttempt)
		}
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}; len(waits) != 4 || waits[3] != want[3] || waits[0] != want[0] {
		t.Errorf("backoff %v, want %v", waits, want)
	}
	dead, _ := h.s.DeadLetter()
	if len(dead) != 1 || dead[0].Attempts != 5 || h.audit.kinds("outbox.dead") != 1 {
		t.Fatalf("dead letters %+v, alerts %d", dead, h.audit.kinds("outbox.dead"))
	}
	// Other records wait for the customer rather than failing.
	if pending, _ := h.s.Outbox(); len(pending) != 1 || pending[0].Attempts != 0 {
		t.Errorf("dependent records: %+v", pending)
	}
	if err := h.s.Retry(ctx, dead[0].ID); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	posts := h.posts("/v1/customers")
	if len(posts) != 6 || posts[5].IdempotencyKey != "quarry:customer:alice" || posts[5].Status != 200 {
		t.Errorf("posts after retry: %+v", posts)
	}
}

func TestOutboxValidationErrorIsNotRetried(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	mustCustomer(t, h.s, "alice")
	h.proxy.Next(faultproxy.Status400)
	h.drainOnce(t)
	dead, _ := h.s.DeadLetter()
	if len(dead) != 1 || dead[0].Attempts != 1 || !strings.Contains(dead[0].LastError, "injected") {
		t.Fatalf("dead = %+v", dead)
	}
	if err := h.s.Retry(ctx, dead[0].ID); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	posts := h.posts("/v1/customers")
	if len(posts) != 2 || posts[1].IdempotencyKey != "quarry:customer:alice:retry1" {
		t.Errorf("posts = %+v, want a second attempt under a new key", posts)
	}
}

func (h *harness) drainOnce(t *testing.T) {
	t.Helper()
	if _, err := h.s.RelayOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestOutboxReconcilesPastTheIdempotencyWindow(t *testing.T) {
	h := newHarness(t)
	mustCustomer(t, h.s, "alice")
	h.proxy.Next(faultproxy.DropAfter)
	h.drainOnce(t)
	h.clk.Advance(25 * time.Hour)
	h.drain(t)
	var seq []string
	for _, e := range h.proxy.Log() {
		if strings.HasPrefix(e.Path, "/v1/customers") {
			seq = append(seq, e.Method+" "+e.Path)
		}
	}
	want := []string{"POST /v1/customers", "GET /v1/customers/search", "POST /v1/customers"}
	if strings.Join(seq, ",") != strings.Join(want, ",") {
		t.Errorf("requests %v, want %v (read Stripe before resending)", seq, want)
	}
}

func TestRelayRunsUntilCanceled(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.s.RunRelay(ctx) }()
	mustCustomer(t, h.s, "alice")
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if recs, _ := h.s.Outbox(); len(recs) == 0 {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if recs, _ := h.s.Outbox(); len(recs) != 0 {
		t.Errorf("relay left %d records", len(recs))
	}
}

// Stripe-mock, like a misconfigured proxy might, quotes a refused key
// back in its error; the dead letter shown to admins and its audit entry
// hold no key.
func TestOutboxErrorsNeverHoldTheKey(t *testing.T) {
	const key = "sk_live_quotedback123"
	audit := &auditLog{}
	s := newTestService(t, openDB(t, filepath.Join(t.TempDir(), "b.db")), Config{
		Stripe: NewStripeClient(key, mockURL(t), testHTTPClient(t, 5*time.Second)),
		Now:    testsupport.NewClock(t10).Now, RetryBase: time.Second, Audit: audit, MaxAttempts: 1})
	mustCustomer(t, s, "alice")
	if _, err := s.RelayOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	dead, _ := s.DeadLetter()
	if len(dead) != 1 || dead[0].LastError == "" {
		t.Fatalf("dead letters %+v, want the refused customer", dead)
	}
	if strings.Contains(dead[0].LastError, "quotedback") {
		t.Errorf("stored error holds the key: %s", dead[0].LastError)
	}
	audit.mu.Lock()
	defer audit.mu.Unlock()
	for _, e := range audit.events {
		if strings.Contains(e.Detail, "quotedback") {
			t.Errorf("audit event holds the key: %+v", e)
		}
	}
}
