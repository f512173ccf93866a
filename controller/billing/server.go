package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/redact"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// WebhookPath is where Stripe delivers webhook events.
const WebhookPath = "/webhooks/stripe"

// DisabledMessage is what every BillingService method answers while
// billing is off.
const DisabledMessage = "billing is not enabled (set billing.enabled and billing.stripe_key)"

// Settings is the controller's billing section. The Stripe key and the
// webhook secret are best given as QUARRY_BILLING_STRIPE_KEY and
// QUARRY_BILLING_WEBHOOK_SECRET so that they stay out of files and flags.
type Settings struct {
	Enabled                  bool          `yaml:"enabled" flag:"billing-enabled" help:"bill hosting customers through Stripe (needs billing.stripe_key)"`
	StripeKey                string        `yaml:"stripe_key" help:"Stripe secret key (sk_... or rk_...)"`
	StripeURL                string        `yaml:"stripe_url" flag:"billing-stripe-url" help:"Stripe API base URL; empty is Stripe itself (set it for stripe-mock)"`
	WebhookSecret            string        `yaml:"webhook_secret" help:"signing secret (whsec_...) of the webhook endpoint POST /webhooks/stripe"`
	EventName                string        `yaml:"event_name" help:"Stripe billing meter event name for energy in Wh"`
	FlushInterval            time.Duration `yaml:"flush_interval" help:"how often metered energy is committed and closed hours queued for Stripe"`
	MaxGap                   time.Duration `yaml:"max_gap" help:"longest silence between power samples that is still integrated; longer is recorded as a gap"`
	LateWindow               time.Duration `yaml:"late_window" help:"how long after an hour ends late energy is still billed to it, by a correction event; later it is billed in the hour it arrives (at most 816h)"`
	RetryBase                time.Duration `yaml:"retry_base" help:"first delay before a failed Stripe call is retried; doubles per attempt"`
	MaxAttempts              int           `yaml:"max_attempts" help:"attempts before a Stripe call moves to the dead-letter list"`
	AcceptAPIVersionMismatch bool          `yaml:"accept_api_version_mismatch" help:"accept webhook events rendered for another Stripe API version"`
	PastDue                  PastDueConfig `yaml:"past_due"`

	// Now is the billing clock; nil is time.Now. Tests set it to assign
	// rigs in the past, so that replayed old reports belong to a customer.
	Now func() time.Time `yaml:"-"`
}

// PastDueConfig is what happens to the rigs of a customer who stops paying.
type PastDueConfig struct {
	StopSwitching   bool          `yaml:"stop_switching" help:"freeze profit switching for a past-due customer's rigs"`
	StopMiningAfter time.Duration `yaml:"stop_mining_after" help:"stop a past-due customer's rigs after this long; 0 never stops them"`
}

// DefaultSettings is billing off, with the billing package's defaults.
func DefaultSettings() Settings {
	return Settings{
		EventName:     "quarry_energy_wh",
		FlushInterval: 5 * time.Second,
		MaxGap:        2 * time.Minute,
		LateWindow:    DefaultLateWindow,
		RetryBase:     time.Second,
		MaxAttempts:   5,
	}
}

// Validate names every bad billing setting.
func (b Settings) Validate() error {
	var errs []error
	if b.Enabled && b.StripeKey == "" {
		errs = append(errs, errors.New("billing.stripe_key: required when billing.enabled is set (env QUARRY_BILLING_STRIPE_KEY)"))
	}
	if strings.HasPrefix(b.StripeKey, "pk_") {
		errs = append(errs, errors.New("billing.stripe_key: this is a publishable key; the controller needs a secret (sk_) or restricted (rk_) key"))
	}
	if b.StripeURL != "" {
		if u, err := url.Parse(b.StripeURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("billing.stripe_url: %q is not an http(s) URL", b.StripeURL))
		}
	}
	if b.EventName == "" {
		errs = append(errs, errors.New("billing.event_name: must not be empty"))
	}
	if b.FlushInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("billing.flush_interval: %s is below the 100ms minimum", b.FlushInterval))
	}
	if b.MaxGap < time.Second || b.MaxGap > 24*time.Hour {
		errs = append(errs, fmt.Errorf("billing.max_gap: %s is outside 1s..24h", b.MaxGap))
	}
	if b.LateWindow <= 0 || b.LateWindow > MaxLateWindow {
		errs = append(errs, fmt.Errorf("billing.late_window: %s must be positive and at most %s (Stripe takes meter events up to 35 days old)", b.LateWindow, MaxLateWindow))
	}
	if b.RetryBase < 0 {
		errs = append(errs, fmt.Errorf("billing.retry_base: %s is negative", b.RetryBase))
	}
	if b.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("billing.max_attempts: must be at least 1, got %d", b.MaxAttempts))
	}
	if b.PastDue.StopMiningAfter < 0 {
		errs = append(errs, fmt.Errorf("billing.past_due.stop_mining_after: %s is negative", b.PastDue.StopMiningAfter))
	}
	return errors.Join(errs...)
}

