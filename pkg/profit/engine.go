package profit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Off is the option index that means "not mining": the rig is curtailed and
// draws no mining power.
const Off = -1

// Engine holds the fixed set of options a fleet can mine, grouped by
// algorithm so that ranking walks each group with one hash rate and one
// power figure. Build it when the option list changes; it is read-only
// afterwards and safe for concurrent use.
type Engine struct {
	options  []Option
	algs     []string
	algIndex map[string]int
	algStart []int // options of algs[a] are options[algStart[a]:algStart[a+1]]
}

// NewEngine validates and indexes options. Their order is not kept:
// refer to options by the indices the engine hands out.
func NewEngine(options []Option) (*Engine, error) {
	if len(options) == 0 {
		return nil, errors.New("profit: no options")
	}
	e := &Engine{options: slices.Clone(options), algIndex: map[string]int{}}
	for i, o := range e.options {
		if err := o.Validate(); err != nil {
			return nil, fmt.Errorf("profit: option %d: %w", i, err)
		}
	}
	slices.SortStableFunc(e.options, func(a, b Option) int { return cmp.Compare(a.Algorithm, b.Algorithm) })
	for i, o := range e.options {
		if _, ok := e.algIndex[o.Algorithm]; !ok {
			e.algIndex[o.Algorithm] = len(e.algs)
			e.algs = append(e.algs, o.Algorithm)
			e.algStart = append(e.algStart, i)
		}
	}
	e.algStart = append(e.algStart, len(e.options))
	return e, nil
}

// Len is the number of options.
func (e *Engine) Len() int { return len(e.options) }

// Option returns option i; i must be in [0, Len()).
func (e *Engine) Option(i int) Option { return e.options[i] }

// Name returns option i's short name, or "off" for Off.
func (e *Engine) Name(i int) string {
	if i == Off {
		return "off"
	}
	return e.options[i].String()
}

// Find returns the index of the option equal to o, or Off.
func (e *Engine) Find(o Option) int {
	if i := slices.Index(e.options, o); i >= 0 {
		return i
	}
	return Off
}

// Algorithms lists the algorithms options use, in index order.
func (e *Engine) Algorithms() []string { return slices.Clone(e.algs) }

// Quote is the USD per day one H/s earns on each option under one market
// snapshot, after fees. Options the snapshot cannot price earn -Inf, so
// ranking never picks them.
type Quote struct {
	engine *Engine
	rev    []float64
	// order lists each algorithm's options by revenue per hash, best
	// first, so ranking can stop at the first option that misses the top.
	order    []int32
	Unpriced []Unpriced // options left out, and why
}

// Unpriced names an option a quote could not price.
type Unpriced struct {
	Option int
	Reason string
}

// Quote prices every option from coins (one entry per coin tag; a later
// duplicate replaces an earlier one). Options whose coin is missing, has
// invalid figures or is mined with another algorithm are left unpriced and
// listed in Quote.Unpriced rather than failing the whole snapshot.
func (e *Engine) Quote(coins []Coin) *Quote {
	byTag := make(map[string]Coin, len(coins))
	for _, c := range coins {
		byTag[c.Tag] = c
	}
	q := &Quote{engine: e, rev: make([]float64, len(e.options))}
	for i, o := range e.options {
		c, ok := byTag[o.Coin]
		var why string
		switch {
		case !ok:
			why = "no market figures for " + o.Coin
		case c.Algorithm != "" && c.Algorithm != o.Algorithm:
			why = fmt.Sprintf("%s is mined with %s, option says %s", o.Coin, c.Algorithm, o.Algorithm)
		default:
			if err := c.Validate(); err != nil {
				why = err.Error()
			}
		}
		if why != "" {
			q.rev[i] = math.Inf(-1)
			q.Unpriced = append(q.Unpriced, Unpriced{Option: i, Reason: why})
			continue
		}
		q.rev[i] = o.RevenuePerHashDay(c)
	}
	q.order = make([]int32, len(e.options))
	for i := range q.order {
		q.order[i] = int32(i)
	}
	for a := range e.algs {
		seg := q.order[e.algStart[a]:e.algStart[a+1]]
		slices.SortStableFunc(seg, func(x, y int32) int { return cmp.Compare(q.rev[y], q.rev[x]) })
	}
	return q
}

// RevenuePerHashDay returns option i's USD/day per H/s in this quote.
func (q *Quote) RevenuePerHashDay(i int) float64 { return q.rev[i] }

// Site is a place rigs draw power from.
type Site struct {
	Name   string
	Tariff Tariff
}

// Perf is a rig's measured performance on one algorithm.
type Perf struct {
	Algorithm string
	Hashrate  float64 // H/s
	Power     float64 // W at the wall while mining
	// BorrowedFrom is the hardware fingerprint whose profile supplied these
	// figures because the rig has not been benchmarked yet; empty when
	// measured on the rig itself.
	BorrowedFrom string
}

