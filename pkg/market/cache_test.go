package market

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

type mutableSource struct {
	name  string
	mu    sync.Mutex
	coins []Coin
	err   error
}

func (s *mutableSource) Name() string { return s.name }

func (s *mutableSource) set(cs ...Coin) {
	s.mu.Lock()
	s.coins, s.err = cs, nil
	s.mu.Unlock()
}

func (s *mutableSource) Fetch(context.Context) ([]Coin, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.coins, s.err
}

func newTestCache(t *testing.T, cfg Config) *Cache {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// market is a local stand-in for WhatToMine and CoinGecko: it serves the
// recorded payloads, lets a test edit them, and can be told to fail.
type market struct {
	mu     sync.Mutex
	wtm    map[string]map[string]any
	cg     []byte
	status int
	hits   int
}

func newMarket(t *testing.T) (*market, *httptest.Server, *http.Client) {
	t.Helper()
	m := &market{cg: readTestdata(t, "coingecko_simple_price.json"), status: http.StatusOK}
	var doc struct {
		Coins map[string]map[string]any `json:"coins"`
	}
	if err := json.Unmarshal(readTestdata(t, "whattomine_coins.json"), &doc); err != nil {
		t.Fatal(err)
	}
	m.wtm = doc.Coins
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.hits++
		if m.status != http.StatusOK {
			http.Error(w, `{"errors":["maintenance"]}`, m.status)
			return
		}
		switch r.URL.Path {
		case "/coins.json":
			_ = json.NewEncoder(w).Encode(map[string]any{"coins": m.wtm})
		case "/simple/price":
			if !strings.Contains(r.URL.Query().Get("ids"), "bitcoin") {
				http.Error(w, "missing ids", http.StatusBadRequest)
				return
			}
			_, _ = w.Write(m.cg)
		default:
			http.NotFound(w, r)
		}
	}))
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
	})
	return m, srv, client
}

func (m *market) setWTM(name, field string, v any) {
	m.mu.Lock()
	m.wtm[name][field] = v
	m.mu.Unlock()
}

func (m *market) fail(status int) {
	m.mu.Lock()
	m.status = status
	m.mu.Unlock()
}

func sources(srv *httptest.Server, client *http.Client) []Source {
	return []Source{
		&WhatToMine{URL: srv.URL + "/coins.json", Client: client},
		&CoinGecko{BaseURL: srv.URL + "/simple/price", Client: client, IDs: map[string]string{"btc": "bitcoin"}},
	}
}

func openDB(t *testing.T, path string) *store.DB {
	t.Helper()
	return testsupport.OpenStore(t, path)
}

func TestCacheStartsFromEmbeddedAndPausesSwitching(t *testing.T) {
	clock := testsupport.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := newTestCache(t, Config{Now: clock.Now})
	s := c.Get()
	if s.Origin != OriginEmbedded || len(s.Coins) < 10 {
		t.Fatalf("first snapshot origin %q with %d coins, want the embedded default", s.Origin, len(s.Coins))
	}
	if !s.Stale(clock.Now()) {
		t.Error("embedded snapshot from 2024 should be stale in 2026")
	}
	h := c.Health()
	if h.OK || !strings.Contains(h.Reason, "switching paused") || !strings.Contains(h.Reason, "embedded") {
		t.Errorf("health = %+v, want a pause explaining the embedded data is old", h)
	}
}

