// Package billing bills hosting customers for the rigs they rent: it keeps
// customers and plans in bbolt, meters each rig's energy from telemetry into
// exact integer hourly totals, and mirrors customers, subscriptions and
// energy usage to Stripe through a durable outbox so that a crash or a
// network fault can delay a charge but never lose or duplicate it.
//
// Stripe's webhooks flow back through Handler, which drives each customer's
// status (active, past_due, canceled); PolicyAction turns that status into
// what the controller should do with the customer's rigs.
package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/quarryfleet/quarry/pkg/store"
)

// Bucket names; every bucket this package owns starts with "billing_".
var (
	bucketCustomers   = []byte("billing_customers")
	bucketPlans       = []byte("billing_plans")
	bucketRigs        = []byte("billing_rigs")
	bucketStripeIndex = []byte("billing_stripe_index")
	bucketOutbox      = []byte("billing_outbox")
	bucketOutboxKeys  = []byte("billing_outbox_keys")
	bucketEnergy      = []byte("billing_energy")
	bucketMeterState  = []byte("billing_meter_state")
	bucketGaps        = []byte("billing_gaps")
	bucketWebhook     = []byte("billing_webhook_events")
	bucketMeta        = []byte("billing_meta")
)

func allBuckets() [][]byte {
	return [][]byte{bucketCustomers, bucketPlans, bucketRigs, bucketStripeIndex, bucketOutbox,
		bucketOutboxKeys, bucketEnergy, bucketMeterState, bucketGaps, bucketWebhook, bucketMeta}
}

// Lateness window bounds. Stripe accepts meter events timestamped up to 35
// days in the past; a correction carries its hour's start, which is an hour
// before the window starts counting, and may wait in the outbox for
// retries, so the window stops a day short of Stripe's limit.
const (
	DefaultLateWindow = 6 * time.Hour
	MaxLateWindow     = 34 * 24 * time.Hour
)

