package market

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/quarryfleet/quarry/pkg/store"
)

//go:embed default_snapshot.json
var defaultSnapshotJSON []byte

// DefaultSnapshot returns the snapshot built into the binary: plausible
// values for common GPU and CPU coins on the date in the file, so the
// product has numbers to show before any fetch succeeds. Its age makes it
// stale, so switching stays paused until live data arrives.
func DefaultSnapshot() (Snapshot, error) {
	return snapshotFromFile(defaultSnapshotJSON, "embedded", OriginEmbedded)
}

// LoadSnapshotFile reads a market file (the File source's format) as a
// whole snapshot, for offline mode. Every coin must validate: an offline
// snapshot has nothing to fall back on, so a bad one is refused at start.
func LoadSnapshotFile(path string) (Snapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Snapshot{}, fmt.Errorf("market: offline snapshot: %w", err)
	}
	return snapshotFromFile(data, "file "+path, OriginFile)
}

func snapshotFromFile(data []byte, what, origin string) (Snapshot, error) {
	doc, err := ParseFile(data, origin)
	if err != nil {
		return Snapshot{}, fmt.Errorf("market: %s snapshot: %w", what, err)
	}
	s := Snapshot{Coins: make(map[string]Coin, len(doc.Coins)), Fetched: doc.Fetched, Origin: origin}
	for _, c := range doc.Coins {
		if c.NetHash == 0 {
			c.NetHash = c.DerivedNetHash()
		}
		if r := Validate(c); r != "" {
			return Snapshot{}, fmt.Errorf("market: %s snapshot: coin %q: %s", what, c.Tag, r)
		}
		s.Coins[c.Tag] = c
	}
	if len(s.Coins) == 0 {
		return Snapshot{}, fmt.Errorf("market: %s snapshot has no coins", what)
	}
	return s, nil
}

// Snapshot origins.
const (
	OriginFetch    = "fetch"
	OriginBolt     = "bbolt"
	OriginEmbedded = "embedded"
	OriginFile     = "file"
)

// Defaults for Config's zero values.
const (
	DefaultTTL            = 5 * time.Minute
	DefaultSourceTimeout  = 20 * time.Second
	DefaultJumpFactor     = 3.0
	DefaultConfirmFetches = 2
)

// boltKey is the key under Config.Bucket that holds the last good snapshot.
var boltKey = []byte("latest")

// Config configures a Cache. Zero values take the defaults above.
type Config struct {
	// Sources in precedence order (see merge for the rule).
	Sources []Source
	// TTL is how long a snapshot is fresh; Run refreshes this often and
	// Get asks for a refresh when the snapshot is older.
	TTL time.Duration
	// RetryInterval is how soon Run retries after a fetch in which every
	// source failed. Default TTL/5.
	RetryInterval time.Duration
	// SourceTimeout bounds each source's Fetch.
	SourceTimeout time.Duration
	// MaxStaleness is the age beyond which Health says switching must pause.
	MaxStaleness time.Duration
	// JumpFactor and ConfirmFetches configure the hold-back of sudden price
	// or difficulty jumps. ConfirmFetches 1 disables it.
	JumpFactor     float64
	ConfirmFetches int
	// Offline, when set, is the only snapshot the cache serves (the
	// embedded one or a file read with LoadSnapshotFile): nothing is
	// fetched and its age never pauses switching, because on a machine
	// without internet an old snapshot is the best there is and the
	// operator said so. Health reports it as offline.
	Offline *Snapshot
	// DB and Bucket, when DB is set, persist the last good snapshot as JSON.
	DB     *store.DB
	Bucket string
	Logger *slog.Logger
	// Now is the clock; tests set it. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = c.TTL / 5
	}
	if c.SourceTimeout <= 0 {
		c.SourceTimeout = DefaultSourceTimeout
	}
	if c.MaxStaleness <= 0 {
		c.MaxStaleness = DefaultMaxStaleness
	}
	if c.JumpFactor == 0 {
		c.JumpFactor = DefaultJumpFactor
	}
	if c.ConfirmFetches == 0 {
		c.ConfirmFetches = DefaultConfirmFetches
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch {
	case c.JumpFactor < 1:
		return fmt.Errorf("market: JumpFactor %g must be at least 1", c.JumpFactor)
	case c.ConfirmFetches < 0:
		return fmt.Errorf("market: ConfirmFetches %d must not be negative", c.ConfirmFetches)
	case c.DB != nil && c.Bucket == "":
		return errors.New("market: Bucket is required with DB")
	case c.Offline != nil && len(c.Sources) > 0:
		return errors.New("market: an offline cache fetches nothing; Sources must be empty")
	case c.Offline != nil && len(c.Offline.Coins) == 0:
		return errors.New("market: offline snapshot has no coins")
	}
	seen := make(map[string]bool)
	for i, s := range c.Sources {
		if s == nil {
			return fmt.Errorf("market: Sources[%d] is nil", i)
		}
		if seen[s.Name()] {
			return fmt.Errorf("market: two sources named %q", s.Name())
		}
		seen[s.Name()] = true
	}
	return nil
}

