package profit

import (
	"errors"
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestCoinsPerDay(t *testing.T) {
	tests := []struct {
		name string
		coin Coin
		h    float64
		want float64
	}{
		{
			// 30 MH/s is 2e-7 of 150 TH/s; 86400/15 = 5760 blocks of 2 coins.
			name: "nethash based",
			coin: Coin{Tag: "eth", BlockTime: 15, BlockReward: 2, NetHash: 1.5e14, PriceUSD: 200},
			h:    30e6, want: 2e-7 * 5760 * 2,
		},
		{
			// 100 TH/s × 86400 s × 6.25 / (1e13 × 2^32) = 0.0012572854757...
			name: "bitcoin style",
			coin: Coin{Tag: "btc", Kind: Difficulty, BlockReward: 6.25, Difficulty: 1e13, PriceUSD: 1},
			h:    1e14, want: 0.001257285475730896,
		},
		{
			// Cuckatoo31: 2 graphs/s × 86400 × 60 GRIN × 7936 / (42 × 2e9).
			name: "grin difficulty with graph weight",
			coin: Coin{Tag: "grin", Kind: Difficulty, BlockReward: 60, Difficulty: 2e9, HashesPerDifficulty: 42.0 / 7936, PriceUSD: 1},
			h:    2, want: 0.9795291428571429,
		},
		{
			name: "invalid figures earn nothing",
			coin: Coin{Tag: "bad", BlockTime: 15, BlockReward: 2, NetHash: 0},
			h:    30e6, want: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.coin.CoinsPerDay(tt.h); !near(got, tt.want) {
				t.Fatalf("CoinsPerDay(%v) = %.15g, want %.15g", tt.h, got, tt.want)
			}
		})
	}
}

// A Bitcoin-style coin's network hash rate is difficulty × 2^32 / block
// time, so both formulas must agree on the same chain.
func TestDifficultyAndNetHashAgree(t *testing.T) {
	const diff, bt = 2.5e13, 600.0
	byDiff := Coin{Tag: "x", Kind: Difficulty, BlockReward: 6.25, Difficulty: diff}
	byHash := Coin{Tag: "x", BlockTime: bt, BlockReward: 6.25, NetHash: diff * BitcoinHashesPerDifficulty / bt}
	if a, b := byDiff.CoinsPerHashDay(), byHash.CoinsPerHashDay(); !near(a, b) {
		t.Fatalf("difficulty form %g != nethash form %g", a, b)
	}
}

func TestEvaluate(t *testing.T) {
	c := Coin{Tag: "eth", Algorithm: "ethash", BlockTime: 15, BlockReward: 2, NetHash: 1.5e14, PriceUSD: 200}
	o := Option{Coin: "eth", Algorithm: "ethash", PoolFee: 0.01}
	f := Evaluate(c, o, 30e6, 720, 0.25)
	// 0.002304 ETH × $200 × 0.99 = $0.456192; 720 W × 24 h = 17.28 kWh × $0.25 = $4.32.
	want := Figures{CoinsPerDay: 0.002304, Revenue: 0.456192, PowerCost: 4.32, Profit: 0.456192 - 4.32}
	if !near(f.CoinsPerDay, want.CoinsPerDay) || !near(f.Revenue, want.Revenue) || !near(f.PowerCost, want.PowerCost) || !near(f.Profit, want.Profit) {
		t.Fatalf("Evaluate = %+v, want %+v", f, want)
	}
}

