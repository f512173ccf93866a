package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/controller/billing"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/config"
	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// billingTestController runs a controller in the test process until the
// test ends (or stop is called).
type billingTestController struct {
	*Controller
	t      *testing.T
	dir    string
	cancel context.CancelFunc
	done   chan error
}

func startBillingController(t *testing.T, dir string, mutate func(*Config)) *billingTestController {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ShutdownGrace = 2 * time.Second
	cfg.LocalToken = false
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg, "test", billingQuietLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bc := &billingTestController{Controller: c, t: t, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { bc.done <- c.Serve(ctx) }()
	t.Cleanup(bc.stop)
	return bc
}

func (bc *billingTestController) stop() {
	if bc.cancel == nil {
		return
	}
	bc.cancel()
	if err := <-bc.done; err != nil {
		bc.t.Errorf("controller: %v", err)
	}
	bc.cancel = nil
}

// enableBilling points billing at an address where nothing listens: the
// outbox keeps its records, which these tests do not need delivered.
func enableBilling(c *Config) {
	c.Billing.Enabled = true
	c.Billing.StripeKey = "sk_test_billing"
	c.Billing.StripeURL = "http://127.0.0.1:1"
	c.Billing.RetryBase = time.Hour
	c.Billing.FlushInterval = 100 * time.Millisecond
}

func billingQuietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// billingClient dials BillingService with token, or the local admin token.
func (bc *billingTestController) billingClient(t *testing.T, token string) quarryv1.BillingServiceClient {
	t.Helper()
	return quarryv1.NewBillingServiceClient(bc.conn(t, token))
}

func (bc *billingTestController) conn(t *testing.T, token string) *grpc.ClientConn {
	t.Helper()
	if token == "" {
		b, err := os.ReadFile(filepath.Join(bc.dir, AdminTokenFile))
		if err != nil {
			t.Fatal(err)
		}
		token = strings.TrimSpace(string(b))
	}
	pool := x509.NewCertPool()
	pool.AddCert(bc.CA().Cert)
	conn, err := grpc.NewClient(bc.GRPCAddr(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})),
		grpc.WithPerRPCCredentials(billingBearer(token)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

type billingBearer string

func (b billingBearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (billingBearer) RequireTransportSecurity() bool { return true }

// enrollBillingRig enrolls a rig named name with the controller and
// returns its identity and its data directory.
func enrollBillingRig(t *testing.T, bc *billingTestController, name, hostname string) (*link.Identity, string) {
	t.Helper()
	tok, _, err := bc.Fleet().CreateToken(bc.CA().Hash(), time.Minute, 1, name, "test")
	if err != nil {
		t.Fatal(err)
	}
	agentDir := t.TempDir()
	id, err := link.Enroll(billingCtx(t), filepath.Join(agentDir, "pki"), bc.GRPCAddr(), tok, hostname)
	if err != nil {
		t.Fatal(err)
	}
	return id, agentDir
}

func billingCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantStatus(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), substr) {
		t.Fatalf("got %v, want %s containing %q", err, code, substr)
	}
}

func TestBillingDisabledAnswersFailedPrecondition(t *testing.T) {
	bc := startBillingController(t, t.TempDir(), nil)
	conn := bc.conn(t, "")
	for method := range billing.BillingRoles {
		t.Run(method[strings.LastIndex(method, "/")+1:], func(t *testing.T) {
			// An empty message decodes as any request type.
			err := conn.Invoke(billingCtx(t), method, &quarryv1.GetVersionRequest{}, &quarryv1.GetVersionResponse{})
			wantStatus(t, err, codes.FailedPrecondition, billing.DisabledMessage)
		})
	}
	resp, err := http.Post("http://"+bc.HTTPAddr()+billing.WebhookPath, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("webhook with billing off: status %d, want 404", resp.StatusCode)
	}
}

func TestBillingRoles(t *testing.T) {
	bc := startBillingController(t, t.TempDir(), enableBilling)
	viewerTok, err := bc.Fleet().CreateAdminToken("vera", fleet.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	admin, viewer := bc.billingClient(t, ""), bc.billingClient(t, viewerTok)
	ctx := billingCtx(t)

	plan := &quarryv1.BillingPlan{Id: "std", MonthlyFeePerRigCents: 4500, EnergyMillicentsPerKwh: 12_500, StripeRigPriceId: "price_rig"}
	_, err = viewer.CreatePlan(ctx, &quarryv1.CreatePlanRequest{Plan: plan})
	wantStatus(t, err, codes.PermissionDenied, "needs role admin")
	if _, err := admin.CreatePlan(ctx, &quarryv1.CreatePlanRequest{Plan: plan}); err != nil {
		t.Fatal(err)
	}
	_, err = viewer.ListPlans(ctx, &quarryv1.ListPlansRequest{})
	wantStatus(t, err, codes.PermissionDenied, "ListPlans needs role admin")
	if _, err := admin.CreatePlan(ctx, &quarryv1.CreatePlanRequest{Plan: &quarryv1.BillingPlan{Id: "basic", StripeRigPriceId: "price_basic"}}); err != nil {
		t.Fatal(err)
	}
	plans, err := admin.ListPlans(ctx, &quarryv1.ListPlansRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plans.Plans) != 2 || plans.Plans[0].Id != "basic" || plans.Plans[1].Id != "std" || plans.Plans[1].MonthlyFeePerRigCents != 4500 || plans.Plans[1].StripeRigPriceId != "price_rig" {
		t.Errorf("plans listed: %v", plans.Plans)
	}
	_, err = viewer.CreateCustomer(ctx, &quarryv1.CreateCustomerRequest{Name: "Acme", Email: "ops@acme.example", Plan: "std"})
	wantStatus(t, err, codes.PermissionDenied, "CreateCustomer needs role admin")
	cu, err := admin.CreateCustomer(ctx, &quarryv1.CreateCustomerRequest{Name: "Acme Hosting, Inc.", Email: "ops@acme.example", Plan: "std"})
	if err != nil {
		t.Fatal(err)
	}
	if cu.Customer.Id != "acme-hosting-inc" || cu.Customer.Status != "active" {
		t.Errorf("created %v, want id acme-hosting-inc, active", cu.Customer)
	}
	_, err = admin.CreateCustomer(ctx, &quarryv1.CreateCustomerRequest{Name: "Acme Hosting Inc", Email: "x@acme.example", Plan: "std"})
	wantStatus(t, err, codes.AlreadyExists, "already exists")
	_, err = admin.CreateCustomer(ctx, &quarryv1.CreateCustomerRequest{Name: "Beta", Email: "no-at-sign", Plan: "std"})
	wantStatus(t, err, codes.InvalidArgument, "valid email")
	_, err = admin.CreateCustomer(ctx, &quarryv1.CreateCustomerRequest{Name: "Gamma", Email: "g@example.com", Plan: "gold"})
	wantStatus(t, err, codes.NotFound, `plan "gold"`)
	_, err = admin.AssignRigs(ctx, &quarryv1.AssignRigsRequest{Customer: "acme-hosting-inc", Rigs: []string{"no-such-rig"}})
	wantStatus(t, err, codes.NotFound, "no-such-rig")

	for name, call := range map[string]func() error{
		"ListCustomers": func() error { _, err := viewer.ListCustomers(ctx, &quarryv1.ListCustomersRequest{}); return err },
		"GetCustomer": func() error {
			_, err := viewer.GetCustomer(ctx, &quarryv1.GetCustomerRequest{Id: "acme-hosting-inc"})
			return err
		},
		"AssignRigs": func() error {
			_, err := viewer.AssignRigs(ctx, &quarryv1.AssignRigsRequest{Rigs: []string{"x"}})
			return err
		},
		"ListOutbox":     func() error { _, err := viewer.ListOutbox(ctx, &quarryv1.ListOutboxRequest{}); return err },
		"ListDeadLetter": func() error { _, err := viewer.ListDeadLetter(ctx, &quarryv1.ListDeadLetterRequest{}); return err },
		"RetryOutbox":    func() error { _, err := viewer.RetryOutbox(ctx, &quarryv1.RetryOutboxRequest{Id: 1}); return err },
	} {
		wantStatus(t, call(), codes.PermissionDenied, name+" needs role admin")
	}

	// A viewer sees figures but not the customer's email; an admin sees both.
	vs, err := viewer.BillingStatus(ctx, &quarryv1.BillingStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	as, err := admin.BillingStatus(ctx, &quarryv1.BillingStatusRequest{Customer: "acme-hosting-inc"})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs.Customers) != 1 || vs.Customers[0].Customer.Email != "" || vs.Customers[0].Action != "none" {
		t.Errorf("viewer status %v: want one customer, no email, action none", vs.Customers)
	}
	if len(as.Customers) != 1 || as.Customers[0].Customer.Email != "ops@acme.example" {
		t.Errorf("admin status %v: want the email", as.Customers)
	}
	// Customer and subscription wait in the outbox (nothing listens at the Stripe URL).
	ob, err := admin.ListOutbox(ctx, &quarryv1.ListOutboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range ob.Records {
		kinds = append(kinds, r.Kind+"/"+r.State)
	}
	if got := strings.Join(kinds, ","); got != "customer.create/pending,subscription.create/pending" {
		t.Errorf("outbox %s", got)
	}

	// Every call, denied ones included, is in the audit log.
	log, err := bc.Fleet().AuditLog(time.Time{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"local-admin billing.create-customer acme-hosting-inc ok":                                                     false,
		"local-admin billing customer.created acme-hosting-inc ok":                                                    false,
		"vera authorize /quarry.v1.BillingService/CreateCustomer denied":                                              false,
		"vera billing.status  ok":                                                                                     false,
		"local-admin billing.create-customer beta error: customer beta: name and a valid email are required: invalid": false,
	}
	for _, e := range log {
		k := e.Who + " " + e.Action + " " + e.Target + " " + e.Result
		if _, ok := want[k]; ok {
			want[k] = true
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("audit log lacks %q", k)
		}
	}
}

// A rig's reported GPU power is metered for its customer through the
// controller's real ingest path, survives a restart through the final
// flush, and a silence longer than max_gap shows as an unbilled gap.
func TestBillingMetersReportedPower(t *testing.T) {
	dir := t.TempDir()
	bc := startBillingController(t, dir, func(c *Config) {
		enableBilling(c)
		c.Billing.FlushInterval = time.Hour // only the shutdown flush persists
		// The reports below are dated up to 5m10s ahead to make a gap;
		// allow that much clock skew so they keep their times.
		c.MaxClockSkew = 10 * time.Minute
	})
	id, agentDir := enrollBillingRig(t, bc, "meter-rig", "meter-host")
	db, err := store.Open(filepath.Join(agentDir, "agent.db"), link.Buckets...)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	buf, err := link.OpenBuffer(db, 1000, billingQuietLog())
	if err != nil {
		t.Fatal(err)
	}

	admin := bc.billingClient(t, "")
	ctx := billingCtx(t)
	if _, err := admin.CreatePlan(ctx, &quarryv1.CreatePlanRequest{Plan: &quarryv1.BillingPlan{Id: "std", StripeRigPriceId: "price_rig", EnergyMillicentsPerKwh: 10_000}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateCustomer(ctx, &quarryv1.CreateCustomerRequest{Id: "acme", Name: "Acme", Email: "a@acme.example", Plan: "std"}); err != nil {
		t.Fatal(err)
	}
	as, err := admin.AssignRigs(ctx, &quarryv1.AssignRigsRequest{Customer: "acme", Rigs: []string{"meter-rig"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(as.RigIds) != 1 || as.RigIds[0] != id.RigID() || len(as.Customer.Rigs) != 1 {
		t.Fatalf("assign resolved %v (customer %v), want %s", as.RigIds, as.Customer, id.RigID())
	}

	// 200 W + 100 W for 10 s = 3000 J = 833.3 mWh. A report without any
	// power reading in between is skipped, not metered as zero.
	t0 := time.Now().Add(time.Second).Truncate(time.Second)
	for i := range 11 {
		if _, err := buf.Append(testsupport.PowerReport(t0.Add(time.Duration(i)*time.Second), 200, 100)); err != nil {
			t.Fatal(err)
		}
		if i == 5 {
			if _, err := buf.Append(&quarryv1.Report{TimeUnixNano: t0.Add(5500 * time.Millisecond).UnixNano()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Then five minutes of silence (max_gap is 2m): a gap, no energy.
	if _, err := buf.Append(testsupport.PowerReport(t0.Add(10*time.Second+5*time.Minute), 300)); err != nil {
		t.Fatal(err)
	}
	const sent = 13
	lctx, lcancel := context.WithCancel(context.Background())
	linkDone := make(chan error, 1)
	go func() {
		linkDone <- (&link.Client{Addr: bc.GRPCAddr(), ServerName: "127.0.0.1", Identity: id, Buffer: buf,
			Handler: billingNoCommands{}, Log: billingQuietLog(), BackoffBase: 50 * time.Millisecond}).Run(lctx)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for buf.Acked() < sent {
		if time.Now().After(deadline) {
			t.Fatalf("controller acknowledged %d of %d reports", buf.Acked(), sent)
		}
		time.Sleep(20 * time.Millisecond)
	}
	lcancel()
	<-linkDone

	// Restart: the meter's last flush happened at shutdown.
	bc.stop()
	bc = startBillingController(t, dir, enableBilling)
	admin = bc.billingClient(t, "")
	q := &quarryv1.UsageRequest{Customer: "acme", SinceUnixNano: t0.Add(-time.Hour).UnixNano(), UntilUnixNano: t0.Add(2 * time.Hour).UnixNano()}
	u, err := admin.Usage(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if u.TotalMilliWh != 833 {
		t.Errorf("metered %d mWh, want 833 (300 W for 10 s)", u.TotalMilliWh)
	}
	if len(u.Gaps) != 1 || time.Duration(u.Gaps[0].EndUnixNano-u.Gaps[0].StartUnixNano) != 5*time.Minute || u.Gaps[0].Rig != id.RigID() {
		t.Errorf("gaps %v, want one of 5m on %s", u.Gaps, id.RigID())
	}
	byRig, err := admin.Usage(ctx, &quarryv1.UsageRequest{Rig: "meter-rig", SinceUnixNano: q.SinceUnixNano, UntilUnixNano: q.UntilUnixNano})
	if err != nil {
		t.Fatal(err)
	}
	if byRig.TotalMilliWh != 833 {
		t.Errorf("usage by rig name: %d mWh, want 833", byRig.TotalMilliWh)
	}
	_, err = admin.Usage(ctx, &quarryv1.UsageRequest{})
	wantStatus(t, err, codes.InvalidArgument, "customer or rig required")
}

type billingNoCommands struct{}

func (billingNoCommands) HandleCommand(context.Context, *quarryv1.Command) ([]byte, error) {
	return nil, nil
}

func TestBillingConfig(t *testing.T) {
	t.Run("key from environment", func(t *testing.T) {
		cfg := DefaultConfig()
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		config.RegisterFlags(fs, &cfg)
		if err := fs.Parse([]string{"-billing-enabled"}); err != nil {
			t.Fatal(err)
		}
		env := []string{"QUARRY_BILLING_STRIPE_KEY=sk_test_env", "QUARRY_BILLING_PAST_DUE_STOP_MINING_AFTER=72h"}
		if err := config.Load(&cfg, "", fs, env); err != nil {
			t.Fatal(err)
		}
		if !cfg.Billing.Enabled || cfg.Billing.StripeKey != "sk_test_env" || cfg.Billing.PastDue.StopMiningAfter != 72*time.Hour {
			t.Errorf("billing config %+v", cfg.Billing)
		}
		if err := cfg.Validate(); err != nil {
			t.Error(err)
		}
	})
}

// sendBuffer runs an agent link over buf until the controller has
// acknowledged every report in it.
func sendBuffer(t *testing.T, bc *billingTestController, id *link.Identity, buf *link.Buffer, upTo uint64) {
	t.Helper()
	lctx, lcancel := context.WithCancel(context.Background())
	linkDone := make(chan error, 1)
	go func() {
		linkDone <- (&link.Client{Addr: bc.GRPCAddr(), ServerName: "127.0.0.1", Identity: id, Buffer: buf,
			Handler: billingNoCommands{}, Log: billingQuietLog(), BackoffBase: 50 * time.Millisecond}).Run(lctx)
	}()
	defer func() {
		lcancel()
		<-linkDone
	}()
	for deadline := time.Now().Add(30 * time.Second); buf.Acked() < upTo; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("controller acknowledged %d of %d reports", buf.Acked(), upTo)
		}
	}
}

// An agent replays reports measured hours ago through the real ingest
// path: energy of an hour already sent is billed to it by one correction,
// energy older than the lateness window is billed now and flagged late,
// and a second buffer replaying the same sequence numbers (an agent whose
// acknowledgements were lost) bills nothing twice. /metrics counts both.
func TestBillingReplayedReportsAreBilledOnce(t *testing.T) {
	dir := t.TempDir()
	var offset atomic.Int64
	bc := startBillingController(t, dir, func(c *Config) {
		enableBilling(c)
		c.Billing.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	id, agentDir := enrollBillingRig(t, bc, "replay-rig", "replay-host")
	admin := bc.billingClient(t, "")
	ctx := billingCtx(t)
	if _, err := admin.CreatePlan(ctx, &quarryv1.CreatePlanRequest{Plan: &quarryv1.BillingPlan{Id: "std", StripeRigPriceId: "price_rig", EnergyMillicentsPerKwh: 10_000}}); err != nil {
		t.Fatal(err)
	}
	// The customer rents the rig since long before the reports were measured.
	offset.Store(int64(-24 * time.Hour))
	if _, err := admin.CreateCustomer(ctx, &quarryv1.CreateCustomerRequest{Id: "acme", Name: "Acme", Email: "a@acme.example", Plan: "std"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AssignRigs(ctx, &quarryv1.AssignRigsRequest{Customer: "acme", Rigs: []string{"replay-rig"}}); err != nil {
		t.Fatal(err)
	}
	offset.Store(0)

	// With the default 6 h window, whatever the minute now: hour A ended
	// at least 2 h ago (closed by the flusher, within the window), hour B
	// at least 7 h ago (past the window).
	h0 := time.Now().UTC().Truncate(time.Hour)
	hourA, hourB := h0.Add(-3*time.Hour), h0.Add(-8*time.Hour)
	reports := func(from time.Time, n int) []*quarryv1.Report {
		var out []*quarryv1.Report
		for i := range n {
			out = append(out, testsupport.PowerReport(from.Add(time.Duration(i)*10*time.Second), 150))
		}
		return out
	}
	// 10 minutes of hour B, then the first 20 minutes of hour A.
	first := append(reports(hourB, 61), reports(hourA, 121)...)
	// The same, and 20 more minutes of hour A.
	second := append(reports(hourB, 61), reports(hourA, 241)...)
	open := func(name string, rs []*quarryv1.Report) *link.Buffer {
		db, err := store.Open(filepath.Join(agentDir, name), link.Buckets...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		buf, err := link.OpenBuffer(db, 1000, billingQuietLog())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if _, err := buf.Append(proto.Clone(r).(*quarryv1.Report)); err != nil {
				t.Fatal(err)
			}
		}
		return buf
	}
	hourRow := func() *quarryv1.HourUsage {
		u, err := admin.Usage(ctx, &quarryv1.UsageRequest{Customer: "acme", SinceUnixNano: hourA.UnixNano(), UntilUnixNano: hourA.Add(time.Hour).UnixNano()})
		if err != nil {
			t.Fatal(err)
		}
		if len(u.Hours) != 1 {
			return nil
		}
		return u.Hours[0]
	}
	poll := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}

	// Hour A ended long ago, so the flusher may send it as soon as its
	// first reports arrive and correct it as the rest of the buffer does:
	// how many corrections depends on timing, their sum does not.
	sendBuffer(t, bc, id, open("agent1.db", first), uint64(len(first)))
	poll("hour A sent with 50 Wh", func() bool {
		h := hourRow()
		return h != nil && h.Closed && h.MilliWh == 50_000 && h.ValueWh == 50 && h.PendingMilliWh == 0
	})
	correctionsBefore := hourRow().Corrections

	sendBuffer(t, bc, id, open("agent2.db", second), uint64(len(second)))
	poll("hour A corrected to 100 Wh", func() bool {
		h := hourRow()
		return h != nil && h.MilliWh == 100_000 && h.ValueWh == 100 && h.PendingMilliWh == 0
	})
	h := hourRow()
	if h.LateMilliWh != 0 || h.Corrections <= correctionsBefore {
		t.Errorf("hour A %+v, want 100 Wh metered and sent by at least one more correction (had %d), nothing late", h, correctionsBefore)
	}
	u, err := admin.Usage(ctx, &quarryv1.UsageRequest{Customer: "acme", SinceUnixNano: hourB.UnixNano(), UntilUnixNano: h0.Add(2 * time.Hour).UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	// 25 Wh of hour B, billed in the hour it arrived; 100 Wh of hour A.
	if u.TotalMilliWh != 125_000 || u.LateMilliWh != 25_000 {
		t.Errorf("usage total %d mWh, late %d; want 125000 and 25000: %v", u.TotalMilliWh, u.LateMilliWh, u.Hours)
	}
	for _, h := range u.Hours {
		if time.Unix(0, h.HourUnixNano).Before(h0) && h.LateMilliWh != 0 {
			t.Errorf("late energy in a past hour: %+v", h)
		}
	}
	ob, err := admin.ListOutbox(ctx, &quarryv1.ListOutboxRequest{All: true})
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]int64{}
	for _, r := range ob.Records {
		if r.Kind == string(billing.KindMeterEvent) && strings.Contains(r.Identifier, hourA.Format("2006-01-02T15")) {
			events[r.Identifier] = r.ValueWh
			if r.IdempotencyKey != "quarry:"+r.Identifier {
				t.Errorf("record %s has key %s", r.Identifier, r.IdempotencyKey)
			}
		}
	}
	// One event for the hour and its corrections c1..cN, each under its
	// own key, adding up to what was measured: the replayed first 20
	// minutes are not billed twice.
	base := "energy:" + id.RigID() + ":" + hourA.Format("2006-01-02T15") + ":acme"
	var sum, corrected int64
	if _, ok := events[base]; !ok {
		t.Errorf("hour A meter events %v lack %s", events, base)
	}
	sum += events[base]
	for i := 1; i <= int(h.Corrections); i++ {
		v, ok := events[fmt.Sprintf("%s:c%d", base, i)]
		if !ok {
			t.Errorf("hour A meter events %v lack correction c%d", events, i)
		}
		sum += v
		corrected += v
	}
	if len(events) != 1+int(h.Corrections) || sum != 100 {
		t.Errorf("hour A meter events %v: %d records adding up to %d Wh, want %d adding up to 100 Wh", events, len(events), sum, 1+h.Corrections)
	}

	resp, err := http.Get("http://" + bc.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The counter is exact in mWh while each event is rounded to a Wh.
	var correctedMilli int64
	for l := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, "quarry_billing_corrected_energy_milliwatt_hours_total "); ok {
			if _, err := fmt.Sscanf(v, "%d", &correctedMilli); err != nil {
				t.Errorf("/metrics corrected energy %q: %v", l, err)
			}
		}
	}
	if d := correctedMilli - corrected*1000; d < -500*int64(1+h.Corrections) || d > 500*int64(1+h.Corrections) {
		t.Errorf("/metrics counts %d mWh corrected, the corrections carry %d Wh", correctedMilli, corrected)
	}
	for _, want := range []string{"quarry_billing_late_energy_milliwatt_hours_total 25000",
		fmt.Sprintf("quarry_billing_corrections_total %d", h.Corrections)} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, grepLines(string(body), "quarry_billing"))
		}
	}
}
