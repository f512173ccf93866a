package profit

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func cand(opt int, coin string, profit, cost float64) Candidate {
	return Candidate{Option: opt, Name: coin + "@pool", Coin: coin, Profit: profit, Revenue: profit + cost, Cost: cost}
}

var off = Candidate{Option: Off, Name: "off"}

func TestDecide(t *testing.T) {
	p := DefaultPolicy() // 5 %, $0.05/day, 30m dwell, 2m downtime
	long := t0.Add(-2 * time.Hour)
	tests := []struct {
		name      string
		in        Input
		action    Action
		target    int
		reasonHas string
	}{
		{"best already", Input{Current: cand(1, "etc", 10, 4), Best: cand(1, "etc", 10, 4), LastSwitch: long}, Stay, 1, "etc@pool is the best"},
		{"noise 3% stays", Input{Current: cand(1, "etc", 10, 4), Best: cand(2, "eth", 10.3, 4), LastSwitch: long}, Stay, 1, "< 5%"},
		{"real change switches", Input{Current: cand(1, "etc", 4.30, 4), Best: cand(2, "rvn", 4.616, 4), LastSwitch: long}, Switch, 2, "switch: etc→rvn gain 7.2% ($0.31/day) after switch cost $0.01 ≥ 5% and ≥ $0.10/day; dwell 2h ≥ 30m"},
		{"dwell holds", Input{Current: cand(1, "etc", 10, 4), Best: cand(2, "eth", 12, 4), LastSwitch: t0.Add(-10 * time.Minute)}, Stay, 1, "dwell 10m < 30m"},
		{"absolute threshold", Input{Current: cand(1, "etc", 0.20, 1), Best: cand(2, "eth", 0.24, 1), LastSwitch: long}, Stay, 1, "< $0.10/day"},
		{"pin forces coin over dwell and profit", Input{Current: cand(1, "etc", 10, 4), Best: cand(3, "zec", 2, 4), Pinned: "zec", LastSwitch: t0.Add(-time.Minute)}, Switch, 3, "pinned to zec"},
		{"pinned rig keeps mining at a loss", Input{Current: cand(3, "zec", -1, 4), Best: cand(3, "zec", -1, 4), Pinned: "zec", LastSwitch: long}, Stay, 3, "best option"},
		{"excluded current leaves at once", Input{Current: cand(1, "etc", 10, 4), CurrentBlocked: "pool pool excluded", Best: cand(2, "eth", 9, 4), LastSwitch: t0.Add(-time.Minute)}, Switch, 2, "blocked (pool pool excluded)"},
		{"excluded and nothing pays curtails", Input{Current: cand(1, "etc", 10, 4), CurrentBlocked: "coin etc excluded", Best: cand(2, "eth", -1, 4), LastSwitch: long}, Curtail, Off, "loses $1.00/day"},
		{"losing money curtails despite dwell", Input{Current: cand(1, "etc", -0.5, 4), Best: cand(1, "etc", -0.5, 4), LastSwitch: t0.Add(-time.Minute)}, Curtail, Off, "curtail: best option etc@pool makes $-0.50/day"},
		{"nothing priced curtails", Input{Current: cand(1, "etc", 1, 4), Best: Candidate{Option: Off, Profit: math.Inf(-1)}, LastSwitch: long}, Curtail, Off, "can no longer be priced"},
		{"off stays off below margin", Input{Current: off, Best: cand(1, "etc", 0.10, 4), LastSwitch: long}, Stay, Off, "below the resume margin $0.20"},
		{"off resumes when an option pays", Input{Current: off, Best: cand(1, "etc", 1.0, 4), LastSwitch: long}, Resume, 1, "resume: off→etc@pool pays $1.00/day"},
		{"off honours dwell", Input{Current: off, Best: cand(1, "etc", 1.0, 4), LastSwitch: t0.Add(-5 * time.Minute)}, Stay, Off, "dwell 5m < 30m"},
		{"off with nothing to mine", Input{Current: off, Best: Candidate{Option: Off}, LastSwitch: long}, Stay, Off, "no option"},
		{"pinned off resumes at a loss", Input{Current: off, Best: cand(3, "zec", -1, 4), Pinned: "zec", LastSwitch: t0.Add(-time.Minute)}, Resume, 3, "pinned to zec"},
		{"from a losing option gain is unbounded", Input{Current: cand(1, "etc", -0.1, 4), Best: cand(2, "eth", 0.5, 4), LastSwitch: long}, Switch, 2, "gain ∞%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Now = t0
			d := p.Decide(tt.in)
			if d.Action != tt.action || d.Target.Option != tt.target {
				t.Fatalf("Decide = %s to %d, want %s to %d; reason %q", d.Action, d.Target.Option, tt.action, tt.target, d.Reason)
			}
			if !strings.Contains(d.Reason, tt.reasonHas) {
				t.Fatalf("reason %q lacks %q", d.Reason, tt.reasonHas)
			}
			if d.Input != tt.in || d.Policy != p {
				t.Fatal("decision does not carry its inputs")
			}
		})
	}
}

