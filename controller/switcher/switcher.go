// Package switcher is the controller's profit switching loop. It keeps the
// market cache, takes each rig's hash rate and power per algorithm from a
// profile an operator sets or from the figures the controller learns from
// benchmarks and reports (controller/figures), ranks every option for
// every rig on all cores with pkg/profit every tick, applies the switching
// policy, and queues APPLY_FLIGHT_SHEET or STOP_MINER commands in batches.
//
// Rigs without figures of their own on an algorithm borrow them from a rig
// with identical hardware (the same sorted list of GPU models) and are shown
// as borrowed. Switching pauses, with the reason recorded, while the market
// data is stale. Every decision keeps its inputs so that `quarryctl profit
// explain` can show them, and every action is written to the switch history
// and the audit log.
package switcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quarryfleet/quarry/controller/figures"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/market"
	"github.com/quarryfleet/quarry/pkg/profit"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Fleet is what the switcher needs of the controller's fleet state.
type Fleet interface {
	// EachRig calls fn with a view of every rig, valid only during the
	// call, under the fleet's lock.
	EachRig(fn func(r *quarryv1.Rig))
	Resolve(idOrName string) (string, error)
	QueueCommand(rigID string, kind quarryv1.CommandKind, payload []byte, ttl time.Duration) (*quarryv1.CommandRecord, error)
	// QueueCommands queues a batch with its audit entries in one commit.
	QueueCommands(reqs []fleet.CommandRequest) ([]*quarryv1.CommandRecord, []error)
	Audit(e *quarryv1.AuditEntry) error
}

// Options are the switcher's collaborators.
type Options struct {
	Fleet  Fleet
	DB     *store.DB
	Logger *slog.Logger
	// HTTPClient fetches market sources; nil uses http.DefaultClient.
	HTTPClient *http.Client
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Figures, if set, supplies each rig's benchmarked and live-refined
	// figures per algorithm; they rank after operator and config
	// profiles and before figures borrowed from identical hardware.
	Figures Figures
	// Hold, if set, is asked for every rig before it is moved: billing
	// holds the rigs of a customer who is not paying. stopMining also
	// stops the rig's miner.
	Hold func(rigID string, now time.Time) (hold, stopMining bool, reason string)
	// Sheets is the flight sheet store the stored settings' options name
	// sheets in; without it options carry their sheets inline.
	Sheets Sheets
	// Resolve, if set, turns a stored sheet into the sheet rigs get (the
	// catalogue writes in its pins).
	Resolve func(yaml []byte) ([]byte, error)
}

// Sheets is the flight sheet store; *miners.Store fits.
type Sheets interface {
	Sheet(name string) (*quarryv1.FlightSheetRecord, error)
	PutSheet(yaml []byte, who string) (*quarryv1.FlightSheetRecord, error)
}

// Figures is the source of each rig's learned hash rate and power by
// canonical algorithm name; *figures.Learner fits.
type Figures interface {
	Figures(rigID string) map[string]figures.Figure
}

// Actions beyond the policy's own.
const (
	ActionPaused  = "paused"
	ActionHeld    = "held" // billing holds the rig where it is
	ActionNoData  = "no-data"
	ActionOffline = "offline"
	ActionNone    = "no-options"
)

// Switcher runs profit switching for the fleet.
type Switcher struct {
	// cfg is the file's section; its editable part only seeded the
	// stored settings, which cur carries.
	cfg     Config
	fleet   Fleet
	db      *store.DB
	cache   *market.Cache
	log     *slog.Logger
	now     func() time.Time
	hasSrc  bool
	kick    chan struct{}
	figures Figures
	hold    func(rigID string, now time.Time) (hold, stopMining bool, reason string)
	sheets  Sheets
	resolve func(yaml []byte) ([]byte, error)

	cur       atomic.Pointer[active]
	refreshMu sync.Mutex
	failed    string // stamp of settings that could not be used, logged once

	mu       sync.Mutex
	profiles map[string]AlgoProfiles // rig → set through the API
	state    map[string]rigState
	last     *Tick
	// saved is what the database holds of each rig's state and latest
	// decision, so a tick writes only what changed (see persist).
	saved map[string]savedRig
}

