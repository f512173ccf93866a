package profit

import (
	"fmt"
	"math"
	"time"
)

// Policy decides when a rig changes what it mines. The zero value is not
// useful; start from DefaultPolicy.
type Policy struct {
	// RelativeThreshold is the fraction by which the best option's profit,
	// after the switch cost, must beat the current one's (0.05 = 5 %).
	// From "off" it is the margin the option must keep over its revenue.
	RelativeThreshold float64 `json:"relative_threshold" yaml:"relative_threshold"`
	// AbsoluteThreshold is the least gain in USD/day worth a switch.
	AbsoluteThreshold float64 `json:"absolute_threshold" yaml:"absolute_threshold"`
	// MinDwell is how long a rig stays on an option (or off) before the
	// policy moves it again, except when rules or losses force it.
	MinDwell time.Duration `json:"min_dwell" yaml:"min_dwell"`
	// SwitchDowntime is the expected time a switch earns nothing (miner
	// restart, DAG build, pool login); switch cost = downtime × new profit.
	SwitchDowntime time.Duration `json:"switch_downtime" yaml:"switch_downtime"`
	// CurtailBelow is the profit in USD/day under which the best option is
	// not worth its power and the rig stops mining; usually 0.
	CurtailBelow float64 `json:"curtail_below" yaml:"curtail_below"`
	// Smoothing is the weight of the newest observation in the profit
	// estimates the caller keeps per option (exponential moving average,
	// see Smooth); 1 disables smoothing.
	Smoothing float64 `json:"smoothing" yaml:"smoothing"`
}

// DefaultPolicy returns the tuned defaults. They come from replaying the
// 2019-06..2020-03 daily history (pkg/backtest): a 5 % and $0.10/day bar
// kept switches under half of greedy daily switching on every rig that
// earns money while giving up under 1.5 % to a hindsight oracle; daily
// smoothing only added lag. Dwell and downtime reflect minutes-scale
// control loops and the miner restart plus DAG build.
func DefaultPolicy() Policy {
	return Policy{
		RelativeThreshold: 0.05,
		AbsoluteThreshold: 0.10,
		MinDwell:          30 * time.Minute,
		SwitchDowntime:    2 * time.Minute,
		CurtailBelow:      0,
		Smoothing:         1,
	}
}

// Validate names the first field outside its range.
func (p Policy) Validate() error {
	switch {
	case !(p.RelativeThreshold >= 0) || math.IsInf(p.RelativeThreshold, 0):
		return fmt.Errorf("policy: relative threshold %v must be >= 0", p.RelativeThreshold)
	case !(p.AbsoluteThreshold >= 0) || math.IsInf(p.AbsoluteThreshold, 0):
		return fmt.Errorf("policy: absolute threshold %v must be >= 0", p.AbsoluteThreshold)
	case p.MinDwell < 0 || p.SwitchDowntime < 0:
		return fmt.Errorf("policy: dwell %v and switch downtime %v must be >= 0", p.MinDwell, p.SwitchDowntime)
	case p.SwitchDowntime > 24*time.Hour:
		return fmt.Errorf("policy: switch downtime %v longer than a day", p.SwitchDowntime)
	case math.IsNaN(p.CurtailBelow) || math.IsInf(p.CurtailBelow, 0):
		return fmt.Errorf("policy: curtail threshold %v must be finite", p.CurtailBelow)
	case !(p.Smoothing > 0 && p.Smoothing <= 1):
		return fmt.Errorf("policy: smoothing %v must be in (0,1]", p.Smoothing)
	}
	return nil
}

// Smooth folds a new observation into an estimate. The first observation
// (prev NaN) is taken as is.
func (p Policy) Smooth(prev, obs float64) float64 {
	if math.IsNaN(prev) || p.Smoothing >= 1 {
		return obs
	}
	return prev + p.Smoothing*(obs-prev)
}

// SwitchCost is the USD lost by a switch to an option making profit USD/day:
// the expected downtime's share of a day of it. Stopping costs nothing.
func (p Policy) SwitchCost(profit float64) float64 {
	if profit <= 0 {
		return 0
	}
	return p.SwitchDowntime.Hours() / 24 * profit
}