// A simulated hour-by-hour market in which two coins trade places on ±2 %
// noise for a month must not make the rig switch more than once (the
// first move to whichever is best), and a lasting 15 % change must be
// followed within the dwell time.
func TestDecideNoFlapThenFollow(t *testing.T) {
	p := DefaultPolicy()
	rnd := rand.New(rand.NewPCG(1, 2))
	cur, last := cand(0, "etc", 5, 3), t0.Add(-time.Hour)
	now := t0
	switches := 0
	step := func(base1 float64) {
		a := cand(0, "etc", 5*(1+0.02*(2*rnd.Float64()-1)), 3)
		b := cand(1, "eth", base1*(1+0.02*(2*rnd.Float64()-1)), 3)
		best := a
		if b.Profit > a.Profit {
			best = b
		}
		if cur.Option == 0 {
			cur = a
		} else {
			cur = b
		}
		d := p.Decide(Input{Current: cur, Best: best, Now: now, LastSwitch: last})
		if d.Action == Switch {
			switches++
			cur, last = d.Target, now
		}
		now = now.Add(10 * time.Minute)
	}
	for range 30 * 24 * 6 {
		step(5)
	}
	if switches > 1 {
		t.Fatalf("%d switches on noise alone", switches)
	}
	if cur.Option != 0 {
		cur, last = cand(0, "etc", 5, 3), now
	}
	for range 6 {
		step(5.75) // eth now pays 15 % more, for good
	}
	if cur.Option != 1 {
		t.Fatalf("an hour after a lasting 15 %% change the rig still mines %s", cur.Name)
	}
}

// On/off around break-even must not flap: resuming needs the margin.
func TestCurtailResumeHysteresis(t *testing.T) {
	p := DefaultPolicy()
	cur, last := cand(0, "etc", 0.5, 4), t0.Add(-time.Hour)
	now := t0
	var actions []Action
	for _, profit := range []float64{0.5, -0.05, 0.03, -0.02, 0.04, 0.01, 1.2, 1.1} {
		best := cand(0, "etc", profit, 4)
		in := Input{Current: cur, Best: best, Now: now, LastSwitch: last}
		if cur.Option != Off {
			in.Current = best
		}
		d := p.Decide(in)
		actions = append(actions, d.Action)
		if d.Action != Stay {
			cur, last = d.Target, now
		}
		now = now.Add(time.Hour)
	}
	want := []Action{Stay, Curtail, Stay, Stay, Stay, Stay, Resume, Stay}
	for i := range want {
		if actions[i] != want[i] {
			t.Fatalf("actions %v, want %v", actions, want)
		}
	}
}

func TestSmoothAndSwitchCost(t *testing.T) {
	p := DefaultPolicy()
	p.Smoothing = 0.25
	if got := p.Smooth(math.NaN(), 8); got != 8 {
		t.Fatalf("first observation smoothed to %v", got)
	}
	if got := p.Smooth(8, 12); got != 9 {
		t.Fatalf("Smooth(8,12) = %v, want 9", got)
	}
	// 2 minutes of a $7.20/day option = 7.2 × 2/1440 = $0.01.
	if got := p.SwitchCost(7.2); !near(got, 0.01) {
		t.Fatalf("SwitchCost(7.2) = %v", got)
	}
	if got := p.SwitchCost(-3); got != 0 {
		t.Fatalf("stopping should cost nothing, got %v", got)
	}
	bad := []Policy{{RelativeThreshold: -1, Smoothing: 1}, {MinDwell: -1, Smoothing: 1}, {Smoothing: 0}, {SwitchDowntime: 25 * time.Hour, Smoothing: 1}, {CurtailBelow: math.NaN(), Smoothing: 1}}
	for i, b := range bad {
		if b.Validate() == nil {
			t.Errorf("policy %d accepted: %+v", i, b)
		}
	}
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
}