func TestCoinValidate(t *testing.T) {
	tests := []struct {
		name string
		coin Coin
		ok   bool
	}{
		{"good nethash", Coin{Tag: "a", BlockTime: 1, BlockReward: 1, NetHash: 1}, true},
		{"good difficulty", Coin{Tag: "a", Kind: Difficulty, BlockReward: 1, Difficulty: 1}, true},
		{"no tag", Coin{BlockTime: 1, BlockReward: 1, NetHash: 1}, false},
		{"nan reward", Coin{Tag: "a", BlockTime: 1, BlockReward: math.NaN(), NetHash: 1}, false},
		{"negative price", Coin{Tag: "a", BlockTime: 1, BlockReward: 1, NetHash: 1, PriceUSD: -1}, false},
		{"zero block time", Coin{Tag: "a", BlockReward: 1, NetHash: 1}, false},
		{"inf difficulty", Coin{Tag: "a", Kind: Difficulty, BlockReward: 1, Difficulty: math.Inf(1)}, false},
		{"unknown kind", Coin{Tag: "a", Kind: 7, BlockReward: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.coin.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadCoin) {
				t.Fatalf("error %v does not wrap ErrBadCoin", err)
			}
		})
	}
}

func TestTariff(t *testing.T) {
	weekdays := []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}
	tf := Tariff{
		Default: 0.15,
		Rules: []TariffRule{
			{Days: weekdays, From: 17, To: 21, Price: 0.30}, // peak
			{From: 22, To: 6, Price: 0.08},                  // every night, crossing midnight
		},
	}
	if err := tf.Validate(); err != nil {
		t.Fatal(err)
	}
	// 2024-01-01 is a Monday.
	at := func(day, hour int) time.Time { return time.Date(2024, 1, day, hour, 30, 0, 0, time.UTC) }
	tests := []struct {
		name string
		t    time.Time
		want float64
	}{
		{"monday morning default", at(1, 9), 0.15},
		{"monday peak", at(1, 17), 0.30},
		{"monday last peak hour", at(1, 20), 0.30},
		{"monday 21h default", at(1, 21), 0.15},
		{"monday night", at(1, 23), 0.08},
		{"tuesday 3am is monday's night", at(2, 3), 0.08},
		{"tuesday 6am default", at(2, 6), 0.15},
		{"saturday 18h no peak", at(6, 18), 0.15},
		{"sunday night", at(7, 22), 0.08},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tf.Price(tt.t); got != tt.want {
				t.Fatalf("Price(%v) = %v, want %v", tt.t, got, tt.want)
			}
		})
	}
	w := tf.Table()
	// Monday: 8 night hours (0-6 from Sunday's window, 22-24), 4 peak, 12 default.
	if got, want := w.DayAverage(time.Monday), (8*0.08+4*0.30+12*0.15)/24; !near(got, want) {
		t.Fatalf("DayAverage(Monday) = %v, want %v", got, want)
	}
}

func TestTariffLocation(t *testing.T) {
	// A fixed zone avoids reading the tz database.
	east := time.FixedZone("UTC+3", 3*3600)
	tf := Tariff{Default: 0.1, Rules: []TariffRule{{From: 0, To: 6, Price: 0.05}}, Location: east}
	if got := tf.Price(time.Date(2024, 1, 1, 22, 0, 0, 0, time.UTC)); got != 0.05 {
		t.Fatalf("22:00 UTC is 01:00 at the site, want night price 0.05, got %v", got)
	}
	if got := tf.Price(time.Date(2024, 1, 1, 4, 0, 0, 0, time.UTC)); got != 0.1 {
		t.Fatalf("04:00 UTC is 07:00 at the site, want 0.1, got %v", got)
	}
}

func TestTariffValidate(t *testing.T) {
	bad := []Tariff{
		{Default: -1},
		{Default: 0.1, Rules: []TariffRule{{From: 5, To: 5, Price: 1}}},
		{Default: 0.1, Rules: []TariffRule{{From: 24, To: 2, Price: 1}}},
		{Default: 0.1, Rules: []TariffRule{{From: 1, To: 2, Price: math.Inf(1)}}},
		{Default: 0.1, Rules: []TariffRule{{Days: []time.Weekday{9}, From: 1, To: 2}}},
	}
	for i, tf := range bad {
		if err := tf.Validate(); err == nil {
			t.Errorf("tariff %d: Validate accepted %+v", i, tf)
		}
	}
}