func TestCacheRefreshFromHTTP(t *testing.T) {
	m, srv, client := newMarket(t)
	clock := testsupport.NewClock(t0)
	c := newTestCache(t, Config{Sources: sources(srv, client), Now: clock.Now})
	s, err := c.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Origin != OriginFetch || len(s.Coins) != 14 || len(s.Sources) != 2 || !s.Sources[0].OK || !s.Sources[1].OK {
		t.Fatalf("snapshot: origin %s, %d coins, sources %+v", s.Origin, len(s.Coins), s.Sources)
	}
	etc := s.Coins["etc"]
	if !near(etc.PriceUSD, 0.000361615*66120) || etc.Source != "whattomine" {
		t.Errorf("etc = %+v, want WhatToMine BTC price × CoinGecko BTC/USD", etc)
	}
	if h := c.Health(); !h.OK {
		t.Errorf("health after a fetch: %+v", h)
	}

	// The market moves within the hold-back factor: the next refresh shows it.
	m.setWTM("EthereumClassic", "exchange_rate", 0.0005)
	m.setWTM("Ravencoin", "block_time", "not-a-number")
	clock.Advance(6 * time.Minute)
	s, err = c.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !near(s.Coins["etc"].PriceUSD, 0.0005*66120) {
		t.Errorf("etc price %g after the market moved, want %g", s.Coins["etc"].PriceUSD, 0.0005*66120)
	}
	if len(s.Dropped) != 1 || s.Dropped[0].Tag != "rvn" || s.Dropped[0].Reason != "block_time is not a number" {
		t.Errorf("dropped = %+v, want rvn with a reason", s.Dropped)
	}
	if _, ok := s.Coins["rvn"]; !ok {
		t.Error("rvn's last good values should stay while they are recent")
	}
}

func TestCacheSourceFailureKeepsLastGood(t *testing.T) {
	m, srv, client := newMarket(t)
	clock := testsupport.NewClock(t0)
	c := newTestCache(t, Config{Sources: sources(srv, client), Now: clock.Now})
	good, err := c.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m.fail(http.StatusServiceUnavailable)
	clock.Advance(10 * time.Minute)
	_, err = c.Refresh(context.Background())
	if err == nil || !errors.Is(err, ErrHTTPStatus) {
		t.Fatalf("refresh against a failing site: err = %v, want ErrHTTPStatus", err)
	}
	if s := c.Get(); !s.Fetched.Equal(good.Fetched) || len(s.Coins) != len(good.Coins) {
		t.Fatalf("last good snapshot replaced: fetched %v coins %d", s.Fetched, len(s.Coins))
	}
	h := c.Health()
	if !h.OK || !strings.Contains(h.LastError, "503") {
		t.Errorf("health 10 min into an outage = %+v, want OK with the error noted", h)
	}
	clock.Advance(2 * time.Hour)
	h = c.Health()
	if h.OK || !strings.Contains(h.Reason, "503") {
		t.Errorf("health past max staleness = %+v, want a pause naming the failure", h)
	}
}

func TestCacheRestartFromBolt(t *testing.T) {
	_, srv, client := newMarket(t)
	path := filepath.Join(t.TempDir(), "quarry.db")
	clock := testsupport.NewClock(t0)

	db := openDB(t, path)
	c := newTestCache(t, Config{Sources: sources(srv, client), Now: clock.Now, DB: db, Bucket: "market"})
	want, err := c.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, path)
	defer db.Close()
	c2 := newTestCache(t, Config{Now: clock.Now, DB: db, Bucket: "market"})
	got := c2.Get()
	if got.Origin != OriginBolt || !got.Fetched.Equal(want.Fetched) || len(got.Coins) != len(want.Coins) {
		t.Fatalf("after restart: origin %s fetched %v coins %d; want bbolt copy of %v with %d", got.Origin, got.Fetched, len(got.Coins), want.Fetched, len(want.Coins))
	}
	if got.Coins["xmr"] != want.Coins["xmr"] {
		t.Errorf("xmr after restart %+v, want %+v", got.Coins["xmr"], want.Coins["xmr"])
	}
	if h := c2.Health(); !h.OK {
		t.Errorf("restored recent snapshot should allow switching: %+v", h)
	}
}