// BillingRoles is the least role each BillingService method needs. Status
// and usage are figures a viewer may see (without customers' emails);
// customers, plans, assignments and the outbox are admin only.
var BillingRoles = map[string]string{
	quarryv1.BillingService_BillingStatus_FullMethodName:  auth.RoleViewer,
	quarryv1.BillingService_Usage_FullMethodName:          auth.RoleViewer,
	quarryv1.BillingService_CreatePlan_FullMethodName:     auth.RoleAdmin,
	quarryv1.BillingService_CreateCustomer_FullMethodName: auth.RoleAdmin,
	quarryv1.BillingService_ListCustomers_FullMethodName:  auth.RoleAdmin,
	quarryv1.BillingService_GetCustomer_FullMethodName:    auth.RoleAdmin,
	quarryv1.BillingService_AssignRigs_FullMethodName:     auth.RoleAdmin,
	quarryv1.BillingService_ListOutbox_FullMethodName:     auth.RoleAdmin,
	quarryv1.BillingService_ListDeadLetter_FullMethodName: auth.RoleAdmin,
	quarryv1.BillingService_RetryOutbox_FullMethodName:    auth.RoleAdmin,
	quarryv1.BillingService_ListPlans_FullMethodName:      auth.RoleAdmin,
}

// BillingAudit is the audit action of each BillingService method: every
// call is audited, reads included, since they show customers' money.
var BillingAudit = map[string]string{
	quarryv1.BillingService_BillingStatus_FullMethodName:  "billing.status",
	quarryv1.BillingService_Usage_FullMethodName:          "billing.usage",
	quarryv1.BillingService_CreatePlan_FullMethodName:     "billing.create-plan",
	quarryv1.BillingService_CreateCustomer_FullMethodName: "billing.create-customer",
	quarryv1.BillingService_ListCustomers_FullMethodName:  "billing.list-customers",
	quarryv1.BillingService_GetCustomer_FullMethodName:    "billing.get-customer",
	quarryv1.BillingService_AssignRigs_FullMethodName:     "billing.assign-rigs",
	quarryv1.BillingService_ListOutbox_FullMethodName:     "billing.list-outbox",
	quarryv1.BillingService_ListDeadLetter_FullMethodName: "billing.list-dead-letter",
	quarryv1.BillingService_RetryOutbox_FullMethodName:    "billing.retry",
	quarryv1.BillingService_ListPlans_FullMethodName:      "billing.list-plans",
}

// Runtime is billing as the controller runs it: the service (nil while
// billing is off), BillingService over it, and the relay and flusher
// goroutines between Start and Stop.
type Runtime struct {
	srv    *BillingServer
	svc    *Service
	hook   http.Handler
	flush  time.Duration
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// OpenRuntime opens, when billing is enabled, the billing service on the
// controller's database and meters the reports the fleet commits; while
// billing is off, BillingService still answers, with a clear refusal.
func OpenRuntime(bc Settings, db *store.DB, f *fleet.Fleet, log *slog.Logger) (*Runtime, error) {
	r := &Runtime{srv: &BillingServer{fleet: f}, log: log}
	if !bc.Enabled {
		return r, nil
	}
	svc, err := New(Config{
		DB:                       db,
		Stripe:                   NewStripeClient(bc.StripeKey, bc.StripeURL, nil),
		EventName:                bc.EventName,
		MaxGap:                   bc.MaxGap,
		LateWindow:               bc.LateWindow,
		RetryBase:                bc.RetryBase,
		MaxAttempts:              bc.MaxAttempts,
		WebhookSecret:            bc.WebhookSecret,
		AcceptAPIVersionMismatch: bc.AcceptAPIVersionMismatch,
		PastDue:                  PastDuePolicy{StopSwitching: bc.PastDue.StopSwitching, StopMiningAfter: bc.PastDue.StopMiningAfter},
		Audit:                    auditor(f),
		Logger:                   log.With("component", "billing"),
		Now:                      bc.Now,
	})
	if err != nil {
		return nil, err
	}
	r.srv.svc, r.svc, r.flush = svc, svc, bc.FlushInterval
	f.AddObserver(energyObserver{meter: svc.Meter(), log: log})
	r.hook = svc.Handler()
	if bc.WebhookSecret == "" {
		log.Warn("billing.webhook_secret is not set: Stripe webhooks are refused and customer status will not follow payments")
		r.hook = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "billing.webhook_secret is not set on the controller; webhooks are refused", http.StatusServiceUnavailable)
		})
	}
	log.Info("billing enabled", "stripe_url", stripeURLForLog(bc.StripeURL), "event_name", bc.EventName)
	return r, nil
}

