package backtest

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/quarryfleet/quarry/pkg/profit"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

// realHistory is the Coin Metrics history kept beside the repository; it
// is CC BY-NC and therefore read in place, never copied into testdata.
const realHistory = "../../../shared/data/market-history/coinmetrics-daily.csv"

func loadReal(tb testing.TB) (*History, []RigProfile) {
	tb.Helper()
	if _, err := os.Stat(realHistory); err != nil {
		testsupport.Missing(tb, "the market history at "+realHistory+" ("+err.Error()+")", "check out shared/ beside the repository")
	}
	h, err := LoadFile(realHistory)
	if err != nil {
		tb.Fatal(err)
	}
	rigs, err := LoadRigs("testdata/rigs.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return h, rigs
}

// marginalPerDay separates rigs that earn real money from rigs whose
// oracle makes pennies (expensive power on weak hardware). On the latter
// the oracle's whole profit is a handful of days it foresees and a causal
// policy cannot, so the ratio to the oracle is noise; the goal that
// matters there is losing no money.
const marginalPerDay = 0.10

func TestRealHistoryGoals(t *testing.T) {
	h, rigs := loadReal(t)
	if got := len(h.Days); got != 303 {
		t.Fatalf("history has %d days, want 303", got)
	}
	rep, err := Run(context.Background(), h, rigs, profit.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + buf.String())
	for _, r := range rep.Rigs {
		powerPerDay := 0.0
		for _, p := range rigs {
			if p.Name == r.Rig {
				for _, a := range p.Algorithms {
					powerPerDay = max(powerPerDay, profit.PowerCostPerDay(a.Power, p.ElectricityUSD))
				}
			}
		}
		// Everywhere: never a net loss, and on days the oracle stops the
		// policy loses less than one day of power in total.
		if r.Policy.Profit < 0 {
			t.Errorf("%s: policy lost $%.2f overall", r.Rig, -r.Policy.Profit)
		}
		if r.PolicyLossOnOracleOff < -powerPerDay {
			t.Errorf("%s: policy lost $%.2f on days the oracle stopped, more than a day of power ($%.2f)", r.Rig, -r.PolicyLossOnOracleOff, powerPerDay)
		}
		if r.Oracle.Profit/float64(r.Days) < marginalPerDay {
			continue
		}
		if got := r.PolicyVsOracle(); got < 0.97 {
			t.Errorf("%s: policy earns %.1f%% of the oracle, want ≥ 97%%", r.Rig, got*100)
		}
		if r.Policy.Profit < r.Greedy.Profit {
			t.Errorf("%s: policy $%.2f < greedy $%.2f", r.Rig, r.Policy.Profit, r.Greedy.Profit)
		}
		// Switches the market forces (the first start, a coin changing
		// algorithm) cannot be halved; greedy's extra ones can.
		forced := r.Oracle.Switches
		if r.Policy.Switches*2 > r.Greedy.Switches && r.Policy.Switches > min(forced, r.Greedy.Switches) {
			t.Errorf("%s: policy switched %d times, greedy %d: want at most half", r.Rig, r.Policy.Switches, r.Greedy.Switches)
		}
	}
}

func BenchmarkRunRealHistory(b *testing.B) {
	h, rigs := loadReal(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Run(ctx, h, rigs, profit.DefaultPolicy(), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(rigs)*(len(h.Days)-1)), "ns/rig-day")
}