// rigState is what a rig mines as far as the switcher knows, by option
// name so that it survives a change of the option list.
type rigState struct {
	Option string    `json:"option"` // "" or "off" when stopped
	Since  time.Time `json:"since"`
}

// active is what the switcher decides with: the file's section with one
// version of the stored settings applied, and what is built from it.
type active struct {
	cfg      Config
	version  uint64
	stamp    string         // the version and its flight sheets' update times
	engine   *profit.Engine // nil without options
	payloads [][]byte
	byName   map[string]int
	sites    []profit.Site
	siteSet  map[string]bool
}

func (s *Switcher) build(st Settings, version uint64, stamp string) (*active, error) {
	a := &active{cfg: s.cfg.with(st), version: version, stamp: stamp, byName: map[string]int{}, siteSet: map[string]bool{}}
	var err error
	if a.engine, a.payloads, err = st.options(s.sheet); err != nil {
		return nil, fmt.Errorf("profit.options: %w", err)
	}
	if a.engine != nil {
		for i := range a.engine.Len() {
			a.byName[a.engine.Name(i)] = i
		}
	}
	if a.sites, err = st.sites(); err != nil {
		return nil, fmt.Errorf("profit.sites: %w", err)
	}
	for _, site := range a.sites {
		a.siteSet[site.Name] = true
	}
	return a, nil
}

// sheet returns a stored flight sheet and the payload rigs get for it.
func (s *Switcher) sheet(name string) (*flightsheet.FlightSheet, []byte, error) {
	if s.sheets == nil {
		return nil, nil, errors.New("no flight sheet store to take it from")
	}
	rec, err := s.sheets.Sheet(name)
	if err != nil {
		return nil, nil, err
	}
	fs, err := flightsheet.Parse(rec.Yaml)
	if err != nil {
		return nil, nil, err
	}
	payload := rec.Yaml
	if s.resolve != nil {
		if payload, err = s.resolve(rec.Yaml); err != nil {
			return nil, nil, err
		}
	}
	return fs, payload, nil
}

// stamp identifies a version as built: its number and the update times of
// the stored flight sheets it names, so that editing a sheet rebuilds too.
func (s *Switcher) stamp(sv SettingsVersion) string {
	var b strings.Builder
	fmt.Fprintf(&b, "v%d", sv.Version)
	for _, o := range sv.Settings.Options {
		if o.Sheet == "" || s.sheets == nil {
			continue
		}
		if rec, err := s.sheets.Sheet(o.Sheet); err == nil {
			fmt.Fprintf(&b, " %s@%d", o.Sheet, rec.UpdatedUnixNano)
		} else {
			fmt.Fprintf(&b, " %s@missing", o.Sheet)
		}
	}
	return b.String()
}

// refresh returns the settings to decide with: the newest stored version,
// built again when it or a flight sheet it names changed. A version that
// cannot be used (a sheet deleted meanwhile) leaves the previous in force.
func (s *Switcher) refresh() *active {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	a := s.cur.Load()
	if s.db == nil {
		return a
	}
	sv, ok, err := s.latestVersion()
	if err != nil || !ok {
		s.log.Warn("profit: cannot read the stored settings; keeping those in force", "err", err)
		return a
	}
	stamp := s.stamp(sv)
	if stamp == a.stamp || stamp == s.failed {
		return a
	}
	n, err := s.build(sv.Settings, sv.Version, stamp)
	if err != nil {
		s.failed = stamp
		s.log.Error("profit: stored settings cannot be used; keeping the previous version in force", "version", sv.Version, "in_force", a.version, "err", err)
		return a
	}
	s.cur.Store(n)
	s.log.Info("profit: settings in force", "version", sv.Version, "by", sv.Author, "options", len(n.byName))
	return n
}