// Server is BillingService, to register on the controller's gRPC server.
func (r *Runtime) Server() *BillingServer { return r.srv }

// Service is the billing service; nil while billing is off.
func (r *Runtime) Service() *Service { return r.svc }

// SwitchHold is the past-due policy as the profit switcher applies it:
// whether to hold a rig's switching, whether to stop it mining, and why.
// While billing is off, or the lookup fails, rigs switch as usual.
func (r *Runtime) SwitchHold(rigID string, now time.Time) (hold, stopMining bool, reason string) {
	if r.svc == nil {
		return false, false, ""
	}
	a, customer, err := r.svc.RigAction(rigID, now)
	if err != nil {
		r.log.Warn("billing policy lookup failed; switching as usual", "rig", rigID, "err", err)
		return false, false, ""
	}
	switch a {
	case ActionStopMining:
		return true, true, "customer " + customer + " is past due beyond the grace period"
	case ActionStopSwitching:
		return true, false, "customer " + customer + " is past due"
	}
	return false, false, ""
}

// Mount puts the Stripe webhook on mux; nothing while billing is off.
func (r *Runtime) Mount(mux *http.ServeMux) {
	if r.hook != nil {
		mux.Handle("POST "+WebhookPath, r.hook)
	}
}

func stripeURLForLog(u string) string {
	if u == "" {
		return "https://api.stripe.com"
	}
	return u
}

// Start runs the outbox relay and the meter flusher.
func (r *Runtime) Start() {
	if r.svc == nil || r.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		if err := r.svc.RunRelay(ctx); err != nil {
			r.log.Error("billing relay stopped", "err", err)
		}
	}()
	go func() {
		defer r.wg.Done()
		r.svc.Meter().RunFlusher(ctx, r.flush)
	}()
}

// Stop stops the relay and the flusher, which flushes the meter one last
// time. Call it after the fleet has committed its last reports and before
// the database closes.
func (r *Runtime) Stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.wg.Wait()
	r.cancel = nil
}

// energyObserver feeds each committed report's power draw to the meter.
type energyObserver struct {
	meter *Meter
	log   *slog.Logger
}

// ObserveReport meters the sum of the GPUs' power. A report without any
// power reading is skipped rather than metered as zero watts.
func (o energyObserver) ObserveReport(rigID string, r *quarryv1.Report) {
	w, ok := r.MeasuredPowerW()
	if !ok || r.GetTimeUnixNano() == 0 {
		return
	}
	if err := o.meter.Observe(rigID, time.Unix(0, r.GetTimeUnixNano()), w); err != nil {
		o.log.Warn("billing: power sample not metered", "rig", rigID, "err", err)
	}
}

// auditor writes billing's own events (deliveries, webhooks, closed
// hours) into the controller's audit log, attributed to the caller when
// they happen inside an API call.
func auditor(f *fleet.Fleet) AuditFunc {
	return func(ctx context.Context, e AuditEvent) {
		who, role := "billing", auth.RoleSystem
		if c := auth.CallerFrom(ctx); c.Name != "" {
			who, role = c.Name, c.Role
		}
		target := e.Customer
		if e.Rig != "" {
			target = strings.TrimSpace(target + " rig " + e.Rig)
		}
		result := "ok"
		if e.Kind == "outbox.dead" {
			result = "failed"
		}
		_ = f.Audit(&quarryv1.AuditEntry{Who: who, Role: role, Action: "billing " + e.Kind, Target: target, Result: result, Detail: e.Detail})
	}
}

