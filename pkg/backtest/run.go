package backtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/quarryfleet/quarry/pkg/profit"
)

// Assumption states what each strategy knows, for the report.
const Assumption = "daily data: on day d the policy and greedy see only day d-1's figures " +
	"(a day's mean difficulty and price are known once it ends) and realise day d's; " +
	"the oracle and best-single-coin know every day's figures in advance; " +
	"all start stopped, pay switch cost = downtime × the new option's profit that day, and stopping is free; " +
	"day 0 is observed only, never scored"

// Progress is told how many rigs are done out of how many.
type Progress func(done, total int)

// Strategy is one strategy's outcome on a rig or the fleet.
type Strategy struct {
	Profit         float64 `json:"profit_usd"`
	Switches       int     `json:"switches"`
	SwitchesPerDay float64 `json:"switches_per_rig_day"`
	OffDays        int     `json:"off_days"`
}

// RigReport is one rig's results.
type RigReport struct {
	Rig        string   `json:"rig"`
	Days       int      `json:"days"`
	Policy     Strategy `json:"policy"`
	Oracle     Strategy `json:"oracle"`
	Greedy     Strategy `json:"greedy"`
	BestSingle Strategy `json:"best_single"`
	// BestSingleCoin is the option held by BestSingle.
	BestSingleCoin string `json:"best_single_coin"`
	// PolicyLossOnOracleOff is the policy's realised profit summed over the
	// days the oracle has the rig stopped (≤ 0; 0 means it lost nothing
	// there).
	PolicyLossOnOracleOff float64 `json:"policy_loss_on_oracle_off_days"`
	// Trace is the option the policy mined each scored day, and Reasons the
	// decisions that changed it, for explaining a run.
	Trace   []string `json:"trace,omitempty"`
	Reasons []string `json:"reasons,omitempty"`
}

// PolicyVsOracle is the policy's profit as a fraction of the oracle's.
func (r RigReport) PolicyVsOracle() float64 { return ratio(r.Policy.Profit, r.Oracle.Profit) }

func ratio(a, b float64) float64 {
	if b == 0 {
		if a == 0 {
			return 1
		}
		return math.Inf(-1)
	}
	return a / b
}

// Report is a whole backtest.
type Report struct {
	From       string        `json:"from"`
	To         string        `json:"to"`
	Days       int           `json:"days"` // scored days per rig
	Assumption string        `json:"assumption"`
	Policy     profit.Policy `json:"policy"`
	Rigs       []RigReport   `json:"rigs"`
	Total      RigReport     `json:"total"`
}

// Run replays hist for every rig under policy and the comparison
// strategies. progress may be nil.
func Run(ctx context.Context, hist *History, rigs []RigProfile, policy profit.Policy, progress Progress) (Report, error) {
	if err := policy.Validate(); err != nil {
		return Report{}, err
	}
	if hist == nil || len(hist.Days) < 2 {
		return Report{}, errors.New("backtest: need at least two days of history (one observed, one scored)")
	}
	if len(rigs) == 0 {
		return Report{}, errors.New("backtest: no rigs")
	}
	rep := Report{
		From: hist.Days[1].Date.Format(time.DateOnly), To: hist.Days[len(hist.Days)-1].Date.Format(time.DateOnly),
		Days: len(hist.Days) - 1, Assumption: Assumption, Policy: policy,
		Total: RigReport{Rig: "total"},
	}
	for i, rig := range rigs {
		if err := ctx.Err(); err != nil {
			return Report{}, err
		}
		if err := rig.Validate(); err != nil {
			return Report{}, fmt.Errorf("backtest: %w", err)
		}
		rr, err := runRig(hist, rig, policy)
		if err != nil {
			return Report{}, err
		}
		rep.Rigs = append(rep.Rigs, rr)
		t := &rep.Total
		t.Days += rr.Days
		add := func(dst *Strategy, s Strategy) {
			dst.Profit += s.Profit
			dst.Switches += s.Switches
			dst.OffDays += s.OffDays
		}
		add(&t.Policy, rr.Policy)
		add(&t.Oracle, rr.Oracle)
		add(&t.Greedy, rr.Greedy)
		add(&t.BestSingle, rr.BestSingle)
		t.PolicyLossOnOracleOff += rr.PolicyLossOnOracleOff
		if progress != nil {
			progress(i+1, len(rigs))
		}
	}
	t := &rep.Total
	for _, s := range []*Strategy{&t.Policy, &t.Oracle, &t.Greedy, &t.BestSingle} {
		s.SwitchesPerDay = float64(s.Switches) / float64(t.Days)
	}
	return rep, nil
}

// matrix is what a rig would realise per day and option: revenue and
// power cost, with profit their difference.
type matrix struct {
	names []string
	coins []string
	// profit is -Inf where the option cannot be priced that day: its coin
	// is absent or mined with another algorithm.
	profit  [][]float64 // [day][option]
	revenue [][]float64
	cost    [][]float64 // power, USD/day; known even when unpriced
}

