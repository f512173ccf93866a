package backtest

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/profit"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// The synthetic market pays 1 coin per H/s per day, so a 1 H/s rig earns
// the price; 1000 W at $0.25/kWh costs $6/day. Realised profit per day:
//
//	day        1    2    3    4
//	coin a     4   -2    4    4
//	coin b    -1   -1    6    6
//
// With switches costing 10 % of the new option's day (2.4 h downtime):
//   - oracle: a (4-0.4), off, b (6-0.6), b (6) = 15.0, 3 switches, 1 day off
//   - greedy (sees yesterday): a 3.6, a -2, off 0, b 5.4 = 7.0, 3 switches
//   - best single: b all along, -1-1+6+6 = 10.0 (starting it costs 0
//     because its first day loses money)
//   - policy: same path as greedy here (a's 4 clears the resume margin,
//     day 2's losses trigger curtailment a day late), 7.0; it loses $2
//     on the day the oracle is off.
func TestSyntheticKnownAnswer(t *testing.T) {
	h, err := LoadFile("testdata/synthetic.csv")
	if err != nil {
		t.Fatal(err)
	}
	rig := RigProfile{Name: "r", ElectricityUSD: 0.25, Algorithms: map[string]AlgoPerf{"ethash": {Hashrate: 1, Power: 1000}}}
	pol := profit.DefaultPolicy()
	pol.SwitchDowntime = 144 * time.Minute
	var calls []int
	rep, err := Run(context.Background(), h, []RigProfile{rig, {Name: "r2", ElectricityUSD: 0.25, Algorithms: rig.Algorithms}}, pol, func(done, total int) {
		calls = append(calls, done*10+total)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || calls[0] != 12 || calls[1] != 22 {
		t.Fatalf("progress calls %v, want [12 22]", calls)
	}
	r := rep.Rigs[0]
	checks := []struct {
		name     string
		got      Strategy
		profit   float64
		switches int
		off      int
	}{
		{"oracle", r.Oracle, 15.0, 3, 1},
		{"greedy", r.Greedy, 7.0, 3, 1},
		{"best single", r.BestSingle, 10.0, 1, 0},
		{"policy", r.Policy, 7.0, 3, 1},
	}
	for _, c := range checks {
		if !near(c.got.Profit, c.profit) || c.got.Switches != c.switches || c.got.OffDays != c.off {
			t.Errorf("%s: %+v, want profit %v switches %d off days %d", c.name, c.got, c.profit, c.switches, c.off)
		}
	}
	if r.BestSingleCoin != "b" {
		t.Errorf("best single coin %q, want b", r.BestSingleCoin)
	}
	if !near(r.PolicyLossOnOracleOff, -2) {
		t.Errorf("policy loss on oracle-off days %v, want -2", r.PolicyLossOnOracleOff)
	}
	if want := []string{"a", "a", "off", "b"}; strings.Join(r.Trace, ",") != strings.Join(want, ",") {
		t.Errorf("trace %v, want %v", r.Trace, want)
	}
	if !near(rep.Total.Oracle.Profit, 30) || rep.Total.Days != 8 || !near(rep.Total.Policy.SwitchesPerDay, 6.0/8) {
		t.Errorf("total %+v", rep.Total)
	}
	if rep.From != "2024-01-02" || rep.To != "2024-01-05" || rep.Days != 4 {
		t.Errorf("window %s..%s %d days", rep.From, rep.To, rep.Days)
	}
	var text, js bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "total") || !strings.Contains(text.String(), "15.00") {
		t.Errorf("text report lacks the totals:\n%s", text.String())
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || !near(back.Rigs[0].Oracle.Profit, 15) {
		t.Fatalf("JSON round trip: %v %+v", err, back.Rigs)
	}
}

func TestLoadCSVRejectsMalformedRows(t *testing.T) {
	const head = "date,tag,algorithm,block_time_s,block_reward,difficulty,nethash_hs,price_usd\n"
	good := "2024-01-01,a,Ethash,13,2,1e15,1e14,200\n"
	tests := []struct {
		name, body, want string
	}{
		{"short header", "date,tag\n", "line 1:"},
		{"wrong header", strings.Replace(head, "nethash_hs", "hashrate", 1), "line 1: header"},
		{"bad date", head + "2024-13-01,a,Ethash,13,2,1,1,1\n", "line 2: date"},
		{"not a number", head + good + "2024-01-02,a,Ethash,x,2,1,1,1\n", "line 3: block_time_s \"x\""},
		{"negative price", head + "2024-01-01,a,Ethash,13,2,1,1,-4\n", "line 2: price_usd -4 must be positive"},
		{"empty nethash without model", head + "2024-01-01,a,Ethash,13,2,1,,4\n", "line 2: nethash_hs is empty"},
		{"wrong field count", head + "2024-01-01,a,Ethash,13\n", "line 2:"},
		{"duplicate", head + good + good, "line 3: 2024-01-01 a appears twice"},
		{"out of order", head + "2024-01-02,a,Ethash,13,2,1,1,1\n2024-01-01,b,Ethash,13,2,1,1,1\n", "line 3: date 2024-01-01 before"},
		{"empty tag", head + "2024-01-01,,Ethash,13,2,1,1,1\n", "line 2: tag and algorithm"},
		{"nan", head + "2024-01-01,a,Ethash,NaN,2,1,1,1\n", "line 2: block_time_s"},
		{"no rows", head, "no rows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := LoadCSV(strings.NewReader(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadCSV = %v, %v; want error containing %q", h, err, tt.want)
			}
		})
	}
}