// Cache serves the latest validated market snapshot. Get never waits for
// the network; Run keeps the snapshot fresh in the background.
type Cache struct {
	cfg   Config
	kick  chan struct{}
	guard *jumpGuard

	refreshMu sync.Mutex // one fetch at a time; guards guard

	mu      sync.RWMutex
	snap    Snapshot
	lastErr error
	lastTry time.Time
}

// New builds a cache whose first snapshot is the one persisted in the DB,
// or the embedded default when there is none (or it is unreadable, which
// is logged rather than fatal: the product must start).
func New(cfg Config) (*Cache, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	c := &Cache{
		cfg:   cfg,
		kick:  make(chan struct{}, 1),
		guard: newJumpGuard(cfg.JumpFactor, cfg.ConfirmFetches),
	}
	if cfg.Offline != nil {
		c.snap = *cfg.Offline
		return c, nil
	}
	def, err := DefaultSnapshot()
	if err != nil {
		return nil, err
	}
	c.snap = def
	if cfg.DB != nil {
		s, ok, err := c.load()
		switch {
		case err != nil:
			cfg.Logger.Warn("market: ignoring persisted snapshot", "bucket", cfg.Bucket, "err", err)
		case ok && s.Fetched.After(def.Fetched):
			s.Origin = OriginBolt
			c.snap = s
		}
	}
	return c, nil
}

func (c *Cache) load() (Snapshot, bool, error) {
	var s Snapshot
	var found bool
	err := c.cfg.DB.View(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(c.cfg.Bucket))
		if b == nil {
			return nil
		}
		v := b.Get(boltKey)
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &s)
	})
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("load snapshot: %w", err)
	}
	if found {
		for tag, coin := range s.Coins {
			if r := Validate(coin); r != "" {
				return Snapshot{}, false, fmt.Errorf("load snapshot: coin %q: %s", tag, r)
			}
		}
	}
	return s, found, nil
}

func (c *Cache) save(s Snapshot) error {
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	return c.cfg.DB.Update(func(tx *store.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(c.cfg.Bucket))
		if err != nil {
			return fmt.Errorf("bucket %q: %w", c.cfg.Bucket, err)
		}
		return b.Put(boltKey, data)
	})
}