func TestCacheCorruptBoltFallsBackToEmbedded(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "quarry.db"))
	defer db.Close()
	err := db.Update(func(tx *store.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("market"))
		if err != nil {
			return err
		}
		return b.Put(boltKey, []byte(`{"coins":{"etc":{"tag":"etc","difficulty":"NaN"`))
	})
	if err != nil {
		t.Fatal(err)
	}
	c := newTestCache(t, Config{DB: db, Bucket: "market"})
	if o := c.Get().Origin; o != OriginEmbedded {
		t.Fatalf("origin %q, want embedded after an unreadable persisted snapshot", o)
	}
}

func TestCacheRunRefreshesInBackground(t *testing.T) {
	m, srv, client := newMarket(t)
	c := newTestCache(t, Config{Sources: sources(srv, client), TTL: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	}()

	waitFor(t, func() bool { return c.Get().Origin == OriginFetch })
	m.setWTM("Monero", "exchange_rate", 0.003)
	waitFor(t, func() bool { return near(c.Get().Coins["xmr"].PriceUSD, 0.003*66120) })
}

func TestCacheConfigErrors(t *testing.T) {
	src := &mutableSource{name: "a"}
	for name, cfg := range map[string]Config{
		"duplicate":   {Sources: []Source{src, src}},
		"nil source":  {Sources: []Source{nil}},
		"factor":      {JumpFactor: 0.5},
		"bucket":      {DB: store.NewDB(&bbolt.DB{})},
		"neg confirm": {ConfirmFetches: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted a bad config", name)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, "the cache to settle", 10*time.Second, cond)
}

func TestSnapshotStale(t *testing.T) {
	s := Snapshot{Fetched: t0}
	for _, tt := range []struct {
		at   time.Duration
		want bool
	}{{0, false}, {time.Hour, false}, {2 * time.Hour, false}, {2*time.Hour + time.Second, true}} {
		if got := s.Stale(t0.Add(tt.at)); got != tt.want {
			t.Errorf("Stale at +%v = %v, want %v", tt.at, got, tt.want)
		}
	}
	if !(Snapshot{}).Stale(t0) {
		t.Error("zero snapshot must be stale")
	}
}

func TestCacheGetTriggersRevalidation(t *testing.T) {
	m, srv, client := newMarket(t)
	clock := testsupport.NewClock(t0)
	// A TTL of an hour on a fake clock: the Run timer cannot fire during the
	// test, so only Get's request can cause the second fetch.
	c := newTestCache(t, Config{Sources: sources(srv, client), Now: clock.Now, TTL: time.Hour})
	if _, err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	m.setWTM("Monero", "exchange_rate", 0.003)
	clock.Advance(61 * time.Minute)
	old := c.Get() // returns at once with the old snapshot and asks for a refresh
	if !old.Fetched.Equal(t0) {
		t.Fatalf("Get returned %v, want the existing snapshot from %v", old.Fetched, t0)
	}
	waitFor(t, func() bool { return c.Get().Fetched.Equal(clock.Now()) })
	if p := c.Get().Coins["xmr"].PriceUSD; !near(p, 0.003*66120) {
		t.Errorf("xmr price %g after revalidation", p)
	}
}

// hangingSource stands for a site that accepts the connection and never answers.
type hangingSource struct{}

func (hangingSource) Name() string { return "hanging" }
func (hangingSource) Fetch(ctx context.Context) ([]Coin, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestCacheSourceTimeout(t *testing.T) {
	src := &mutableSource{name: "ok"}
	src.set(goodCoin())
	c := newTestCache(t, Config{Sources: []Source{hangingSource{}, src}, SourceTimeout: 50 * time.Millisecond, Now: testsupport.NewClock(t0).Now})
	s, err := c.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Sources) != 2 || s.Sources[0].OK || !strings.Contains(s.Sources[0].Error, "deadline") || !s.Sources[1].OK {
		t.Fatalf("sources = %+v, want the hanging one timed out and the other OK", s.Sources)
	}
	if _, ok := s.Coins["etc"]; !ok {
		t.Error("a slow source must not hold back the others")
	}
}