// Candidate is an option as the policy sees it.
type Candidate struct {
	Option  int     `json:"option"` // engine index, or Off
	Name    string  `json:"name"`   // for reasons, e.g. "etc@2miners/lolminer"
	Coin    string  `json:"coin"`
	Profit  float64 `json:"profit"` // USD/day
	Revenue float64 `json:"revenue"`
	Cost    float64 `json:"cost"` // power, USD/day
}

// CandidateOf turns a score into a candidate named by the engine.
func (e *Engine) CandidateOf(s Scored) Candidate {
	c := Candidate{Option: int(s.Option), Name: e.Name(int(s.Option)), Profit: s.Profit, Revenue: s.Revenue, Cost: s.Cost}
	if s.Option != Off {
		c.Coin = e.options[s.Option].Coin
	}
	return c
}

// Input is everything one decision depends on.
type Input struct {
	Rig     string    `json:"rig"`
	Current Candidate `json:"current"` // what the rig mines now, Option Off when stopped
	// CurrentBlocked says why the rig may no longer mine Current (a pin or
	// exclusion); empty when it may.
	CurrentBlocked string `json:"current_blocked,omitempty"`
	// Best is the most profitable allowed option, Off when there is none.
	Best Candidate `json:"best"`
	// Pinned is the coin the rig is forced to mine; a pinned rig mines at
	// a loss rather than stop.
	Pinned     string    `json:"pinned,omitempty"`
	Now        time.Time `json:"now"`
	LastSwitch time.Time `json:"last_switch"`
}

// Action is what a decision tells the switcher to do.
type Action string

// Actions.
const (
	Stay    Action = "stay"
	Switch  Action = "switch"
	Curtail Action = "curtail"
	Resume  Action = "resume"
)

// Decision is a policy's verdict with every figure that led to it, so that
// it can be shown verbatim by `quarryctl profit explain`.
type Decision struct {
	Input      Input         `json:"input"`
	Policy     Policy        `json:"policy"`
	Action     Action        `json:"action"`
	Target     Candidate     `json:"target"` // what the rig mines after the decision
	Gain       float64       `json:"gain"`   // USD/day, after switch cost
	GainPct    float64       `json:"gain_pct"`
	SwitchCost float64       `json:"switch_cost"` // USD, once
	Dwell      time.Duration `json:"dwell"`
	Reason     string        `json:"reason"`
}

