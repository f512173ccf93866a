package market

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/testsupport"
)

func goodCoin() Coin {
	return Coin{Tag: "etc", Name: "Ethereum Classic", Algorithm: "etchash", BlockTime: 13.1, BlockReward: 2.56,
		Difficulty: 2.295e15, NetHash: 1.752e14, PriceUSD: 23.91, Source: "test", UpdatedAt: t0}
}

func TestValidateDropsBadValues(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name string
		edit func(*Coin)
		want string
	}{
		{"good", func(*Coin) {}, ""},
		{"no tag", func(c *Coin) { c.Tag = "" }, "missing tag"},
		{"no algorithm", func(c *Coin) { c.Algorithm = "" }, "missing algorithm"},
		{"difficulty missing", func(c *Coin) { c.Difficulty = 0 }, "difficulty is missing or zero"},
		{"difficulty NaN", func(c *Coin) { c.Difficulty = nan }, "difficulty is not a number"},
		{"difficulty negative", func(c *Coin) { c.Difficulty = -5 }, "difficulty is negative (-5)"},
		{"nethash Inf", func(c *Coin) { c.NetHash = inf }, "nethash is infinite"},
		{"nethash -Inf", func(c *Coin) { c.NetHash = math.Inf(-1) }, "nethash is infinite"},
		{"nethash zero", func(c *Coin) { c.NetHash = 0 }, "nethash is missing or zero"},
		{"reward negative", func(c *Coin) { c.BlockReward = -2.56 }, "block_reward is negative (-2.56)"},
		{"reward NaN", func(c *Coin) { c.BlockReward = nan }, "block_reward is not a number"},
		{"block time zero", func(c *Coin) { c.BlockTime = 0 }, "block_time is missing or zero"},
		{"block time Inf", func(c *Coin) { c.BlockTime = inf }, "block_time is infinite"},
		{"price missing", func(c *Coin) { c.PriceUSD = 0 }, "price_usd is missing or zero"},
		{"price NaN", func(c *Coin) { c.PriceUSD = nan }, "price_usd is not a number"},
		{"price negative", func(c *Coin) { c.PriceUSD = -1 }, "price_usd is negative (-1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := goodCoin()
			tt.edit(&c)
			if got := Validate(c); got != tt.want {
				t.Fatalf("Validate = %q, want %q", got, tt.want)
			}
		})
	}
}

// staticSource replays fixed coins; the cache tests use real HTTP instead.
type staticSource struct {
	name  string
	roles Role
	coins []Coin
}

func (s staticSource) Name() string                            { return s.name }
func (s staticSource) Roles() Role                             { return s.roles }
func (s staticSource) Fetch(_ context.Context) ([]Coin, error) { return s.coins, nil }

func TestBuildDropsWithReasonAndKeepsTheRest(t *testing.T) {
	bad := goodCoin()
	bad.Tag, bad.Difficulty = "bad", math.NaN()
	neg := goodCoin()
	neg.Tag, neg.PriceUSD = "neg", -3
	c := newTestCache(t, Config{Sources: []Source{staticSource{"s", RoleChain | RolePrice, []Coin{goodCoin(), bad, neg}}}})
	s, err := c.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Coins["etc"]; !ok || len(s.Coins) != 1 {
		t.Fatalf("coins = %v, want only etc", s.Coins)
	}
	want := map[string]string{"bad": "difficulty is not a number", "neg": "price_usd is negative (-3)"}
	if len(s.Dropped) != len(want) {
		t.Fatalf("dropped = %+v", s.Dropped)
	}
	for _, d := range s.Dropped {
		if want[d.Tag] != d.Reason || d.Source != "s" {
			t.Errorf("dropped %+v, want reason %q from s", d, want[d.Tag])
		}
	}
}

