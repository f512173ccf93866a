// Package web is the controller's dashboard: a single page of vanilla
// JavaScript and CSS embedded in the binary, the JSON endpoints it reads,
// a Server-Sent Events stream for live updates, and the few operator
// actions (restart miner, ping, pause, resume).
//
// Sign-in uses the admin API's bearer tokens and roles: the token is
// checked once and exchanged for an HttpOnly, SameSite=Strict session
// cookie. Viewers read; operators and admins may also act. Every action
// queues a fleet command and is written to the audit log.
//
// Profit, switch history and billing come from other packages through the
// optional provider interfaces; the page shows those sections only when a
// provider is set and has data.
package web

import (
	"context"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/quarryfleet/quarry/controller/figures"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/notify"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

//go:embed assets
var assetFS embed.FS

// Fleet is what the dashboard needs from the fleet; *fleet.Fleet fits.
type Fleet interface {
	EachRig(fn func(r *quarryv1.Rig))
	Rig(id string) (*quarryv1.Rig, error)
	Resolve(idOrName string) (string, error)
	History(rigID string, limit int) ([]*quarryv1.Report, error)
	QueueCommand(rigID string, kind quarryv1.CommandKind, payload []byte, ttl time.Duration) (*quarryv1.CommandRecord, error)
	Command(id string) (*quarryv1.CommandRecord, error)
	Audit(e *quarryv1.AuditEntry) error
	LookupAdminToken(tok string) (name, role string, ok bool)
	CheckAdminTokenKey(key string) (name, role string, err error)
	Now() time.Time
}

var _ Fleet = (*fleet.Fleet)(nil)

// Profit is a rig's current economics.
type Profit struct {
	USDPerDay          float64 `json:"usd_per_day"`
	RevenueUSDPerDay   float64 `json:"revenue_usd_per_day,omitempty"`
	PowerCostUSDPerDay float64 `json:"power_cost_usd_per_day,omitempty"`
	Coin               string  `json:"coin,omitempty"`
	Algorithm          string  `json:"algorithm,omitempty"`
}

// ProfitProvider gives a rig's profit estimate, false when it has none.
type ProfitProvider interface {
	RigProfit(rigID string) (Profit, bool)
}

// MarketModer is implemented by profit providers that can say where their
// market data comes from ("live", "offline: embedded snapshot"), so the
// dashboard shows figures from a fixed snapshot as such.
type MarketModer interface {
	MarketMode() string
}

// Switch is one coin or algorithm switch the controller decided.
type Switch struct {
	Time   time.Time `json:"time"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
}

// SwitchProvider lists a rig's most recent switches, newest first.
type SwitchProvider interface {
	RigSwitches(rigID string, limit int) []Switch
}

// BillingLine is one customer's billing status.
type BillingLine struct {
	Customer       string  `json:"customer"`
	Plan           string  `json:"plan"`
	ActiveRigs     int     `json:"active_rigs"`
	Action         string  `json:"action,omitempty"`
	MonthToDateKWh float64 `json:"month_to_date_kwh"`
	EstimateUSD    float64 `json:"estimate_usd"`
	PendingRecords int     `json:"pending_records"`
	DeadLetters    int     `json:"dead_letters"`
}

// FigureProvider gives what the controller has learned of a rig on each
// algorithm (benchmarks refined by live reports); *figures.Learner fits.
type FigureProvider interface {
	Figures(rigID string) map[string]figures.Figure
}

// AlertProvider lists the firing alerts with when they fired and where
// their messages went; the notifier fits through an adapter.
type AlertProvider interface {
	FiringAlerts() []Alert
}

// BillingProvider reports billing status for every customer.
type BillingProvider interface {
	BillingStatus(ctx context.Context) ([]BillingLine, error)
}

// Options tune the dashboard.
type Options struct {
	Fleet Fleet
	// RPC, when set, lets pages call the admin services as the signed-in
	// user (POST /api/rpc/{service}/{method}).
	RPC RPC
	Log *slog.Logger
	// SessionTTL is how long a sign-in lasts (default 12h).
	SessionTTL time.Duration
	// SecureCookie marks the session cookie Secure; set it when the
	// dashboard is reached over HTTPS (through a proxy).
	SecureCookie bool
	// UpdateInterval is the shortest time between two live updates sent
	// to one browser (default 1s).
	UpdateInterval time.Duration
	// PollInterval is how often the stream checks for changes no report
	// announces, such as a rig going offline (default 2s).
	PollInterval time.Duration
	// HistoryPoints is how many points a chart shows (default 360).
	HistoryPoints int
	// Rules decide what the dashboard shows as alerts while no
	// AlertProvider is set (default: notify's defaults, offline at once).
	Rules *notify.Rules
	// LoginFailures is how many failed sign-ins one source address may
	// make in a minute before further attempts get 429 (default 5).
	LoginFailures int
}

func (o *Options) fill() {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.UpdateInterval <= 0 {
		o.UpdateInterval = time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.HistoryPoints <= 0 {
		o.HistoryPoints = 360
	}
	if o.Rules == nil {
		r := notify.DefaultConfig().Rules
		r.Offline.After = 0
		o.Rules = &r
	}
	if o.LoginFailures <= 0 {
		o.LoginFailures = 5
	}
}

// Server is the dashboard's HTTP side.
type Server struct {
	opts     Options
	fleet    Fleet
	log      *slog.Logger
	sessions *sessions
	limiter  *loginLimiter
	static   http.Handler

	mu      sync.Mutex
	changed chan struct{}
	// changedTaken: a stream holds changed, so the next change closes it.
	changedTaken bool
	closed       chan struct{}
	isClosed     bool
	profit       ProfitProvider
	switches     SwitchProvider
	billing      BillingProvider
	figures      FigureProvider
	alertSrc     AlertProvider
}

// New returns the dashboard server. Register it as a fleet report
// observer so live updates follow commits, mount it on the controller's
// mux, and call Close when the HTTP server shuts down.
func New(opts Options) *Server {
	opts.fill()
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return &Server{
		opts:     opts,
		fleet:    opts.Fleet,
		log:      opts.Log,
		sessions: newSessions(opts.SessionTTL),
		limiter:  &loginLimiter{max: opts.LoginFailures, window: time.Minute, fails: map[string][]time.Time{}},
		static:   http.FileServerFS(sub),
		changed:  make(chan struct{}),
		closed:   make(chan struct{}),
	}
}

// SetProfit sets the profit provider (nil hides profit).
func (s *Server) SetProfit(p ProfitProvider) { s.mu.Lock(); s.profit = p; s.mu.Unlock() }

// SetSwitches sets the switch history provider (nil hides it).
func (s *Server) SetSwitches(p SwitchProvider) { s.mu.Lock(); s.switches = p; s.mu.Unlock() }

// SetFigures sets the provider of the rigs' learned figures (nil hides
// them).
func (s *Server) SetFigures(p FigureProvider) { s.mu.Lock(); s.figures = p; s.mu.Unlock() }

func (s *Server) figureProvider() FigureProvider {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.figures
}

// SetAlerts sets the provider of firing alerts (nil: the dashboard
// evaluates the alert rules itself).
func (s *Server) SetAlerts(p AlertProvider) { s.mu.Lock(); s.alertSrc = p; s.mu.Unlock() }

func (s *Server) alertProvider() AlertProvider {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alertSrc
}

// SetBilling sets the billing provider (nil hides billing).
func (s *Server) SetBilling(p BillingProvider) { s.mu.Lock(); s.billing = p; s.mu.Unlock() }

func (s *Server) providers() (ProfitProvider, SwitchProvider, BillingProvider) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.profit, s.switches, s.billing
}

// ObserveReport wakes the live streams; it implements fleet.ReportObserver.
func (s *Server) ObserveReport(string, *quarryv1.Report) { s.Changed() }

// Changed wakes the live streams, for state changes outside reports.
func (s *Server) Changed() {
	s.mu.Lock()
	// Every committed report lands here; while no stream holds the
	// channel there is nobody to wake, and no new one to make.
	if s.changedTaken {
		close(s.changed)
		s.changed = make(chan struct{})
		s.changedTaken = false
	}
	s.mu.Unlock()
}

func (s *Server) changedCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changedTaken = true
	return s.changed
}

// Close ends every live stream so the HTTP server can shut down.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isClosed {
		s.isClosed = true
		close(s.closed)
	}
}

// Mount adds the dashboard's routes to mux.
func (s *Server) Mount(mux *http.ServeMux) {
	mux.Handle("GET /{$}", s.secure(http.HandlerFunc(s.index)))
	mux.Handle("GET /static/", s.secure(http.StripPrefix("/static/", s.static)))
	mux.Handle("POST /api/login", s.secure(http.HandlerFunc(s.login)))
	mux.Handle("POST /api/logout", s.secure(http.HandlerFunc(s.logout)))
	mux.Handle("GET /api/session", s.secure(s.auth(fleet.RoleViewer, s.session)))
	mux.Handle("GET /api/overview", s.secure(s.auth(fleet.RoleViewer, s.overview)))
	mux.Handle("GET /api/rigs/{rig}", s.secure(s.auth(fleet.RoleViewer, s.rig)))
	mux.Handle("GET /api/rigs/{rig}/history", s.secure(s.auth(fleet.RoleViewer, s.history)))
	mux.Handle("GET /api/billing", s.secure(s.auth(fleet.RoleViewer, s.billingStatus)))
	mux.Handle("GET /api/stream", s.secure(s.auth(fleet.RoleViewer, s.stream)))
	mux.Handle("POST /api/rigs/{rig}/actions/{action}", s.secure(s.auth(fleet.RoleOperator, s.action)))
	mux.Handle("GET /api/commands/{id}", s.secure(s.auth(fleet.RoleOperator, s.command)))
	mux.Handle("GET /api/rpc", s.secure(s.auth(fleet.RoleViewer, s.rpcMethods)))
	mux.Handle("POST /api/rpc/{service}/{method}", s.secure(s.auth(fleet.RoleViewer, s.rpc)))
	mux.Handle("POST /api/flightsheets/parse", s.secure(s.auth(fleet.RoleViewer, s.parseSheet)))
}

// secure sets headers that keep the page from being framed, sniffed or
// fed scripts from elsewhere.
func (s *Server) secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	http.ServeFileFS(w, r, assetFS, "assets/index.html")
}