// Get returns the current snapshot without blocking. When it is older than
// the TTL it also asks a running Run loop to refresh (stale while
// revalidate). The returned snapshot's maps are shared: treat it as
// read-only.
func (c *Cache) Get() Snapshot {
	c.mu.RLock()
	s := c.snap
	c.mu.RUnlock()
	if c.cfg.Now().Sub(s.Fetched) > c.cfg.TTL {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return s
}

// Run refreshes now if the snapshot is older than the TTL, then every TTL
// (sooner after a failed fetch, or when Get asks), until ctx is done. It
// returns ctx's error.
func (c *Cache) Run(ctx context.Context) error {
	next := time.Duration(0)
	if age := c.cfg.Now().Sub(c.Get().Fetched); age < c.cfg.TTL {
		next = c.cfg.TTL - age
	}
	t := time.NewTimer(next)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-c.kick:
			if c.cfg.Now().Sub(c.Get().Fetched) <= c.cfg.TTL {
				continue
			}
		}
		wait := c.cfg.TTL
		if _, err := c.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.cfg.Logger.Warn("market: refresh failed; keeping last good snapshot", "err", err)
			wait = c.cfg.RetryInterval
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

// Refresh fetches every source in parallel, merges and validates, and
// publishes and persists the result. When every source fails it returns an
// error and the previous snapshot stays in place.
func (c *Cache) Refresh(ctx context.Context) (Snapshot, error) {
	if c.cfg.Offline != nil {
		return c.Get(), errors.New("market: offline mode fetches nothing; the snapshot is fixed by configuration")
	}
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()

	results := c.fetchAll(ctx)
	now := c.cfg.Now()
	statuses := make([]SourceStatus, len(results))
	var errs []error
	for i, r := range results {
		statuses[i] = SourceStatus{Name: r.name, OK: r.err == nil, Coins: len(r.coins), Duration: r.took}
		if r.err != nil {
			statuses[i].Error = r.err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", r.name, r.err))
		}
	}
	if len(results) == 0 || len(errs) == len(results) {
		err := errors.Join(errs...)
		if err == nil {
			err = errors.New("no sources configured")
		}
		err = fmt.Errorf("market: every source failed: %w", err)
		c.mu.Lock()
		c.lastErr, c.lastTry = err, now
		s := c.snap
		c.mu.Unlock()
		return s, err
	}

	prev := c.Get()
	next := c.build(prev, results, now)
	next.Sources = statuses
	if allOffline(results, c.cfg.Sources) {
		next.Origin = OriginOffline
	}
	if len(next.Coins) == 0 {
		err := fmt.Errorf("market: sources answered but no coin passed validation (%d dropped)", len(next.Dropped))
		c.mu.Lock()
		c.lastErr, c.lastTry = err, now
		c.mu.Unlock()
		return prev, err
	}
	if c.cfg.DB != nil {
		if err := c.save(next); err != nil {
			// The snapshot is still good to serve; only the restart copy is old.
			c.cfg.Logger.Warn("market: could not persist snapshot", "err", err)
		}
	}
	c.mu.Lock()
	c.snap, c.lastErr, c.lastTry = next, errors.Join(errs...), now
	c.mu.Unlock()
	c.cfg.Logger.Debug("market: refreshed", "coins", len(next.Coins), "dropped", len(next.Dropped), "held", len(next.Held))
	return next, nil
}

// fetchAll runs every source at once, each under its own timeout. A failing
// source does not cancel the others, so its error is kept, not returned to
// the group.
func (c *Cache) fetchAll(ctx context.Context) []sourceResult {
	results := make([]sourceResult, len(c.cfg.Sources))
	var g errgroup.Group
	for i, s := range c.cfg.Sources {
		g.Go(func() error {
			sctx, cancel := context.WithTimeout(ctx, c.cfg.SourceTimeout)
			defer cancel()
			start := time.Now()
			coins, err := s.Fetch(sctx)
			results[i] = sourceResult{name: s.Name(), roles: rolesOf(s), coins: coins, err: err, took: time.Since(start)}
			return nil
		})
	}
	_ = g.Wait() // the goroutines never return errors
	return results
}

// build validates the merged coins against prev. Coins that this fetch
// lacks or drops keep their previous accepted values while those are
// younger than MaxStaleness, so one flaky source does not empty the market.
func (c *Cache) build(prev Snapshot, results []sourceResult, now time.Time) Snapshot {
	next := Snapshot{Coins: make(map[string]Coin), Fetched: now, Origin: OriginFetch}
	for _, coin := range merge(results) {
		if r := Validate(coin); r != "" {
			next.Dropped = append(next.Dropped, Dropped{Tag: coin.Tag, Source: coin.Source, Reason: r})
			continue
		}
		// A jump is judged only against recent data: after an outage, or
		// against the embedded default, a big move is history, not a glitch.
		old, had := prev.Coins[coin.Tag]
		had = had && now.Sub(old.UpdatedAt) <= c.cfg.MaxStaleness && !prev.StaleAfter(now, c.cfg.MaxStaleness)
		coin, held := c.guard.apply(old, had, coin)
		next.Held = append(next.Held, held...)
		next.Coins[coin.Tag] = coin
	}
	for tag, old := range prev.Coins {
		if _, ok := next.Coins[tag]; ok || now.Sub(old.UpdatedAt) > c.cfg.MaxStaleness {
			continue
		}
		next.Coins[tag] = old
	}
	return next
}

// Health says whether the market data is good enough to switch on.
type Health struct {
	OK bool // false: switching must pause
	// Reason explains a pause in words fit for an operator.
	Reason string
	Age    time.Duration
	Origin string
	// Offline is set while the data is not live: the cache serves a fixed
	// snapshot by configuration (OK does not depend on its age), or every
	// source is an offline or demo one.
	Offline   bool
	Coins     int
	LastError string // last refresh error, even when OK (a partial failure)
	LastTry   time.Time
}

// Health reports whether switching may use the current snapshot.
func (c *Cache) Health() Health {
	c.mu.RLock()
	s, lastErr, lastTry := c.snap, c.lastErr, c.lastTry
	c.mu.RUnlock()
	now := c.cfg.Now()
	h := Health{OK: true, Age: now.Sub(s.Fetched), Origin: s.Origin, Offline: s.Origin == OriginOffline, Coins: len(s.Coins), LastTry: lastTry}
	if lastErr != nil {
		h.LastError = lastErr.Error()
	}
	switch {
	case len(s.Coins) == 0:
		h.OK, h.Reason = false, "no market data"
	case c.cfg.Offline != nil:
		h.Offline = true
		h.Reason = fmt.Sprintf("offline mode: %s snapshot from %s, used whatever its age", s.Origin, s.Fetched.Format("2006-01-02"))
	case s.StaleAfter(now, c.cfg.MaxStaleness):
		h.OK = false
		h.Reason = fmt.Sprintf("market data from %s is %s old (limit %s); switching paused until a fetch succeeds",
			s.Origin, h.Age.Round(time.Second), c.cfg.MaxStaleness)
		if h.LastError != "" {
			h.Reason += ": " + h.LastError
		}
	}
	return h
}
