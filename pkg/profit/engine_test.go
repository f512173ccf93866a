package profit

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// synthFleet builds nAlg algorithms with optsPerAlg options each, a coin
// per option, and rigs able to mine every algorithm, with figures spread
// like a real market (revenue per hash over orders of magnitude, fees
// 0-3 %, rigs at two sites with different tariffs).
func synthFleet(tb testing.TB, seed uint64, nRigs, nAlg, optsPerAlg int, withRules bool) (*Engine, *Quote, *Fleet) {
	tb.Helper()
	rnd := rand.New(rand.NewPCG(seed, 1))
	var opts []Option
	var coins []Coin
	for a := range nAlg {
		alg := fmt.Sprintf("alg%d", a)
		for i := range optsPerAlg {
			tag := fmt.Sprintf("c%d_%d", a, i/3)
			if i%3 == 0 {
				coins = append(coins, Coin{Tag: tag, Algorithm: alg, BlockTime: 10 + rnd.Float64()*100, BlockReward: 1 + rnd.Float64()*10,
					NetHash: math.Pow(10, 9+rnd.Float64()*5), PriceUSD: 1 + rnd.Float64()*100})
			}
			opts = append(opts, Option{Coin: tag, Algorithm: alg, Pool: fmt.Sprintf("pool%d", i%3), PoolFee: float64(i%3) * 0.01, Miner: "m", MinerFee: rnd.Float64() * 0.02})
		}
	}
	e, err := NewEngine(opts)
	if err != nil {
		tb.Fatal(err)
	}
	sites := []Site{{Name: "cheap", Tariff: FlatTariff(0.05)}, {Name: "tou", Tariff: Tariff{Default: 0.2, Rules: []TariffRule{{From: 22, To: 6, Price: 0.08}}}}}
	rigs := make([]Rig, nRigs)
	for r := range rigs {
		rigs[r] = Rig{ID: fmt.Sprintf("rig-%d", r), Site: sites[r%2].Name}
		for a := range nAlg {
			rigs[r].Perf = append(rigs[r].Perf, Perf{Algorithm: fmt.Sprintf("alg%d", a), Hashrate: math.Pow(10, 6+rnd.Float64()*3), Power: 100 + rnd.Float64()*900})
		}
		if withRules && r%7 == 0 {
			rigs[r].Rules = Rules{ExcludePools: []string{"pool1"}, ExcludeAlgorithms: []string{"alg0"}}
		}
	}
	f, err := e.NewFleet(rigs, sites)
	if err != nil {
		tb.Fatal(err)
	}
	return e, e.Quote(coins), f
}