// New builds the switcher and its market cache, and loads its state. With
// a database, the settings stored there are in force, seeded from cfg on
// first start.
func New(cfg Config, o Options) (*Switcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Switcher{
		cfg: cfg, fleet: o.Fleet, db: o.DB, log: o.Logger, now: o.Now,
		kick: make(chan struct{}, 1), figures: o.Figures, hold: o.Hold,
		profiles: map[string]AlgoProfiles{}, state: map[string]rigState{}, saved: map[string]savedRig{},
		sheets: o.Sheets, resolve: o.Resolve,
	}
	sources, err := cfg.MarketSources(o.HTTPClient)
	if err != nil {
		return nil, err
	}
	s.hasSrc = len(sources) > 0
	offline, err := cfg.Market.offlineSnapshot()
	if err != nil {
		return nil, err
	}
	if o.DB != nil {
		if err := s.load(); err != nil {
			return nil, err
		}
		sv, err := s.seedOrLoad(cfg)
		if err != nil {
			return nil, err
		}
		a, err := s.build(sv.Settings, sv.Version, s.stamp(sv))
		if err != nil {
			// A stored sheet went missing: start without options rather
			// than not at all, so the settings can be fixed.
			s.log.Error("profit: stored settings cannot be used; switching is idle until they are fixed", "version", sv.Version, "err", err)
			st := sv.Settings
			st.Options = nil
			if a, err = s.build(st, sv.Version, ""); err != nil {
				return nil, err
			}
		}
		s.cur.Store(a)
	} else {
		a, err := s.build(cfg.Editable(), 0, "")
		if err != nil {
			return nil, err
		}
		s.cur.Store(a)
	}
	s.cache, err = market.New(market.Config{
		Sources: sources, TTL: cfg.Market.TTL, SourceTimeout: cfg.Market.SourceTimeout,
		MaxStaleness: cfg.Market.MaxStaleness, JumpFactor: cfg.Market.JumpFactor,
		ConfirmFetches: cfg.Market.ConfirmFetches, DB: o.DB, Bucket: bucketMarket,
		Logger: o.Logger, Now: o.Now, Offline: offline,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// MarketMode says where market data comes from: "live", or offline with
// the snapshot named.
func (s *Switcher) MarketMode() string { return s.cfg.Market.Mode() }

// Market is the switcher's market cache.
func (s *Switcher) Market() *market.Cache { return s.cache }

// Run keeps the market fresh and ticks until ctx ends. It returns nil on
// cancellation.
func (s *Switcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if s.hasSrc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.cache.Run(ctx)
		}()
	}
	defer wg.Wait()
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	idle := false
	for {
		_, err := s.Tick(ctx)
		switch {
		case errors.Is(err, errNoOptions):
			if !idle {
				s.log.Info("profit switching idle: no options (add some with 'quarryctl profit options add')")
			}
		case err != nil && ctx.Err() == nil:
			s.log.Warn("profit tick failed", "err", err)
		}
		idle = errors.Is(err, errNoOptions)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.kick:
		}
	}
}

// Tick is one round of ranking and decisions, kept for the API.
type Tick struct {
	Time        time.Time
	Paused      bool
	PauseReason string
	DryRun      bool
	Snapshot    market.Snapshot
	Quote       *profit.Quote
	Fleet       *profit.Fleet
	Ranking     *profit.Ranking
	Rigs        []RigInput
	Decisions   []Decided
	index       map[string]int
	// Settings is the version of the stored settings decided with.
	Settings uint64
	a        *active
}

// errNoOptions: there is nothing to switch between.
var errNoOptions = errors.New("no profit options configured")

// RigInput is everything about a rig that a decision depends on, besides
// the market.
type RigInput struct {
	ID, Name, Site, Fingerprint string
	Online                      bool
	Perf                        []profit.Perf
	Sources                     map[string]PerfSource // by algorithm
	Rules                       profit.Rules
	Current                     int
	LastSwitch                  time.Time
}

// PerfSource says where a rig's figures on one algorithm came from.
type PerfSource struct {
	Source       string `json:"source"` // profile, benchmark, live, borrowed
	BorrowedFrom string `json:"borrowed_from,omitempty"`
	Samples      uint32 `json:"samples,omitempty"`
}