// Config configures a Service. Only DB is required.
type Config struct {
	DB *store.DB
	// Stripe is the client the relay sends through. Build it with
	// NewStripeClient so that stripe-go does not retry on its own. A nil
	// client keeps everything in the outbox (useful before keys are set up).
	Stripe *stripe.Client
	// EventName is the Billing Meter event name for energy (default "quarry_energy_wh").
	EventName string
	// MaxGap is the longest interval between two power samples that is still
	// integrated; longer intervals are recorded as gaps (default 2 minutes).
	MaxGap time.Duration
	// LateMargin: a rig that fell silent has its hour sent MaxGap plus
	// LateMargin after the hour ends, unless it reported past the end
	// before (default 1 minute). Energy arriving later still is billed by
	// a correction (see LateWindow).
	LateMargin time.Duration
	// LateWindow is how long after an hour ends energy measured in it is
	// still billed to it, by a correction event if the hour was already
	// sent (default 6h, at most MaxLateWindow). Energy arriving later is
	// billed in the hour it arrives and counted as late.
	LateWindow time.Duration
	// RetryBase is the first retry delay; attempt n waits RetryBase*2^(n-1) (default 1s).
	RetryBase time.Duration
	// MaxAttempts before a record moves to the dead-letter list (default 5).
	MaxAttempts int
	// IdempotencyWindow is how long Stripe keeps idempotency keys; records
	// first tried longer ago are reconciled by reading Stripe (default 24h).
	IdempotencyWindow time.Duration
	// WebhookSecret is the endpoint signing secret (whsec_...).
	WebhookSecret string
	// WebhookTolerance bounds the age of a webhook signature (default 300s).
	WebhookTolerance time.Duration
	// AcceptAPIVersionMismatch accepts webhook events rendered for another
	// API release train. Off by default: such events are rejected with 400
	// and a message telling the operator to pin the endpoint's API version,
	// because objects from another train may decode wrongly and a wrong
	// status would stop a paying customer's rigs.
	AcceptAPIVersionMismatch bool
	// PastDue decides what happens to a past-due customer's rigs.
	PastDue PastDuePolicy
	// Audit receives every billing event; nil discards them.
	Audit Auditor
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now; tests replace it.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.EventName == "" {
		c.EventName = "quarry_energy_wh"
	}
	if c.MaxGap == 0 {
		c.MaxGap = 2 * time.Minute
	}
	if c.LateMargin == 0 {
		c.LateMargin = time.Minute
	}
	if c.LateWindow == 0 {
		c.LateWindow = DefaultLateWindow
	}
	if c.RetryBase == 0 {
		c.RetryBase = time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.IdempotencyWindow == 0 {
		c.IdempotencyWindow = 24 * time.Hour
	}
	if c.WebhookTolerance == 0 {
		c.WebhookTolerance = 300 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate names the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.DB == nil:
		return errors.New("billing: Config.DB is nil")
	case c.MaxGap < time.Second || c.MaxGap > 24*time.Hour:
		return fmt.Errorf("billing: Config.MaxGap %v outside 1s..24h", c.MaxGap)
	case c.LateMargin < 0:
		return fmt.Errorf("billing: Config.LateMargin %v is negative", c.LateMargin)
	case c.LateWindow < 0 || c.LateWindow > MaxLateWindow:
		return fmt.Errorf("billing: Config.LateWindow %v outside 0..%v", c.LateWindow, MaxLateWindow)
	case c.RetryBase < 0:
		return fmt.Errorf("billing: Config.RetryBase %v is negative", c.RetryBase)
	case c.MaxAttempts < 1:
		return fmt.Errorf("billing: Config.MaxAttempts %d < 1", c.MaxAttempts)
	case c.PastDue.StopMiningAfter < 0:
		return fmt.Errorf("billing: Config.PastDue.StopMiningAfter %v is negative", c.PastDue.StopMiningAfter)
	}
	return nil
}

// Service is the billing subsystem. It is safe for concurrent use.
type Service struct {
	cfg   Config
	db    *store.DB
	log   *slog.Logger
	now   func() time.Time
	meter *Meter
	wake  chan struct{}
}

// New opens (creating if needed) the billing buckets in cfg.DB and loads the
// meter state persisted by a previous run.
func New(cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, db: cfg.DB, log: cfg.Logger, now: cfg.Now, wake: make(chan struct{}, 1)}
	err := s.db.Update(func(tx *store.Tx) error {
		for _, b := range allBuckets() {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("billing: %w", err)
	}
	m, err := loadMeter(s)
	if err != nil {
		return nil, fmt.Errorf("billing: load meter: %w", err)
	}
	s.meter = m
	return s, nil
}

// Meter returns the energy meter fed from telemetry.
func (s *Service) Meter() *Meter { return s.meter }

// NewStripeClient builds a stripe-go client whose own retries are off: the
// outbox retries 409, 429, 5xx and network errors itself with the same key,
// which stripe-go alone does not do for JSON error responses.
func NewStripeClient(key, baseURL string, httpClient *http.Client) *stripe.Client {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 30 * time.Second}
	}
	bc := &stripe.BackendConfig{
		HTTPClient:        httpClient,
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	}
	if baseURL != "" {
		bc.URL = stripe.String(baseURL)
	}
	return stripe.NewClient(key, stripe.WithBackends(stripe.NewBackendsWithConfig(bc)))
}

func (s *Service) notifyRelay() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) audit(ctx context.Context, e AuditEvent) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	if s.cfg.Audit != nil {
		s.cfg.Audit.BillingEvent(ctx, e)
	}
}

// AuditEvent is one billing fact for the controller's audit log.
type AuditEvent struct {
	Time     time.Time
	Kind     string // e.g. "customer.created", "rig.assigned", "outbox.dead", "webhook.invoice.paid"
	Customer string
	Rig      string
	Detail   string
}

// Auditor receives billing events; the controller's audit log implements it.
type Auditor interface {
	BillingEvent(ctx context.Context, e AuditEvent)
}

// AuditFunc adapts a function to Auditor.
type AuditFunc func(ctx context.Context, e AuditEvent)

// BillingEvent calls f.
func (f AuditFunc) BillingEvent(ctx context.Context, e AuditEvent) { f(ctx, e) }