// Rig is one rig's input to ranking.
type Rig struct {
	ID    string
	Site  string
	Perf  []Perf
	Rules Rules // per-rig pins and exclusions
}

// Fleet is rigs compiled against an engine: dense per-algorithm figures so
// ranking touches no maps and allocates nothing per rig.
type Fleet struct {
	engine   *Engine
	ids      []string
	index    map[string]int
	site     []int32
	hash     []float64 // [rig*nalg + alg]
	watts    []float64
	borrowed []string // [rig*nalg + alg], empty when measured
	masks    [][]uint64
	rules    []Rules
	sites    []Site
	tables   []WeekTable
}

// NewFleet compiles rigs. Every rig must name a site in sites. Figures for
// algorithms no option uses are ignored.
func (e *Engine) NewFleet(rigs []Rig, sites []Site) (*Fleet, error) {
	na := len(e.algs)
	f := &Fleet{
		engine: e, ids: make([]string, len(rigs)), index: make(map[string]int, len(rigs)),
		site: make([]int32, len(rigs)), hash: make([]float64, len(rigs)*na),
		watts: make([]float64, len(rigs)*na), borrowed: make([]string, len(rigs)*na),
		masks: make([][]uint64, len(rigs)), rules: make([]Rules, len(rigs)),
		sites: slices.Clone(sites), tables: make([]WeekTable, len(sites)),
	}
	siteIdx := make(map[string]int, len(sites))
	for i, s := range sites {
		if err := s.Tariff.Validate(); err != nil {
			return nil, fmt.Errorf("profit: site %q: %w", s.Name, err)
		}
		siteIdx[s.Name] = i
		f.tables[i] = s.Tariff.Table()
	}
	for r, rig := range rigs {
		if _, dup := f.index[rig.ID]; dup || rig.ID == "" {
			return nil, fmt.Errorf("profit: rig %d: id %q is empty or repeated", r, rig.ID)
		}
		s, ok := siteIdx[rig.Site]
		if !ok {
			return nil, fmt.Errorf("profit: rig %s: unknown site %q", rig.ID, rig.Site)
		}
		f.ids[r], f.index[rig.ID], f.site[r], f.rules[r] = rig.ID, r, int32(s), rig.Rules
		for _, p := range rig.Perf {
			if !(p.Hashrate >= 0 && p.Power >= 0) || math.IsInf(p.Hashrate, 0) || math.IsInf(p.Power, 0) {
				return nil, fmt.Errorf("profit: rig %s %s: hashrate %v and power %v must be finite and non-negative", rig.ID, p.Algorithm, p.Hashrate, p.Power)
			}
			if a, ok := e.algIndex[p.Algorithm]; ok {
				f.hash[r*na+a], f.watts[r*na+a], f.borrowed[r*na+a] = p.Hashrate, p.Power, p.BorrowedFrom
			}
		}
		if !rig.Rules.IsZero() {
			m := make([]uint64, (len(e.options)+63)/64)
			for i, o := range e.options {
				if ok, _ := rig.Rules.Check(o); ok {
					m[i/64] |= 1 << (i % 64)
				}
			}
			f.masks[r] = m
		}
	}
	return f, nil
}

// Len is the number of rigs.
func (f *Fleet) Len() int { return len(f.ids) }

// ID returns rig r's id.
func (f *Fleet) ID(r int) string { return f.ids[r] }

// Index returns the rig's position, or -1.
func (f *Fleet) Index(id string) int {
	if r, ok := f.index[id]; ok {
		return r
	}
	return -1
}

// Rules returns rig r's rules.
func (f *Fleet) Rules(r int) Rules { return f.rules[r] }

// Allowed reports whether rig r may mine option i, and why not.
func (f *Fleet) Allowed(r, i int) (bool, string) {
	if i == Off {
		return true, ""
	}
	return f.rules[r].Check(f.engine.options[i])
}

// BorrowedFrom returns the fingerprint rig r's figures for option i's
// algorithm were borrowed from, or "" when measured on the rig.
func (f *Fleet) BorrowedFrom(r, i int) string {
	return f.borrowed[r*len(f.engine.algs)+f.engine.algIndex[f.engine.options[i].Algorithm]]
}

// ElectricityPrice is rig r's USD/kWh at now.
func (f *Fleet) ElectricityPrice(r int, now time.Time) float64 {
	s := f.site[r]
	return f.tables[s].At(f.sites[s].Tariff.local(now))
}

// Scored is one option's economics for one rig, USD per day.
type Scored struct {
	Option  int32
	Profit  float64
	Revenue float64
	Cost    float64
}