func TestMergePrecedence(t *testing.T) {
	wtm := goodCoin()
	wtm.PriceUSD, wtm.PriceBTC, wtm.Source = 0, 0.0004, "wtm"
	ms := goodCoin()
	ms.Difficulty, ms.NetHash, ms.BlockTime, ms.PriceUSD, ms.Source = 9e15, 7e14, 0, 25, "ms"
	cg := Coin{Tag: "etc", PriceUSD: 24, Source: "cg"}
	btc := Coin{Tag: "btc", PriceUSD: 60000, Source: "cg"}
	onlyPrice := Coin{Tag: "dero", PriceUSD: 1, Source: "cg"}
	noChainPrice := goodCoin()
	noChainPrice.Tag, noChainPrice.PriceUSD, noChainPrice.PriceBTC, noChainPrice.NetHash = "rvn", 0, 5e-7, 0

	tests := []struct {
		name      string
		results   []sourceResult
		wantPrice float64
		wantDiff  float64
		wantSrc   string
	}{
		{"price source wins", []sourceResult{
			{name: "wtm", roles: RoleChain | RolePrice, coins: []Coin{wtm}},
			{name: "ms", roles: RoleChain | RolePrice, coins: []Coin{ms}},
			{name: "cg", roles: RolePrice, coins: []Coin{cg, btc, onlyPrice}},
		}, 24, wtm.Difficulty, "wtm+cg"},
		{"usd of combined source before btc conversion", []sourceResult{
			{name: "wtm", roles: RoleChain | RolePrice, coins: []Coin{wtm}},
			{name: "ms", roles: RoleChain | RolePrice, coins: []Coin{ms}},
			{name: "cg", roles: RolePrice, coins: []Coin{btc}},
		}, 25, wtm.Difficulty, "wtm+ms"},
		{"btc conversion last", []sourceResult{
			{name: "wtm", roles: RoleChain | RolePrice, coins: []Coin{wtm}},
			{name: "cg", roles: RolePrice, coins: []Coin{btc}},
		}, 0.0004 * 60000, wtm.Difficulty, "wtm+wtm"},
		{"failed source ignored", []sourceResult{
			{name: "wtm", roles: RoleChain | RolePrice, err: context.DeadlineExceeded, coins: []Coin{wtm}},
			{name: "ms", roles: RoleChain | RolePrice, coins: []Coin{ms}},
		}, 25, 9e15, "ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := merge(tt.results)
			if len(got) != 1 {
				t.Fatalf("merge = %+v, want one coin (price-only coins left out)", got)
			}
			c := got[0]
			if !near(c.PriceUSD, tt.wantPrice) || c.Difficulty != tt.wantDiff {
				t.Errorf("price %g diff %g, want %g %g", c.PriceUSD, c.Difficulty, tt.wantPrice, tt.wantDiff)
			}
			if tt.wantSrc != "wtm+wtm" && c.Source != tt.wantSrc {
				t.Errorf("source %q, want %q", c.Source, tt.wantSrc)
			}
		})
	}

	// A chain source lacking a block time is completed by a later one, and
	// the missing nethash is derived.
	got := merge([]sourceResult{
		{name: "ms", roles: RoleChain | RolePrice, coins: []Coin{ms}},
		{name: "wtm", roles: RoleChain | RolePrice, coins: []Coin{wtm, noChainPrice}},
		{name: "cg", roles: RolePrice, coins: []Coin{btc}},
	})
	m := byTag(got)
	if m["etc"].BlockTime != 13.1 || m["etc"].Difficulty != 9e15 {
		t.Errorf("etc = %+v, want ms chain facts with wtm's block time", m["etc"])
	}
	if r := m["rvn"]; !near(r.NetHash, r.Difficulty/r.BlockTime) || !near(r.PriceUSD, 0.03) {
		t.Errorf("rvn = %+v, want derived nethash and BTC-converted price", r)
	}
}

func TestJumpHoldBack(t *testing.T) {
	at := func(price, diff float64) Coin {
		c := goodCoin()
		c.PriceUSD, c.Difficulty = price, diff
		c.NetHash = diff / c.BlockTime
		return c
	}
	src := &mutableSource{name: "s"}
	clock := testsupport.NewClock(t0)
	c := newTestCache(t, Config{Sources: []Source{src}, Now: clock.Now})
	steps := []struct {
		in        Coin
		wantPrice float64
		wantDiff  float64
		wantHeld  []string
	}{
		{at(20, 2e15), 20, 2e15, nil},                          // baseline
		{at(25, 2.5e15), 25, 2.5e15, nil},                      // normal moves pass
		{at(100, 2.5e15), 25, 2.5e15, []string{"price_usd"}},   // 4× jump held
		{at(26, 2.5e15), 26, 2.5e15, nil},                      // glitch gone: pending cleared
		{at(100, 2.5e15), 26, 2.5e15, []string{"price_usd"}},   // jump again: seen 1
		{at(105, 9e15), 105, 2.5e15, []string{"difficulty"}},   // price confirmed; difficulty jump held
		{at(104, 9.1e15), 104, 9.1e15, nil},                    // difficulty confirmed
		{at(104, 0.5e15), 104, 9.1e15, []string{"difficulty"}}, // drop beyond 1/3 also held
	}
	for i, st := range steps {
		clock.Advance(time.Minute)
		src.set(st.in)
		s, err := c.Refresh(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := s.Coins["etc"]
		if got.PriceUSD != st.wantPrice || got.Difficulty != st.wantDiff {
			t.Errorf("step %d: price %g diff %g, want %g %g", i, got.PriceUSD, got.Difficulty, st.wantPrice, st.wantDiff)
		}
		if st.wantDiff != st.in.Difficulty && got.NetHash != st.wantDiff/got.BlockTime {
			t.Errorf("step %d: nethash %g not held with difficulty", i, got.NetHash)
		}
		var held []string
		for _, h := range s.Held {
			held = append(held, h.Field)
			if h.Required != 2 || h.Seen != 1 {
				t.Errorf("step %d: held %+v, want seen 1 of 2", i, h)
			}
		}
		if fmt.Sprint(held) != fmt.Sprint(st.wantHeld) {
			t.Errorf("step %d: held %v, want %v", i, held, st.wantHeld)
		}
	}
}

func TestJumpNotHeldAgainstStaleBaseline(t *testing.T) {
	clock := testsupport.NewClock(t0)
	src := &mutableSource{name: "s"}
	c := newTestCache(t, Config{Sources: []Source{src}, Now: clock.Now})
	a := goodCoin()
	src.set(a)
	if _, err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(3 * time.Hour) // outage longer than MaxStaleness
	a.PriceUSD *= 10
	a.UpdatedAt = clock.Now()
	src.set(a)
	s, err := c.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Coins["etc"].PriceUSD != a.PriceUSD || len(s.Held) != 0 {
		t.Fatalf("price %g held %v: a move across an outage must not be held", s.Coins["etc"].PriceUSD, s.Held)
	}
}