func TestLoadCSVGrinFromDifficulty(t *testing.T) {
	body := "date,tag,algorithm,block_time_s,block_reward,difficulty,nethash_hs,price_usd\n" +
		"2019-06-01,grin,Cuckatoo31+/Cuckaroo29,60.33519553,60,2e9,,2\n"
	h, err := LoadCSV(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	c := h.Days[0].Coins[0]
	if c.Algorithm != "cuckatoo31" || c.Kind != profit.Difficulty {
		t.Fatalf("grin parsed as %+v", c)
	}
	// 2 graphs/s: 2 × 86400 × 60 × 7936 / (42 × 2e9) = 0.97952914... GRIN/day.
	if got := c.CoinsPerDay(2); math.Abs(got-0.9795291428571429) > 1e-12 {
		t.Fatalf("grin coins/day = %v", got)
	}
}

func TestParseRigs(t *testing.T) {
	rigs, err := LoadRigs("testdata/rigs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(rigs) != 6 || rigs[1].Algorithms["ethash"].Hashrate != 366e6 || rigs[1].ElectricityUSD != 0.25 {
		t.Fatalf("rigs.yaml parsed as %+v", rigs)
	}
	js := `{"rigs":[{"name":"cpu","electricity_usd_kwh":0.1,"pool_fee":0.01,"tariff":{"default":0.2,"rules":[{"from":22,"to":6,"price":0.05}]},"algorithms":{"randomx":{"hashrate":1e4,"power":150}}}]}`
	got, err := ParseRigs([]byte(js))
	if err != nil || got[0].Tariff == nil || got[0].Tariff.Rules[0].Price != 0.05 {
		t.Fatalf("JSON rigs: %+v %v", got, err)
	}
	bad := map[string]string{
		"misspelt key":  `rigs: [{name: a, electricity: 0.1, algorithms: {ethash: {hashrate: 1, power: 1}}}]`,
		"no algorithms": `rigs: [{name: a}]`,
		"zero hashrate": `rigs: [{name: a, algorithms: {ethash: {hashrate: 0, power: 1}}}]`,
		"fee of 100 %":  `rigs: [{name: a, pool_fee: 1, algorithms: {ethash: {hashrate: 1, power: 1}}}]`,
		"duplicate":     `rigs: [{name: a, algorithms: {x: {hashrate: 1}}}, {name: a, algorithms: {x: {hashrate: 1}}}]`,
		"empty":         ``,
	}
	for name, doc := range bad {
		if _, err := ParseRigs([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	h, err := LoadFile("testdata/synthetic.csv")
	if err != nil {
		t.Fatal(err)
	}
	rig := RigProfile{Name: "r", Algorithms: map[string]AlgoPerf{"randomx": {Hashrate: 1}}}
	if _, err := Run(context.Background(), h, []RigProfile{rig}, profit.DefaultPolicy(), nil); err == nil {
		t.Fatal("a rig that mines nothing in the history was accepted")
	}
	if _, err := Run(context.Background(), &History{Days: h.Days[:1]}, []RigProfile{rig}, profit.DefaultPolicy(), nil); err == nil {
		t.Fatal("a one-day history was accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, h, []RigProfile{rig}, profit.DefaultPolicy(), nil); err == nil {
		t.Fatal("cancelled run returned nil")
	}
}

// Whatever the bytes, LoadCSV returns a history or an error, never panics,
// and a history it returns has only valid coins.
func FuzzLoadCSV(f *testing.F) {
	f.Add("date,tag,algorithm,block_time_s,block_reward,difficulty,nethash_hs,price_usd\n2024-01-01,a,Ethash,13,2,1e15,1e14,200\n")
	f.Add("date,tag,algorithm,block_time_s,block_reward,difficulty,nethash_hs,price_usd\n2019-06-01,grin,Cuckatoo31+/Cuckaroo29,60,60,2e9,,2\n")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := LoadCSV(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, d := range h.Days {
			for _, c := range d.Coins {
				if err := c.Validate(); err != nil {
					t.Fatalf("accepted invalid coin: %v", err)
				}
			}
		}
	})
}

// followHistory: coin x moves from cryptonight-r to randomx on day 3 (the
// way Monero forked), y stays on randomx. At 1 H/s a coin pays its price
// per day; 1000 W at $0.25/kWh costs $6/day, so x makes $4/day and y $1.
const followHistory = `date,tag,algorithm,block_time_s,block_reward,difficulty,nethash_hs,price_usd
2024-01-01,x,CryptoNight-R,1,1,1,86400,10
2024-01-01,y,RandomX,1,1,1,86400,7
2024-01-02,x,CryptoNight-R,1,1,1,86400,10
2024-01-02,y,RandomX,1,1,1,86400,7
2024-01-03,x,CryptoNight-R,1,1,1,86400,10
2024-01-03,y,RandomX,1,1,1,86400,7
2024-01-04,x,RandomX,1,1,1,86400,10
2024-01-04,y,RandomX,1,1,1,86400,7
2024-01-05,x,RandomX,1,1,1,86400,10
2024-01-05,y,RandomX,1,1,1,86400,7
`

// Best single coin holds a coin, not a (coin, algorithm) pair, and a rig
// left on an option nobody can price pays for its power instead of earning
// a free zero.
func TestBacktestFollowsCoinAndChargesUnpricedOptions(t *testing.T) {
	h, err := LoadCSV(strings.NewReader(followHistory))
	if err != nil {
		t.Fatal(err)
	}
	rig := RigProfile{Name: "cpu", ElectricityUSD: 0.25, Algorithms: map[string]AlgoPerf{
		"cryptonight-r": {Hashrate: 1, Power: 1000}, "randomx": {Hashrate: 1, Power: 1000}}}
	pol := profit.DefaultPolicy()
	pol.SwitchDowntime = 0
	rep, err := Run(context.Background(), h, []RigProfile{rig}, pol, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Rigs[0]
	// x on cryptonight-r for days 1-2, on randomx for days 3-4.
	if r.BestSingleCoin != "x" || !near(r.BestSingle.Profit, 16) || r.BestSingle.Switches != 2 {
		t.Errorf("best single %q %+v, want x at $16 with 2 switches", r.BestSingleCoin, r.BestSingle)
	}
	if !near(r.Oracle.Profit, 16) {
		t.Errorf("oracle %+v, want $16", r.Oracle)
	}
	// Policy and greedy see day 3's fork a day late: on day 3 they still
	// run x on cryptonight-r, earn nothing and pay $6 of power.
	for name, s := range map[string]Strategy{"policy": r.Policy, "greedy": r.Greedy} {
		if !near(s.Profit, 4+4-6+4) {
			t.Errorf("%s %+v, want $6 (a day of power lost on the unpriced option)", name, s)
		}
	}
	if len(r.Reasons) != 2 || !strings.HasPrefix(r.Reasons[1], "2024-01-05 switch:") || !strings.Contains(r.Reasons[1], "no market figures for it") {
		t.Errorf("policy reasons %v: want the move to randomx on day 4, once the fork shows in its figures", r.Reasons)
	}
}

// The policy sees candidates as the live switcher does, with revenue and
// power cost: a resume must clear 5 % of revenue, not just the absolute
// threshold, so a rig earning $0.30 on $100 of revenue stays off.
func TestBacktestCandidatesCarryRevenueAndCost(t *testing.T) {
	h, err := LoadCSV(strings.NewReader(followHistory))
	if err != nil {
		t.Fatal(err)
	}
	// y at 1 H/s pays $7/day; 100/7 H/s pays $100, and $99.70/day of
	// power at 1000 W is 99.7/24 $/kWh.
	rig := RigProfile{Name: "thin", ElectricityUSD: 99.7 / 24, Algorithms: map[string]AlgoPerf{"randomx": {Hashrate: 100.0 / 7, Power: 1000}}}
	pol := profit.DefaultPolicy()
	rep, err := Run(context.Background(), h, []RigProfile{rig}, pol, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Rigs[0]
	// y makes $0.30/day from day 1, above the $0.10 absolute threshold but
	// below 5 % of its $100 revenue; x, at $142.86 of revenue from day 4,
	// clears its own margin of $7.14.
	if strings.Join(r.Trace, ",") != "off,off,off,x" || len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "margin $7.14") {
		t.Errorf("trace %v, reasons %v: want off below the 5%% resume margin, then x once its margin is cleared", r.Trace, r.Reasons)
	}
}

// Rig algorithms the history does not know, or spelt differently from it,
// are errors naming them, never silently ignored.
func TestBacktestRejectsUnknownAlgorithms(t *testing.T) {
	h, err := LoadCSV(strings.NewReader(followHistory))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ algo, want string }{
		{"RandomX", `algorithm "RandomX" must be written "randomx"`},
		{"kawpow", `algorithm "kawpow" is not in the history (it has cryptonight-r, randomx)`},
	} {
		rig := RigProfile{Name: "r", Algorithms: map[string]AlgoPerf{"randomx": {Hashrate: 1, Power: 1}, tc.algo: {Hashrate: 1, Power: 1}}}
		if tc.algo == "RandomX" {
			rig.Algorithms = map[string]AlgoPerf{tc.algo: {Hashrate: 1, Power: 1}}
		}
		_, err := Run(context.Background(), h, []RigProfile{rig}, profit.DefaultPolicy(), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.algo, err, tc.want)
		}
	}
}
