package market

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOfflineSourcesSwitchOnBuiltInDataMarkedOffline(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	live := filepath.Join(t.TempDir(), "live.json")
	doc := `{"format": "quarry-market/v1", "fetched": "2030-01-01T00:00:00Z", "coins": [{"tag": "etc", "algorithm": "etchash",
	  "block_time": 13, "block_reward": 2.5, "difficulty": 2e15, "price_usd": 20}]}`
	if err := os.WriteFile(live, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		sources []Source
		origin  string
	}{
		{"offline", []Source{&Offline{Now: clock}}, OriginOffline},
		{"demo", []Source{&Offline{Label: "demo", Swing: 0.4, Period: time.Minute, Now: clock}}, OriginOffline},
		// A live source beside it makes the data live again.
		{"with a live source", []Source{&Offline{Now: clock}, &File{Path: live, Label: "live"}}, OriginFetch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{Sources: tc.sources, Now: clock, ConfirmFetches: 1})
			if err != nil {
				t.Fatal(err)
			}
			if h := c.Health(); h.OK {
				t.Fatalf("health %+v before any fetch: the built-in snapshot alone must pause switching", h)
			}
			if _, err := c.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			h := c.Health()
			if h.LastError != "" {
				t.Fatalf("a source failed: %s", h.LastError)
			}
			if !h.OK || h.Origin != tc.origin || h.Offline != (tc.origin == OriginOffline) {
				t.Fatalf("health %+v, want ok with origin %s", h, tc.origin)
			}
		})
	}
}

func TestDemoPricesMoveOnTheClock(t *testing.T) {
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &Offline{Swing: 0.4, Period: 4 * time.Minute, Now: func() time.Time { return at }}
	base, err := DefaultSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	prices := func() map[string]float64 {
		coins, err := src.Fetch(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, c := range coins {
			if r := Validate(c); r != "" {
				t.Fatalf("demo coin %s invalid: %s", c.Tag, r)
			}
			out[c.Tag] = c.PriceUSD
		}
		return out
	}
	first := prices()
	at = at.Add(time.Minute)
	second := prices()
	moved := 0
	for tag, p := range first {
		b := base.Coins[tag].PriceUSD
		if p < b*0.59 || p > b*1.41 {
			t.Errorf("%s at %v: outside ±40%% of %v", tag, p, b)
		}
		if second[tag] != p {
			moved++
		}
	}
	if moved < len(first)/2 {
		t.Fatalf("only %d of %d prices moved in a quarter period", moved, len(first))
	}
}