// Decide applies the policy to one rig. It is pure: same input, same
// decision.
//
// Order of concerns: rules first (a blocked option is left at once), then
// losses (a rig whose best option loses money stops at once, because every
// hour costs money and stopping costs nothing), then the dwell time, then
// the thresholds. Resuming from off uses the same thresholds, measured
// against zero profit, so a rig hovering at break-even does not flap.
func (p Policy) Decide(in Input) Decision {
	d := Decision{Input: in, Policy: p, Target: in.Current, Dwell: in.Now.Sub(in.LastSwitch)}
	cur, best := in.Current, in.Best
	bestOK := best.Option != Off && !math.IsInf(best.Profit, -1)
	if bestOK {
		d.SwitchCost = p.SwitchCost(best.Profit)
	}
	stay := func(format string, a ...any) Decision {
		d.Action, d.Target = Stay, cur
		d.Reason = "stay: " + fmt.Sprintf(format, a...)
		return d
	}
	dwellNote := fmt.Sprintf("dwell %s", fmtDur(d.Dwell))
	pinned := in.Pinned != ""

	// Rules override everything else.
	if cur.Option != Off && in.CurrentBlocked != "" {
		if !bestOK {
			d.Action, d.Target = Curtail, Candidate{Option: Off, Name: "off"}
			d.Reason = fmt.Sprintf("curtail: %s is blocked (%s) and no allowed option is available", cur.Name, in.CurrentBlocked)
			return d
		}
		if best.Profit < p.CurtailBelow && !pinned {
			d.Action, d.Target = Curtail, Candidate{Option: Off, Name: "off"}
			d.Reason = fmt.Sprintf("curtail: %s is blocked (%s) and the best allowed %s loses $%.2f/day", cur.Name, in.CurrentBlocked, best.Name, -best.Profit)
			return d
		}
		d.Action, d.Target, d.Gain = Switch, best, best.Profit-cur.Profit-d.SwitchCost
		d.Reason = fmt.Sprintf("switch: %s→%s because %s is blocked (%s); rules override dwell and thresholds", cur.Name, best.Name, cur.Name, in.CurrentBlocked)
		return d
	}
	if pinned && bestOK && cur.Option != best.Option && (cur.Option == Off || cur.Coin != in.Pinned) {
		d.Action, d.Target, d.Gain = Switch, best, best.Profit-cur.Profit-d.SwitchCost
		if cur.Option == Off {
			d.Action = Resume
		}
		d.Reason = fmt.Sprintf("%s: %s→%s because the rig is pinned to %s", d.Action, cur.Name, best.Name, in.Pinned)
		return d
	}

	if cur.Option == Off {
		if !bestOK {
			return stay("off; no option can be mined")
		}
		margin := max(p.AbsoluteThreshold, p.RelativeThreshold*best.Revenue)
		net := best.Profit - d.SwitchCost
		d.Gain = net
		if best.Revenue > 0 {
			d.GainPct = net / best.Revenue * 100
		}
		if !pinned && net < margin {
			return stay("off; best %s would make $%.2f/day after switch cost $%.2f, below the resume margin $%.2f (max of $%.2f and %.0f%% of revenue $%.2f)",
				best.Name, net, d.SwitchCost, margin, p.AbsoluteThreshold, p.RelativeThreshold*100, best.Revenue)
		}
		if d.Dwell < p.MinDwell {
			return stay("off; %s would pay $%.2f/day but %s < %s", best.Name, net, dwellNote, fmtDur(p.MinDwell))
		}
		d.Action, d.Target = Resume, best
		d.Reason = fmt.Sprintf("resume: off→%s pays $%.2f/day after switch cost $%.2f ≥ margin $%.2f; %s ≥ %s",
			best.Name, net, d.SwitchCost, margin, dwellNote, fmtDur(p.MinDwell))
		return d
	}

	if !pinned && (!bestOK || best.Profit < p.CurtailBelow) {
		d.Action, d.Target = Curtail, Candidate{Option: Off, Name: "off"}
		if !bestOK {
			d.Reason = fmt.Sprintf("curtail: %s can no longer be priced and no other option is available", cur.Name)
		} else {
			d.Reason = fmt.Sprintf("curtail: best option %s makes $%.2f/day < $%.2f (power $%.2f/day); stopping saves $%.2f/day, losses override dwell",
				best.Name, best.Profit, p.CurtailBelow, best.Cost, -cur.Profit)
		}
		return d
	}
	if !bestOK || best.Option == cur.Option {
		return stay("%s is the best option at $%.2f/day", cur.Name, cur.Profit)
	}

	net := best.Profit - cur.Profit - d.SwitchCost
	d.Gain = net
	d.GainPct = math.Inf(1)
	if cur.Profit > 0 {
		d.GainPct = net / cur.Profit * 100
	}
	gain := fmt.Sprintf("%s gain %s ($%.2f/day) after switch cost $%.2f", arrow(cur, best), pct(d.GainPct), net, d.SwitchCost)
	if d.Dwell < p.MinDwell {
		return stay("%s, but %s < %s", gain, dwellNote, fmtDur(p.MinDwell))
	}
	if d.GainPct < p.RelativeThreshold*100 {
		return stay("%s < %.0f%%", gain, p.RelativeThreshold*100)
	}
	if net < p.AbsoluteThreshold {
		return stay("%s < $%.2f/day", gain, p.AbsoluteThreshold)
	}
	d.Action, d.Target = Switch, best
	d.Reason = fmt.Sprintf("switch: %s ≥ %.0f%% and ≥ $%.2f/day; %s ≥ %s", gain, p.RelativeThreshold*100, p.AbsoluteThreshold, dwellNote, fmtDur(p.MinDwell))
	return d
}

// arrow names a move compactly: by coin when the coins differ, in full
// when only the pool or miner changes.
func arrow(from, to Candidate) string {
	if from.Coin != "" && to.Coin != "" && from.Coin != to.Coin {
		return from.Coin + "→" + to.Coin
	}
	return from.Name + "→" + to.Name
}

func pct(v float64) string {
	if math.IsInf(v, 1) {
		return "∞%"
	}
	return fmt.Sprintf("%.1f%%", v)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.Round(time.Second).String()
}