// Score prices option i for rig r at now; Off scores zero. A rig with no
// hash rate for the option's algorithm scores -Inf profit.
func (q *Quote) Score(f *Fleet, r, i int, now time.Time) Scored {
	if i == Off {
		return Scored{Option: Off}
	}
	na := len(f.engine.algs)
	a := f.engine.algIndex[f.engine.options[i].Algorithm]
	h, w := f.hash[r*na+a], f.watts[r*na+a]
	if h <= 0 {
		return Scored{Option: int32(i), Profit: math.Inf(-1)}
	}
	s := Scored{Option: int32(i), Revenue: h * q.rev[i], Cost: PowerCostPerDay(w, f.ElectricityPrice(r, now))}
	s.Profit = s.Revenue - s.Cost
	return s
}

// Ranking holds the top K options of every rig, best first, in buffers
// that are reused across calls to Rank.
type Ranking struct {
	K         int
	top       []Scored // [rig*K + k]
	n         []uint8
	sitePrice []float64
}

// MaxK bounds Ranking.K so counts fit a byte.
const MaxK = 255

// NewRanking allocates room for the top k options of every rig in f.
func NewRanking(f *Fleet, k int) *Ranking {
	k = max(1, min(k, MaxK))
	return &Ranking{K: k, top: make([]Scored, f.Len()*k), n: make([]uint8, f.Len()), sitePrice: make([]float64, len(f.sites))}
}

// Rig returns rig r's ranked options, best first. It aliases the ranking's
// buffer: copy it to keep it past the next Rank.
func (rk *Ranking) Rig(r int) []Scored { return rk.top[r*rk.K : r*rk.K+int(rk.n[r])] }

// Best returns rig r's best option, or an Off entry when it can mine nothing.
func (rk *Ranking) Best(r int) Scored {
	if rk.n[r] == 0 {
		return Scored{Option: Off, Profit: math.Inf(-1)}
	}
	return rk.top[r*rk.K]
}

// rankChunk is how many rigs a worker takes at a time: large enough that
// the shared counter is cold, small enough to balance two to many cores.
const rankChunk = 512

// Rank scores every allowed option for every rig at now and keeps each
// rig's top K in out. Work is split into chunks of rigs over workers
// goroutines (GOMAXPROCS when workers <= 0). It allocates only the
// goroutines, never per rig, and returns ctx's error if cancelled.
func (q *Quote) Rank(ctx context.Context, f *Fleet, now time.Time, workers int, out *Ranking) error {
	if f.engine != q.engine {
		return errors.New("profit: quote and fleet come from different engines")
	}
	if len(out.n) != f.Len() || len(out.sitePrice) != len(f.sites) {
		return errors.New("profit: ranking was made for another fleet")
	}
	for s := range f.sites {
		out.sitePrice[s] = f.tables[s].At(f.sites[s].Tariff.local(now)) * 24 / 1000
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	chunks := (f.Len() + rankChunk - 1) / rankChunk
	workers = max(1, min(workers, chunks))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c := int(next.Add(1) - 1)
				if c >= chunks {
					return
				}
				lo := c * rankChunk
				q.rankRange(f, out, lo, min(lo+rankChunk, f.Len()))
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

func (q *Quote) rankRange(f *Fleet, out *Ranking, lo, hi int) {
	e := f.engine
	na, K := len(e.algs), out.K
	rev := q.rev
	for r := lo; r < hi; r++ {
		top := out.top[r*K : r*K+K]
		n := 0
		kth := math.Inf(-1) // profit an option must beat to enter top
		price := out.sitePrice[f.site[r]]
		mask := f.masks[r]
		hs, ws := f.hash[r*na:r*na+na], f.watts[r*na:r*na+na]
		for a := range na {
			h := hs[a]
			if h <= 0 {
				continue
			}
			c := ws[a] * price
			// Within an algorithm profit falls with revenue per hash, and
			// q.order walks it best first: the first option that misses
			// the top ends the algorithm.
			for _, o32 := range q.order[e.algStart[a]:e.algStart[a+1]] {
				o := int(o32)
				rv := rev[o]
				p := h*rv - c
				if p <= kth {
					break
				}
				if mask != nil && mask[o/64]&(1<<(o%64)) == 0 {
					continue
				}
				n = insertTop(top, n, Scored{Option: int32(o), Profit: p, Revenue: h * rv, Cost: c})
				if n == K {
					kth = top[K-1].Profit
				}
			}
		}
		out.n[r] = uint8(n)
	}
}

// insertTop puts s into the sorted prefix top[:n] and returns the new
// length, dropping the last entry when top is full.
func insertTop(top []Scored, n int, s Scored) int {
	j := n
	if n == len(top) {
		j = n - 1
	} else {
		n++
	}
	for j > 0 && top[j-1].Profit < s.Profit {
		top[j] = top[j-1]
		j--
	}
	top[j] = s
	return n
}