// Decided is a rig's decision with what the switcher made of it.
type Decided struct {
	profit.Decision
	// Outcome is the policy's action, or paused, no-data or offline.
	Action    string `json:"outcome"`
	Borrowed  bool   `json:"borrowed,omitempty"`
	CommandID string `json:"command_id,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Tick runs one round now: rank, decide, act, persist.
func (s *Switcher) Tick(ctx context.Context) (*Tick, error) {
	a := s.refresh()
	if a.engine == nil {
		return nil, errNoOptions
	}
	now := s.now()
	h := s.cache.Health()
	var rigs []rigBrief
	s.fleet.EachRig(func(r *quarryv1.Rig) { rigs = append(rigs, a.brief(r)) })
	in := s.collect(a, rigs, now)
	t, err := s.plan(ctx, a, s.cache.Get(), in, now)
	if err != nil {
		return nil, err
	}
	if !h.OK {
		t.Paused, t.PauseReason = true, h.Reason
		for i := range t.Decisions {
			if t.Decisions[i].Action != ActionNoData {
				t.Decisions[i].Action = ActionPaused
			}
		}
	}
	t.DryRun = s.cfg.DryRun
	s.act(ctx, t)
	s.mu.Lock()
	s.last = t
	s.mu.Unlock()
	if err := s.persist(t); err != nil {
		s.log.Warn("profit: could not persist decisions", "err", err)
	}
	return t, nil
}

// Last returns the latest tick, or nil before the first.
func (s *Switcher) Last() *Tick {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Fingerprint is a rig's hardware identity for sharing profiles: its GPU
// models, sorted and comma-separated; empty for a rig with no GPUs.
func Fingerprint(r *quarryv1.Rig) string {
	names := make([]string, 0, len(r.Gpus))
	for _, g := range r.Gpus {
		if g.Name != "" {
			names = append(names, g.Name)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// rigBrief is what a tick takes from a rig. It is read from the fleet's
// views under the fleet's lock, so a tick over 100,000 rigs copies no
// rig's record.
type rigBrief struct {
	id, name, fingerprint, siteLabel string
	online, revoked                  bool
	// running is the option the rig's miners report mining, for rigs the
	// switcher has never moved; profit.Off when none matches.
	running int
}

func (a *active) brief(r *quarryv1.Rig) rigBrief {
	return rigBrief{id: r.Id, name: r.Name, fingerprint: Fingerprint(r), siteLabel: r.Labels["site"],
		online: r.Online, revoked: r.Revoked, running: a.runningOption(r)}
}

// collect turns the fleet's rigs into ranking inputs: figures by
// precedence (operator profile, config profile, learned, borrowed),
// site, rules and the option each rig mines now.
func (s *Switcher) collect(a *active, rigs []rigBrief, now time.Time) []RigInput {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RigInput, 0, len(rigs))
	own := make([]map[string]profit.Perf, 0, len(rigs))
	src := make([]map[string]PerfSource, 0, len(rigs))
	byFP := map[string]int{} // fingerprint → first rig (by id) with own figures
	slices.SortFunc(rigs, func(x, y rigBrief) int { return strings.Compare(x.id, y.id) })
	for _, r := range rigs {
		if r.revoked {
			continue
		}
		rc, ok := a.cfg.Rigs[r.id]
		if !ok {
			rc = a.cfg.Rigs[r.name]
		}
		in := RigInput{ID: r.id, Name: r.name, Fingerprint: r.fingerprint, Online: r.online, Current: profit.Off}
		in.Site = firstNonEmpty(rc.Site, r.siteLabel)
		if !a.siteSet[in.Site] {
			in.Site = a.cfg.DefaultSite
		}
		in.Rules = a.cfg.Rules.Merge(rc.Rules)
		perf, ps := map[string]profit.Perf{}, map[string]PerfSource{}
		add := func(algo string, p profit.Perf, so PerfSource) {
			if _, have := perf[algo]; !have {
				p.Algorithm = algo
				perf[algo], ps[algo] = p, so
			}
		}
		for algo, f := range s.profiles[r.id] {
			add(algo, profit.Perf{Hashrate: f.Hashrate, Power: f.Power}, PerfSource{Source: "profile"})
		}
		for algo, f := range rc.Profile {
			add(market.CanonicalAlgorithm(algo), profit.Perf{Hashrate: f.Hashrate, Power: f.Power}, PerfSource{Source: "profile"})
		}
		if s.figures != nil {
			for algo, f := range s.figures.Figures(r.id) {
				if f.HashrateHs > 0 {
					add(algo, profit.Perf{Hashrate: f.HashrateHs, Power: f.PowerW}, PerfSource{Source: f.Source, Samples: uint32(min(f.Samples, math.MaxUint32))})
				}
			}
		}
		// A rig the switcher has never moved counts as having dwelt
		// long enough.
		in.LastSwitch = now.Add(-a.cfg.Policy.MinDwell)
		if st, ok := s.state[r.id]; ok {
			in.LastSwitch = st.Since
			if i, ok := a.byName[st.Option]; ok {
				in.Current = i
			}
		} else {
			in.Current = r.running
		}
		if _, seen := byFP[in.Fingerprint]; !seen && in.Fingerprint != "" && len(perf) > 0 {
			byFP[in.Fingerprint] = len(out)
		}
		out = append(out, in)
		own = append(own, perf)
		src = append(src, ps)
	}
	for i := range out {
		in := &out[i]
		perf, ps := own[i], src[i]
		if in.Fingerprint != "" {
			for algo, f := range s.cfg.Profiles[in.Fingerprint] {
				algo = market.CanonicalAlgorithm(algo)
				if _, have := perf[algo]; !have {
					perf[algo] = profit.Perf{Algorithm: algo, Hashrate: f.Hashrate, Power: f.Power, BorrowedFrom: in.Fingerprint}
					ps[algo] = PerfSource{Source: "borrowed", BorrowedFrom: in.Fingerprint + " (config profile)"}
				}
			}
			if j, ok := byFP[in.Fingerprint]; ok && j != i {
				for algo, p := range own[j] {
					if _, have := perf[algo]; !have && p.BorrowedFrom == "" {
						p.BorrowedFrom = in.Fingerprint
						perf[algo] = p
						ps[algo] = PerfSource{Source: "borrowed", BorrowedFrom: in.Fingerprint + " (rig " + out[j].ID + ")"}
					}
				}
			}
		}
		in.Perf = make([]profit.Perf, 0, len(perf))
		for _, p := range perf {
			in.Perf = append(in.Perf, p)
		}
		slices.SortFunc(in.Perf, func(a, b profit.Perf) int { return strings.Compare(a.Algorithm, b.Algorithm) })
		in.Sources = ps
	}
	return out
}

// runningOption guesses the option a rig mines from its miners' reports,
// for rigs the switcher has never moved.
func (a *active) runningOption(r *quarryv1.Rig) int {
	for _, m := range r.Miners {
		if m.Coin == "" || (m.State != "" && m.State != quarryv1.MinerRunning && m.State != quarryv1.MinerWarming && m.State != "starting") {
			continue
		}
		coin, algo := strings.ToLower(m.Coin), market.CanonicalAlgorithm(m.Algorithm)
		best := profit.Off
		for i := range a.engine.Len() {
			o := a.engine.Option(i)
			if o.Coin != coin || (algo != "" && o.Algorithm != algo) {
				continue
			}
			if best == profit.Off || (m.Pool != "" && strings.Contains(m.Pool, o.Pool)) {
				best = i
			}
		}
		if best != profit.Off {
			return best
		}
	}
	return profit.Off
}

// Coins converts a market snapshot into the engine's coin figures.
func Coins(snap market.Snapshot) []profit.Coin {
	out := make([]profit.Coin, 0, len(snap.Coins))
	for _, c := range snap.Coins {
		out = append(out, profitCoin(c))
	}
	slices.SortFunc(out, func(a, b profit.Coin) int { return strings.Compare(a.Tag, b.Tag) })
	return out
}

func profitCoin(c market.Coin) profit.Coin {
	return profit.Coin{
		Tag: c.Tag, Algorithm: c.Algorithm, BlockTime: c.BlockTime, BlockReward: c.BlockReward,
		Difficulty: c.Difficulty, NetHash: c.NetHash, PriceUSD: c.PriceUSD, Kind: profit.NetHash,
	}
}

// plan ranks every rig and applies the policy. It does no I/O.
func (s *Switcher) plan(ctx context.Context, a *active, snap market.Snapshot, rigs []RigInput, now time.Time) (*Tick, error) {
	e := a.engine
	q := e.Quote(Coins(snap))
	pr := make([]profit.Rig, len(rigs))
	for i, r := range rigs {
		pr[i] = profit.Rig{ID: r.ID, Site: r.Site, Perf: r.Perf, Rules: r.Rules}
	}
	f, err := e.NewFleet(pr, a.sites)
	if err != nil {
		return nil, err
	}
	rk := profit.NewRanking(f, 3)
	if err := q.Rank(ctx, f, now, 0, rk); err != nil {
		return nil, err
	}
	t := &Tick{Time: now, Snapshot: snap, Quote: q, Fleet: f, Ranking: rk, Rigs: rigs,
		Decisions: make([]Decided, len(rigs)), index: make(map[string]int, len(rigs)), Settings: a.version, a: a}
	for i, r := range rigs {
		t.index[r.ID] = i
		t.Decisions[i] = s.decide(t, i, now)
	}
	return t, nil
}

func (s *Switcher) decide(t *Tick, i int, now time.Time) Decided {
	r := &t.Rigs[i]
	e, f, q := t.a.engine, t.Fleet, t.Quote
	cur := e.CandidateOf(q.Score(f, i, r.Current, now))
	in := profit.Input{Rig: r.ID, Current: cur, Best: e.CandidateOf(t.Ranking.Best(i)), Pinned: r.Rules.Pin, Now: now, LastSwitch: r.LastSwitch}
	if ok, why := f.Allowed(i, r.Current); !ok {
		in.CurrentBlocked = why
	}
	d := Decided{Decision: t.a.cfg.Policy.Decide(in)}
	d.Action = string(d.Decision.Action)
	for _, p := range r.Perf {
		if p.BorrowedFrom != "" {
			d.Borrowed = true
		}
	}
	switch {
	case len(r.Perf) == 0:
		d.Action = ActionNoData
		d.Reason = "no hash rate or power figures for this rig or identical hardware; set a profile with 'quarryctl profit set-profile' or let it mine to measure"
	case !r.Online && d.Action != string(profit.Stay):
		d.Reason = "rig offline; when back: " + d.Reason
		d.Action = ActionOffline
	}
	if s.hold != nil {
		if hold, stop, why := s.hold(r.ID, now); stop && r.Current != profit.Off {
			d.Action = string(profit.Curtail)
			d.Target = profit.Candidate{Option: profit.Off, Name: "off"}
			d.Reason = "billing: " + why + "; stopping the miner"
		} else if hold && d.Action != string(profit.Stay) && d.Action != ActionNoData {
			d.Reason = "billing: " + why + "; would have: " + d.Reason
			d.Action = ActionHeld
		}
	}
	return d
}

// command is one switching command to queue.
type command struct {
	rig     int
	kind    quarryv1.CommandKind
	payload []byte
}

// act queues the tick's commands in batches, records the switches and
// moves the rigs' state.
func (s *Switcher) act(ctx context.Context, t *Tick) {
	var cmds []command
	for i := range t.Decisions {
		d := &t.Decisions[i]
		switch profit.Action(d.Action) {
		case profit.Switch, profit.Resume:
			cmds = append(cmds, command{rig: i, kind: quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, payload: t.a.payloads[d.Target.Option]})
		case profit.Curtail:
			cmds = append(cmds, command{rig: i, kind: quarryv1.CommandKind_COMMAND_KIND_STOP_MINER})
		}
	}
	if len(cmds) == 0 {
		return
	}
	if t.DryRun {
		recs := make([]SwitchRecord, 0, len(cmds))
		for _, c := range cmds {
			recs = append(recs, s.record(t, c.rig, true))
		}
		s.saveSwitches(recs, nil)
		return
	}
	for start := 0; start < len(cmds); start += s.cfg.BatchSize {
		if start > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.cfg.BatchSpacing):
			}
		}
		batch := cmds[start:min(start+s.cfg.BatchSize, len(cmds))]
		// One transaction for the batch's commands and audit entries: a
		// disk sync per command would make a fleet-wide switch take
		// seconds per thousand rigs.
		reqs := make([]fleet.CommandRequest, len(batch))
		for k, c := range batch {
			d := &t.Decisions[c.rig]
			reqs[k] = fleet.CommandRequest{RigID: t.Rigs[c.rig].ID, Kind: c.kind, Payload: c.payload, TTL: s.cfg.CommandTTL,
				Audit: &quarryv1.AuditEntry{Who: "profit-switcher", Role: "system", Action: "profit." + d.Action, Target: t.Rigs[c.rig].ID, Detail: d.Reason}}
		}
		queued, errs := s.fleet.QueueCommands(reqs)
		recs := make([]SwitchRecord, 0, len(batch))
		moved := make(map[string]rigState, len(batch))
		for k, c := range batch {
			d := &t.Decisions[c.rig]
			rig := t.Rigs[c.rig].ID
			if err := errs[k]; err != nil {
				d.Error = err.Error()
				s.log.Warn("profit: could not queue command", "rig", rig, "action", d.Action, "err", err)
			} else {
				d.CommandID = queued[k].Command.Id
				moved[rig] = rigState{Option: d.Target.Name, Since: t.Time}
				s.mu.Lock()
				s.state[rig] = moved[rig]
				s.mu.Unlock()
			}
			recs = append(recs, s.record(t, c.rig, false))
		}
		// The batch's rigs are stored as moved now, not when the tick
		// ends: a controller that takes over from one that died in the
		// middle of a long send would otherwise find these commands queued
		// and the rigs unmoved, and send them again or move the rigs
		// before their dwell.
		s.saveSwitches(recs, moved)
		s.log.Info("profit: switching batch queued", "commands", len(batch), "of", len(cmds))
	}
}

func (s *Switcher) record(t *Tick, i int, dry bool) SwitchRecord {
	d := &t.Decisions[i]
	return SwitchRecord{
		Time: t.Time, Rig: t.Rigs[i].ID, Action: d.Action, From: d.Input.Current.Name, To: d.Target.Name,
		FromUSD: finite(d.Input.Current.Profit), ToUSD: finite(d.Target.Profit), Reason: d.Reason,
		CommandID: d.CommandID, DryRun: dry, Error: d.Error,
	}
}

func finite(v float64) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0
	}
	return v
}

// SetProfile sets or, with nil, clears a rig's operator profile.
func (s *Switcher) SetProfile(rigID string, p AlgoProfiles) error {
	if err := p.validate(); err != nil {
		return err
	}
	canon := AlgoProfiles{}
	for algo, f := range p {
		canon[market.CanonicalAlgorithm(algo)] = f
	}
	s.mu.Lock()
	if len(p) == 0 {
		delete(s.profiles, rigID)
	} else {
		s.profiles[rigID] = canon
	}
	s.mu.Unlock()
	if s.db != nil {
		if err := s.saveProfile(rigID, canon); err != nil {
			return err
		}
	}
	s.Kick()
	return nil
}

// Profile returns a rig's operator profile.
func (s *Switcher) Profile(rigID string) AlgoProfiles {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.profiles[rigID]
}

// Kick asks the loop to tick now.
func (s *Switcher) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Config returns the configuration in force: the file's section with the
// stored settings applied.
func (s *Switcher) Config() Config { return s.cur.Load().cfg }

// Engine is the option set in force; nil without options.
func (s *Switcher) Engine() *profit.Engine { return s.cur.Load().engine }

// errRig formats an unknown rig for the API.
func errRig(rig string) error { return fmt.Errorf("rig %q has no profit decision yet", rig) }