// BillingServer implements BillingService; svc is nil while billing is off.
type BillingServer struct {
	quarryv1.UnimplementedBillingServiceServer
	fleet *fleet.Fleet
	svc   *Service
}

func (s *BillingServer) enabled() error {
	if s.svc == nil {
		return status.Error(codes.FailedPrecondition, DisabledMessage)
	}
	return nil
}

func billingErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, fleet.ErrUnknownRig):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

func (s *BillingServer) CreatePlan(ctx context.Context, req *quarryv1.CreatePlanRequest) (resp *quarryv1.CreatePlanResponse, err error) {
	p := req.GetPlan()
	auth.Note(ctx).Target = p.GetId()
	if err := s.enabled(); err != nil {
		return nil, err
	}
	if p == nil {
		return nil, status.Error(codes.InvalidArgument, "plan is required")
	}
	bp := planFromPB(p)
	if bp.Name == "" {
		bp.Name = bp.ID
	}
	if err := s.svc.PutPlan(ctx, bp); err != nil {
		return nil, billingErr(err)
	}
	return &quarryv1.CreatePlanResponse{Plan: planPB(bp)}, nil
}

// ListPlans lists every plan by id.
func (s *BillingServer) ListPlans(_ context.Context, _ *quarryv1.ListPlansRequest) (*quarryv1.ListPlansResponse, error) {
	if err := s.enabled(); err != nil {
		return nil, err
	}
	ps, err := s.svc.ListPlans()
	if err != nil {
		return nil, billingErr(err)
	}
	resp := &quarryv1.ListPlansResponse{}
	for _, p := range ps {
		resp.Plans = append(resp.Plans, planPB(p))
	}
	return resp, nil
}

func (s *BillingServer) CreateCustomer(ctx context.Context, req *quarryv1.CreateCustomerRequest) (resp *quarryv1.CreateCustomerResponse, err error) {
	id := req.GetId()
	if id == "" {
		id = CustomerSlug(req.GetName())
	}
	a := auth.Note(ctx)
	a.Target, a.Detail = id, "plan "+req.GetPlan()
	if err := s.enabled(); err != nil {
		return nil, err
	}
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "a customer name (or id) is required")
	}
	c, err := s.svc.CreateCustomer(ctx, Customer{ID: id, Name: req.GetName(), Email: req.GetEmail(), Plan: req.GetPlan()})
	if err != nil {
		return nil, billingErr(err)
	}
	return &quarryv1.CreateCustomerResponse{Customer: customerPB(c, true)}, nil
}

func (s *BillingServer) ListCustomers(ctx context.Context, _ *quarryv1.ListCustomersRequest) (resp *quarryv1.ListCustomersResponse, err error) {
	if err := s.enabled(); err != nil {
		return nil, err
	}
	cs, err := s.svc.ListCustomers()
	if err != nil {
		return nil, billingErr(err)
	}
	resp = &quarryv1.ListCustomersResponse{}
	for _, c := range cs {
		resp.Customers = append(resp.Customers, customerPB(c, true))
	}
	return resp, nil
}

func (s *BillingServer) GetCustomer(ctx context.Context, req *quarryv1.GetCustomerRequest) (resp *quarryv1.GetCustomerResponse, err error) {
	auth.Note(ctx).Target = req.GetId()
	if err := s.enabled(); err != nil {
		return nil, err
	}
	c, err := s.svc.GetCustomer(req.GetId())
	if err != nil {
		return nil, billingErr(err)
	}
	return &quarryv1.GetCustomerResponse{Customer: customerPB(c, true)}, nil
}

func (s *BillingServer) AssignRigs(ctx context.Context, req *quarryv1.AssignRigsRequest) (resp *quarryv1.AssignRigsResponse, err error) {
	var ids []string
	a := auth.Note(ctx)
	a.Target = req.GetCustomer()
	defer func() { a.Detail = "rigs " + strings.Join(ids, ",") }()
	if err := s.enabled(); err != nil {
		return nil, err
	}
	if len(req.GetRigs()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "at least one rig is required")
	}
	for _, r := range req.GetRigs() {
		id, err := s.fleet.Resolve(r)
		if err != nil {
			return nil, billingErr(err)
		}
		ids = append(ids, id)
	}
	if err := s.svc.AssignRigs(ctx, req.GetCustomer(), ids...); err != nil {
		return nil, billingErr(err)
	}
	resp = &quarryv1.AssignRigsResponse{RigIds: ids}
	if req.GetCustomer() != "" {
		c, err := s.svc.GetCustomer(req.GetCustomer())
		if err != nil {
			return nil, billingErr(err)
		}
		resp.Customer = customerPB(c, true)
	}
	return resp, nil
}