// The ranking must equal scoring every allowed option one by one and
// sorting, for every rig, whatever the number of workers.
func TestRankMatchesBruteForce(t *testing.T) {
	e, q, f := synthFleet(t, 7, 3000, 6, 12, true)
	now := time.Date(2024, 3, 4, 23, 0, 0, 0, time.UTC)
	for _, workers := range []int{1, 2, 5} {
		rk := NewRanking(f, 4)
		if err := q.Rank(context.Background(), f, now, workers, rk); err != nil {
			t.Fatal(err)
		}
		for r := range f.Len() {
			var all []Scored
			for i := range e.Len() {
				if ok, _ := f.Allowed(r, i); ok {
					all = append(all, q.Score(f, r, i, now))
				}
			}
			slices.SortFunc(all, func(a, b Scored) int { return -cmpF(a.Profit, b.Profit) })
			got := rk.Rig(r)
			if len(got) != 4 {
				t.Fatalf("rig %d: %d ranked, want 4", r, len(got))
			}
			for k := range got {
				if got[k].Option != all[k].Option || !near(got[k].Profit, all[k].Profit) {
					t.Fatalf("workers %d rig %d rank %d: got %+v want %+v", workers, r, k, got[k], all[k])
				}
				if ok, why := f.Allowed(r, int(got[k].Option)); !ok {
					t.Fatalf("rig %d ranked a blocked option: %s", r, why)
				}
			}
		}
	}
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestRankUsesTariffHour(t *testing.T) {
	e, err := NewEngine([]Option{{Coin: "etc", Algorithm: "ethash"}})
	if err != nil {
		t.Fatal(err)
	}
	coins := []Coin{{Tag: "etc", Algorithm: "ethash", BlockTime: 15, BlockReward: 2, NetHash: 1.5e14, PriceUSD: 200}}
	sites := []Site{{Name: "home", Tariff: Tariff{Default: 0.30, Rules: []TariffRule{{From: 0, To: 6, Price: 0.05}}}}}
	f, err := e.NewFleet([]Rig{{ID: "r1", Site: "home", Perf: []Perf{{Algorithm: "ethash", Hashrate: 30e6, Power: 100}}}}, sites)
	if err != nil {
		t.Fatal(err)
	}
	q := e.Quote(coins)
	rk := NewRanking(f, 1)
	for _, tc := range []struct {
		hour int
		cost float64
	}{{3, 100 * 24 / 1000.0 * 0.05}, {12, 100 * 24 / 1000.0 * 0.30}} {
		if err := q.Rank(context.Background(), f, time.Date(2024, 1, 1, tc.hour, 0, 0, 0, time.UTC), 1, rk); err != nil {
			t.Fatal(err)
		}
		b := rk.Best(0)
		if !near(b.Cost, tc.cost) || !near(b.Profit, 0.4608-tc.cost) {
			t.Fatalf("hour %d: best %+v, want cost %v profit %v", tc.hour, b, tc.cost, 0.4608-tc.cost)
		}
	}
}

func TestQuoteLeavesBadCoinsUnpriced(t *testing.T) {
	e, err := NewEngine([]Option{{Coin: "etc", Algorithm: "ethash"}, {Coin: "xmr", Algorithm: "randomx"}, {Coin: "rvn", Algorithm: "kawpow"}})
	if err != nil {
		t.Fatal(err)
	}
	q := e.Quote([]Coin{
		{Tag: "etc", Algorithm: "ethash", BlockTime: 15, BlockReward: 2, NetHash: 0, PriceUSD: 5}, // broken
		{Tag: "xmr", Algorithm: "cryptonight", BlockTime: 120, BlockReward: 2, NetHash: 1e9},      // wrong algorithm
	})
	if len(q.Unpriced) != 3 {
		t.Fatalf("unpriced = %+v, want all three options", q.Unpriced)
	}
	f, err := e.NewFleet([]Rig{{ID: "r", Site: "s", Perf: []Perf{{Algorithm: "ethash", Hashrate: 1e8, Power: 1}}}}, []Site{{Name: "s"}})
	if err != nil {
		t.Fatal(err)
	}
	rk := NewRanking(f, 3)
	if err := q.Rank(context.Background(), f, time.Now(), 1, rk); err != nil {
		t.Fatal(err)
	}
	if b := rk.Best(0); b.Option != Off {
		t.Fatalf("best = %+v, want Off when nothing is priced", b)
	}
}

func TestNewFleetRejectsBadInput(t *testing.T) {
	e, err := NewEngine([]Option{{Coin: "etc", Algorithm: "ethash"}})
	if err != nil {
		t.Fatal(err)
	}
	sites := []Site{{Name: "s", Tariff: FlatTariff(0.1)}}
	tests := []struct {
		name string
		rigs []Rig
	}{
		{"unknown site", []Rig{{ID: "a", Site: "nowhere"}}},
		{"duplicate id", []Rig{{ID: "a", Site: "s"}, {ID: "a", Site: "s"}}},
		{"empty id", []Rig{{Site: "s"}}},
		{"negative hashrate", []Rig{{ID: "a", Site: "s", Perf: []Perf{{Algorithm: "ethash", Hashrate: -1}}}}},
		{"nan power", []Rig{{ID: "a", Site: "s", Perf: []Perf{{Algorithm: "ethash", Hashrate: 1, Power: math.NaN()}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.NewFleet(tt.rigs, sites); err == nil {
				t.Fatal("NewFleet accepted bad input")
			}
		})
	}
	if _, err := NewEngine(nil); err == nil {
		t.Fatal("NewEngine accepted no options")
	}
	if _, err := NewEngine([]Option{{Coin: "x", Algorithm: "a", PoolFee: 1.5}}); err == nil {
		t.Fatal("NewEngine accepted a 150 % fee")
	}
}

func TestRankCancelled(t *testing.T) {
	_, q, f := synthFleet(t, 1, 5000, 2, 3, false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := q.Rank(ctx, f, time.Now(), 2, NewRanking(f, 1)); err == nil {
		t.Fatal("Rank on a cancelled context returned nil")
	}
}

func TestBorrowedProfile(t *testing.T) {
	e, _ := NewEngine([]Option{{Coin: "etc", Algorithm: "ethash"}})
	f, err := e.NewFleet([]Rig{{ID: "a", Site: "s", Perf: []Perf{{Algorithm: "ethash", Hashrate: 1, Power: 1, BorrowedFrom: "6xRTX3070"}}}}, []Site{{Name: "s"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.BorrowedFrom(0, 0); got != "6xRTX3070" {
		t.Fatalf("BorrowedFrom = %q", got)
	}
}

// BenchmarkRank ranks 100,000 rigs against 300 options (10 algorithms of
// 30 options), keeping each rig's top 3.
func BenchmarkRank(b *testing.B) {
	const rigs, algs, per = 100_000, 10, 30
	_, q, f := synthFleet(b, 3, rigs, algs, per, true)
	rk := NewRanking(f, 3)
	now := time.Date(2024, 3, 4, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := q.Rank(ctx, f, now, 0, rk); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(rigs*algs*per), "ns/rig-option")
}