// realise is what day d pays a rig that runs opt: a rig that keeps a
// miner on an option nobody can price earns nothing and still pays for its
// power, so no strategy gets a free zero by sitting on a dead option.
func (m matrix) realise(d, opt int) float64 {
	if opt == profit.Off {
		return 0
	}
	if p := m.profit[d][opt]; !math.IsInf(p, -1) {
		return p
	}
	return -m.cost[d][opt]
}

// checkAlgorithms refuses rig algorithms the history does not know, or
// that are written differently from the history's canonical name (the
// history is matched exactly, so "RandomX" would otherwise be ignored).
func checkAlgorithms(hist *History, rig RigProfile) error {
	known := map[string]bool{}
	for _, d := range hist.Days {
		for _, c := range d.Coins {
			known[c.Algorithm] = true
		}
	}
	for _, a := range slices.Sorted(maps.Keys(rig.Algorithms)) {
		if c := CanonicalAlgorithm(a); c != a && known[c] {
			return fmt.Errorf("backtest: rig %s: algorithm %q must be written %q", rig.Name, a, c)
		}
		if !known[a] {
			return fmt.Errorf("backtest: rig %s: algorithm %q is not in the history (it has %s)", rig.Name, a, strings.Join(slices.Sorted(maps.Keys(known)), ", "))
		}
	}
	return nil
}

// build prices every coin the rig can mine on every day through the
// profit engine, the same code the controller ranks with.
func build(hist *History, rig RigProfile) (matrix, error) {
	if err := checkAlgorithms(hist, rig); err != nil {
		return matrix{}, err
	}
	var opts []profit.Option
	var perf []profit.Perf
	for _, d := range hist.Days {
		for _, c := range d.Coins {
			o := profit.Option{Coin: c.Tag, Algorithm: c.Algorithm, PoolFee: rig.PoolFee}
			if _, ok := rig.Algorithms[c.Algorithm]; ok && !slices.Contains(opts, o) {
				opts = append(opts, o)
			}
		}
	}
	for a, p := range rig.Algorithms {
		perf = append(perf, profit.Perf{Algorithm: a, Hashrate: p.Hashrate, Power: p.Power})
	}
	eng, err := profit.NewEngine(opts)
	if err != nil {
		return matrix{}, err
	}
	tariff := profit.FlatTariff(rig.ElectricityUSD)
	if rig.Tariff != nil {
		tariff = *rig.Tariff
	}
	week := tariff.Table()
	// Price every day at noon with the day's average tariff, so a
	// time-of-use site is charged for the whole day, not one hour.
	var days [7]profit.Site
	for wd := range days {
		days[wd] = profit.Site{Name: time.Weekday(wd).String(), Tariff: profit.FlatTariff(week.DayAverage(time.Weekday(wd)))}
	}
	fleets := make([]*profit.Fleet, 7)
	for wd := range days {
		if fleets[wd], err = eng.NewFleet([]profit.Rig{{ID: rig.Name, Site: days[wd].Name, Perf: perf}}, days[:]); err != nil {
			return matrix{}, err
		}
	}
	n := eng.Len()
	m := matrix{names: make([]string, n), coins: make([]string, n),
		profit: make([][]float64, len(hist.Days)), revenue: make([][]float64, len(hist.Days)), cost: make([][]float64, len(hist.Days))}
	for i := range m.names {
		m.names[i], m.coins[i] = eng.Name(i), eng.Option(i).Coin
	}
	for d, day := range hist.Days {
		q := eng.Quote(day.Coins)
		f := fleets[day.Date.Weekday()]
		m.profit[d], m.revenue[d], m.cost[d] = make([]float64, n), make([]float64, n), make([]float64, n)
		for i := range n {
			s := q.Score(f, 0, i, day.Date.Add(12*time.Hour))
			m.profit[d][i], m.revenue[d][i], m.cost[d][i] = s.Profit, s.Revenue, s.Cost
		}
	}
	return m, nil
}