func (s *BillingServer) BillingStatus(ctx context.Context, req *quarryv1.BillingStatusRequest) (resp *quarryv1.BillingStatusResponse, err error) {
	auth.Note(ctx).Target = req.GetCustomer()
	if err := s.enabled(); err != nil {
		return nil, err
	}
	ids := []string{req.GetCustomer()}
	if req.GetCustomer() == "" {
		cs, err := s.svc.ListCustomers()
		if err != nil {
			return nil, billingErr(err)
		}
		ids = ids[:0]
		for _, c := range cs {
			ids = append(ids, c.ID)
		}
	}
	withEmail := fleet.RoleRank(auth.CallerFrom(ctx).Role) >= fleet.RoleRank(auth.RoleAdmin)
	now := time.Now()
	ms := s.svc.Meter().Stats()
	resp = &quarryv1.BillingStatusResponse{Meter: &quarryv1.MeterStats{Backwards: ms.Backwards, LateMilliWh: ms.LateMilliWh, Gaps: ms.Gaps,
		CorrectedMilliWh: ms.CorrectedMilliWh, Corrections: ms.Corrections}}
	for _, id := range ids {
		st, err := s.svc.Status(id, now)
		if err != nil {
			return nil, billingErr(err)
		}
		resp.Customers = append(resp.Customers, &quarryv1.CustomerBillingStatus{
			Customer:           customerPB(st.Customer, withEmail),
			Plan:               planPB(st.Plan),
			ActiveRigs:         int32(st.ActiveRigs),
			Action:             st.Action,
			MonthToDateMilliWh: st.MonthToDateMilliWh,
			EstimateCents:      st.EstimateCents,
			PendingRecords:     int32(st.PendingRecords),
			DeadLetters:        int32(st.DeadLetters),
			GapsThisMonth:      int32(st.GapsThisMonth),
		})
	}
	return resp, nil
}

func (s *BillingServer) Usage(ctx context.Context, req *quarryv1.UsageRequest) (resp *quarryv1.UsageResponse, err error) {
	target := req.GetCustomer()
	if req.GetRig() != "" {
		target = strings.TrimSpace(target + " rig " + req.GetRig())
	}
	auth.Note(ctx).Target = target
	if err := s.enabled(); err != nil {
		return nil, err
	}
	rig := req.GetRig()
	if rig != "" {
		// A rig removed from the fleet keeps its billed energy.
		if id, err := s.fleet.Resolve(rig); err == nil {
			rig = id
		}
	}
	now := time.Now().UTC()
	from := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	if req.GetSinceUnixNano() != 0 {
		from = time.Unix(0, req.GetSinceUnixNano())
	}
	to := now.Truncate(time.Hour).Add(time.Hour)
	if req.GetUntilUnixNano() != 0 {
		to = time.Unix(0, req.GetUntilUnixNano())
	}
	u, err := s.svc.Usage(UsageQuery{Customer: req.GetCustomer(), Rig: rig, From: from, To: to})
	if err != nil {
		return nil, billingErr(err)
	}
	resp = &quarryv1.UsageResponse{TotalMilliWh: u.TotalMilliWh, LateMilliWh: u.LateMilliWh}
	for _, h := range u.Hours {
		resp.Hours = append(resp.Hours, &quarryv1.HourUsage{Rig: h.Rig, Customer: h.Customer, HourUnixNano: h.Hour.UnixNano(),
			MilliWh: h.MilliWh, Closed: h.Closed, ValueWh: h.ValueWh, LateMilliWh: h.LateMilliWh,
			Corrections: int32(h.Corrections), PendingMilliWh: h.PendingMilliWh})
	}
	for _, g := range u.Gaps {
		resp.Gaps = append(resp.Gaps, &quarryv1.EnergyGap{Rig: g.Rig, StartUnixNano: g.Start.UnixNano(), EndUnixNano: g.End.UnixNano()})
	}
	return resp, nil
}

func (s *BillingServer) ListOutbox(ctx context.Context, req *quarryv1.ListOutboxRequest) (resp *quarryv1.ListOutboxResponse, err error) {
	if err := s.enabled(); err != nil {
		return nil, err
	}
	list := s.svc.Outbox
	if req.GetAll() {
		list = s.svc.AllRecords
	}
	recs, err := list()
	if err != nil {
		return nil, billingErr(err)
	}
	return &quarryv1.ListOutboxResponse{Records: recordsPB(recs)}, nil
}

func (s *BillingServer) ListDeadLetter(ctx context.Context, _ *quarryv1.ListDeadLetterRequest) (resp *quarryv1.ListDeadLetterResponse, err error) {
	if err := s.enabled(); err != nil {
		return nil, err
	}
	recs, err := s.svc.DeadLetter()
	if err != nil {
		return nil, billingErr(err)
	}
	return &quarryv1.ListDeadLetterResponse{Records: recordsPB(recs)}, nil
}

func (s *BillingServer) RetryOutbox(ctx context.Context, req *quarryv1.RetryOutboxRequest) (resp *quarryv1.RetryOutboxResponse, err error) {
	auth.Note(ctx).Target = fmt.Sprintf("record %d", req.GetId())
	if err := s.enabled(); err != nil {
		return nil, err
	}
	if req.GetId() == 0 {
		return nil, status.Error(codes.InvalidArgument, "a record id is required")
	}
	if err := s.svc.Retry(ctx, req.GetId()); err != nil {
		return nil, billingErr(err)
	}
	return &quarryv1.RetryOutboxResponse{}, nil
}

// CustomerSlug derives a customer id from a name: lower-case letters and
// digits, other runs of characters turned into one dash, at most 64 bytes.
func CustomerSlug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		switch {
		case (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		default:
			dash = true
		}
		if b.Len() >= 64 {
			break
		}
	}
	s := b.String()
	if len(s) > 64 {
		s = strings.TrimRight(s[:64], "-")
	}
	return s
}

func planFromPB(p *quarryv1.BillingPlan) Plan {
	return Plan{ID: p.GetId(), Name: p.GetName(), MonthlyFeePerRigCents: p.GetMonthlyFeePerRigCents(),
		EnergyMilliCentsPerKWh: p.GetEnergyMillicentsPerKwh(), StripeRigPriceID: p.GetStripeRigPriceId(),
		StripeEnergyPriceID: p.GetStripeEnergyPriceId()}
}

func planPB(p Plan) *quarryv1.BillingPlan {
	return &quarryv1.BillingPlan{Id: p.ID, Name: p.Name, MonthlyFeePerRigCents: p.MonthlyFeePerRigCents,
		EnergyMillicentsPerKwh: p.EnergyMilliCentsPerKWh, StripeRigPriceId: p.StripeRigPriceID, StripeEnergyPriceId: p.StripeEnergyPriceID}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func customerPB(c Customer, withEmail bool) *quarryv1.BillingCustomer {
	out := &quarryv1.BillingCustomer{Id: c.ID, Name: c.Name, Plan: c.Plan, Rigs: c.Rigs, Status: string(c.Status),
		StripeCustomerId: c.StripeCustomerID, StripeSubscriptionId: c.StripeSubscriptionID,
		StripeSubscriptionItemId: c.StripeSubscriptionItemID, CreatedUnixNano: unixNano(c.CreatedAt),
		PastDueSinceUnixNano: unixNano(c.PastDueSince)}
	if withEmail {
		out.Email = c.Email
	}
	return out
}

func recordsPB(recs []Record) []*quarryv1.OutboxRecord {
	out := make([]*quarryv1.OutboxRecord, 0, len(recs))
	for _, r := range recs {
		out = append(out, &quarryv1.OutboxRecord{Id: r.ID, Kind: string(r.Kind), State: string(r.State), Customer: r.Customer,
			Rig: r.Rig, IdempotencyKey: r.IdempotencyKey(), Quantity: r.Quantity, ValueWh: r.ValueWh, Identifier: r.Identifier,
			Attempts: int32(r.Attempts), LastError: redact.Text(r.LastError), CreatedUnixNano: unixNano(r.CreatedAt),
			NextAttemptUnixNano: unixNano(r.NextAttempt), DoneUnixNano: unixNano(r.DoneAt), Result: r.Result})
	}
	return out
}