func runRig(hist *History, rig RigProfile, pol profit.Policy) (RigReport, error) {
	m, err := build(hist, rig)
	if err != nil {
		return RigReport{}, err
	}
	nd := len(hist.Days) - 1
	rr := RigReport{Rig: rig.Name, Days: nd}
	cost := func(d, from, to int) float64 { // d indexes hist.Days
		if from == to || to == profit.Off {
			return 0
		}
		return pol.SwitchCost(m.profit[d][to])
	}
	oracleOff := oracle(m, cost, &rr.Oracle)

	// Policy: decides each morning from smoothed observations up to
	// yesterday, with candidates built as the live switcher builds them:
	// expected revenue, and the power cost at today's tariff.
	est := make([]float64, len(m.names))
	for i := range est {
		est[i] = math.NaN()
	}
	cur, last := profit.Off, hist.Days[0].Date.Add(-365*24*time.Hour)
	for d := 1; d <= nd; d++ {
		for i, r := range m.revenue[d-1] {
			if math.IsInf(r, -1) {
				est[i] = math.NaN() // coin absent or algorithm changed: forget it
				continue
			}
			est[i] = pol.Smooth(est[i], r)
		}
		best := profit.Candidate{Option: profit.Off, Name: "off", Profit: math.Inf(-1)}
		for i, r := range est {
			if c := m.candidate(d, i, r); !math.IsNaN(r) && c.Profit > best.Profit {
				best = c
			}
		}
		in := profit.Input{Rig: rig.Name, Best: best, Now: hist.Days[d].Date, LastSwitch: last, Current: profit.Candidate{Option: profit.Off, Name: "off"}}
		if cur != profit.Off {
			if math.IsNaN(est[cur]) {
				in.Current = m.candidate(d, cur, 0)
				in.CurrentBlocked = "no market figures for it"
			} else {
				in.Current = m.candidate(d, cur, est[cur])
			}
		}
		dec := pol.Decide(in)
		if next := dec.Target.Option; next != cur {
			rr.Policy.Profit -= cost(d, cur, next)
			rr.Policy.Switches++
			rr.Reasons = append(rr.Reasons, hist.Days[d].Date.Format(time.DateOnly)+" "+dec.Reason)
			cur, last = next, hist.Days[d].Date
		}
		p := m.realise(d, cur)
		rr.Policy.Profit += p
		if cur == profit.Off {
			rr.Policy.OffDays++
		}
		if oracleOff[d] {
			rr.PolicyLossOnOracleOff += p
		}
		rr.Trace = append(rr.Trace, name(m, cur))
	}

	// Greedy: the same information, no hysteresis.
	cur = profit.Off
	for d := 1; d <= nd; d++ {
		next, bp := profit.Off, 0.0
		for i, p := range m.profit[d-1] {
			if p > bp {
				next, bp = i, p
			}
		}
		if next != cur {
			rr.Greedy.Profit -= cost(d, cur, next)
			rr.Greedy.Switches++
			cur = next
		}
		rr.Greedy.Profit += m.realise(d, cur)
		if cur == profit.Off {
			rr.Greedy.OffDays++
		}
	}

	// Best single coin held throughout, chosen in hindsight. Holding a
	// coin follows it across a change of algorithm (Monero's move to
	// RandomX), paying the switch; on a day the coin cannot be priced the
	// rig keeps its miner and pays for the power.
	rr.BestSingle.Profit = math.Inf(-1)
	for _, coin := range slices.Compact(slices.Sorted(slices.Values(m.coins))) {
		s, held := Strategy{}, profit.Off
		for d := 1; d <= nd; d++ {
			next, bp := held, math.Inf(-1)
			for i, c := range m.coins {
				if c == coin && m.profit[d][i] > bp {
					next, bp = i, m.profit[d][i]
				}
			}
			if math.IsInf(bp, -1) {
				next = held
			}
			if next != held {
				s.Profit -= cost(d, held, next)
				s.Switches++
				held = next
			}
			s.Profit += m.realise(d, held)
			if held == profit.Off {
				s.OffDays++
			}
		}
		if s.Profit > rr.BestSingle.Profit {
			rr.BestSingle, rr.BestSingleCoin = s, coin
		}
	}
	for _, s := range []*Strategy{&rr.Policy, &rr.Oracle, &rr.Greedy, &rr.BestSingle} {
		s.SwitchesPerDay = float64(s.Switches) / float64(nd)
	}
	return rr, nil
}

// candidate is option i as the live switcher presents it on day d:
// expected revenue, the day's power cost, and their difference.
func (m matrix) candidate(d, i int, revenue float64) profit.Candidate {
	c := m.cost[d][i]
	return profit.Candidate{Option: i, Name: m.names[i], Coin: m.coins[i], Revenue: revenue, Cost: c, Profit: revenue - c}
}

func name(m matrix, i int) string {
	if i == profit.Off {
		return "off"
	}
	return m.names[i]
}

// oracle finds the most profitable plan knowing every day's figures,
// paying the same switch costs: dynamic programming over (day, option or
// off). It fills s and returns which days (by history index) it is off.
func oracle(m matrix, cost func(d, from, to int) float64, s *Strategy) []bool {
	nd, no := len(m.profit)-1, len(m.names)
	ns := no + 1 // state no is "off"
	opt := func(k int) int {
		if k == no {
			return profit.Off
		}
		return k
	}
	val := make([]float64, ns)
	for k := range val {
		val[k] = math.Inf(-1)
	}
	val[no] = 0 // everyone starts stopped
	back := make([][]int, nd+1)
	next := make([]float64, ns)
	for d := 1; d <= nd; d++ {
		back[d] = make([]int, ns)
		for k := range ns {
			p := m.realise(d, opt(k))
			bestV, bestJ := math.Inf(-1), no
			for j := range ns {
				if v := val[j] - cost(d, opt(j), opt(k)); v > bestV {
					bestV, bestJ = v, j
				}
			}
			next[k], back[d][k] = bestV+p, bestJ
		}
		val, next = next, val
	}
	k := 0
	for j := range ns {
		if val[j] > val[k] {
			k = j
		}
	}
	s.Profit = val[k]
	off := make([]bool, nd+1)
	for d := nd; d >= 1; d-- {
		j := back[d][k]
		if k == no {
			off[d] = true
			s.OffDays++
		}
		if j != k {
			s.Switches++
		}
		k = j
	}
	return off
}
