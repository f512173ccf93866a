// Package figures is the controller's one source of what each rig does on
// each algorithm: its hash rate and power draw. A benchmark sets a figure;
// the reports of a rig mining the algorithm then refine it with a moving
// average. The switcher ranks options with these figures, MinerService
// lists them, and PowerW, the draw of one report, is what billing meters
// and the dashboard and metrics show.
//
// Rules for learning from a report (ObserveReport):
//   - Algorithm names are folded with market.CanonicalAlgorithm, so
//     "KawPow", "kawpow" and "KAWPOW" are one figure, and the names match
//     the market's and the switcher's options.
//   - A miner gives a hash rate sample only while it is "running" with a
//     finite positive hash rate. A miner that is crashed, starting, or
//     whose API did not answer gives none: its rate is unknown, not zero,
//     and because its rate is unknown so is the rig's total on its
//     algorithm, which then gets no sample from that report at all.
//     A "stopped" miner is known to mine nothing and is left out.
//   - Miners running the same algorithm (on different GPUs) add up.
//   - The report's power is attributed to an algorithm only when every
//     miner in the report is running and all of them hash that one
//     algorithm: with two algorithms the cards' split is unknown, and a
//     miner in an unknown state may be drawing power of its own.
//   - A figure's power is 0 while unknown; a rig cannot hash on nothing.
//
// A benchmark result replaces the figure (Source "benchmark"); the next
// live sample starts refining it (Source "live"), worth 1/Alpha reports.
package figures

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/market"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Bucket holds the figures, keyed "rig/algorithm". The name predates live
// refinement and is kept so existing figures load.
const Bucket = "benchmarks"

// Sources of a figure.
const (
	SourceBenchmark = "benchmark"
	SourceLive      = "live"
)

// MaxAlgorithms bounds the figures one rig can have: a rig names its
// algorithms itself, and must not grow the controller's memory and
// database without end. Figures for algorithms past the limit are dropped.
const MaxAlgorithms = 64

// Figure is what is known of a rig mining one algorithm.
type Figure struct {
	HashrateHs float64   `json:"hashrate_hs"`
	PowerW     float64   `json:"power_w"` // 0 while unknown
	Source     string    `json:"source"`  // SourceBenchmark, or SourceLive once reports refined it
	Updated    time.Time `json:"updated"`
	Samples    uint64    `json:"samples"`
}

// Options tune the learner. Zero values take the defaults beside them.
type Options struct {
	// Alpha is the weight of each live reading in the moving average
	// (0.3).
	Alpha float64
	// Every is how often changed figures are written to disk (1s).
	Every  time.Duration
	Logger *slog.Logger
	// Now stamps reports that carry no time; nil is time.Now.
	Now func() time.Time
}

// Learner keeps every rig's figures in memory and in the controller's
// database. It is a fleet report observer.
type Learner struct {
	db   *store.DB
	opts Options
	log  *slog.Logger

	mu    sync.Mutex
	figs  map[string]map[string]*Figure // rig → algorithm
	dirty map[[2]string]bool

	stop, done chan struct{}
	closeOnce  sync.Once
}

// Open loads the figures stored in db and starts writing changes back.
// Call Close before closing the database.
func Open(db *store.DB, opts Options) (*Learner, error) {
	if !(opts.Alpha > 0 && opts.Alpha <= 1) {
		opts.Alpha = 0.3
	}
	if opts.Every <= 0 {
		opts.Every = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Learner{db: db, opts: opts, log: opts.Logger, figs: map[string]map[string]*Figure{}, dirty: map[[2]string]bool{},
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := db.EnsureBuckets(Bucket); err != nil {
		return nil, err
	}
	if err := l.load(); err != nil {
		return nil, fmt.Errorf("load figures: %w", err)
	}
	go l.loop()
	return l, nil
}

// load reads the stored figures. Keys written before names were folded
// with market.CanonicalAlgorithm are rewritten under the folded name; when
// two fold together, the newer figure wins.
func (l *Learner) load() error {
	var stale [][]byte
	err := l.db.View(func(tx *store.Tx) error {
		return tx.Bucket([]byte(Bucket)).ForEach(func(k, v []byte) error {
			rig, name, ok := strings.Cut(string(k), "/")
			if !ok || rig == "" {
				return fmt.Errorf("figure %q has no rig/algorithm", k)
			}
			f := &Figure{}
			if err := json.Unmarshal(v, f); err != nil {
				return fmt.Errorf("figure %q: %w", k, err)
			}
			algo := market.CanonicalAlgorithm(name)
			if algo != name {
				stale = append(stale, append([]byte(nil), k...))
				l.dirty[[2]string{rig, algo}] = true
			}
			if old := l.figs[rig][algo]; old == nil || f.Updated.After(old.Updated) {
				l.put(rig, algo, f)
			}
			return nil
		})
	})
	if err != nil || len(stale) == 0 {
		return err
	}
	if err := l.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(Bucket))
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return l.flush()
}

// Close stops the writer and writes what is not yet on disk.
func (l *Learner) Close() error {
	l.closeOnce.Do(func() { close(l.stop) })
	<-l.done
	return l.flush()
}

func (l *Learner) loop() {
	defer close(l.done)
	t := time.NewTicker(l.opts.Every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if err := l.flush(); err != nil {
				l.log.Error("write rig figures", "err", err)
			}
		}
	}
}

// put stores f unless the rig is at MaxAlgorithms; the caller holds mu (or
// is loading).
func (l *Learner) put(rig, algo string, f *Figure) bool {
	m := l.figs[rig]
	if m == nil {
		m = map[string]*Figure{}
		l.figs[rig] = m
	}
	if _, have := m[algo]; !have && len(m) >= MaxAlgorithms {
		return false
	}
	m[algo] = f
	return true
}

// Figures returns a copy of what is known of rigID, by canonical
// algorithm name.
func (l *Learner) Figures(rigID string) map[string]Figure {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]Figure, len(l.figs[rigID]))
	for algo, f := range l.figs[rigID] {
		out[algo] = *f
	}
	return out
}

// Rigs lists the rigs with figures, sorted.
func (l *Learner) Rigs() []string {
	l.mu.Lock()
	out := make([]string, 0, len(l.figs))
	for r, m := range l.figs {
		if len(m) > 0 {
			out = append(out, r)
		}
	}
	l.mu.Unlock()
	sort.Strings(out)
	return out
}

// sample is one report's reading of an algorithm.
type sample struct {
	hashrate float64
	unknown  bool // a miner on it is in an unknown state
}

// algoSample is a report's reading of one canonical algorithm.
type algoSample struct {
	algo string
	sample
}

// readReport applies the package's rules to a report: the hash rate
// sample per canonical algorithm, appended to buf, and the algorithm the
// report's power belongs to ("" when it belongs to none). It runs for
// every committed report, so it fills the caller's memory rather than a
// map of its own: a rig runs one miner or a few.
func readReport(r *quarryv1.Report, buf []algoSample) ([]algoSample, string) {
	algos := buf[:0]
	attributable := true
	for _, m := range r.GetMiners() {
		if m.GetState() == "stopped" {
			continue
		}
		algo := market.CanonicalAlgorithm(m.GetAlgorithm())
		h := m.GetHashrate()
		hashing := m.GetState() == "running" && h > 0 && !math.IsInf(h, 0)
		if !hashing {
			attributable = false
		}
		if algo == "" {
			attributable = false
			continue
		}
		k := slices.IndexFunc(algos, func(a algoSample) bool { return a.algo == algo })
		if k < 0 {
			k = len(algos)
			algos = append(algos, algoSample{algo: algo})
		}
		if hashing {
			algos[k].hashrate += h
		} else {
			algos[k].unknown = true
		}
	}
	algos = slices.DeleteFunc(algos, func(a algoSample) bool { return a.unknown })
	power := ""
	if attributable && len(algos) == 1 {
		power = algos[0].algo
	}
	return algos, power
}

// ObserveReport refines the rig's figures with a committed report, by the
// rules in the package comment. It runs in the fleet's commit path, so it
// only touches memory.
func (l *Learner) ObserveReport(rigID string, r *quarryv1.Report) {
	var buf [4]algoSample
	algos, powerAlgo := readReport(r, buf[:])
	if len(algos) == 0 {
		return
	}
	power, havePower := r.MeasuredPowerW()
	havePower = havePower && powerAlgo != "" && power > 0 && !math.IsInf(power, 0)
	at := time.Unix(0, r.GetTimeUnixNano())
	if r.GetTimeUnixNano() == 0 {
		at = l.opts.Now()
	}
	a := l.opts.Alpha
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range algos {
		algo := s.algo
		f := l.figs[rigID][algo]
		if f == nil {
			f = &Figure{HashrateHs: s.hashrate}
			if !l.put(rigID, algo, f) {
				continue
			}
		} else {
			f.HashrateHs += a * (s.hashrate - f.HashrateHs)
		}
		if havePower && algo == powerAlgo {
			if f.PowerW == 0 {
				f.PowerW = power
			} else {
				f.PowerW += a * (power - f.PowerW)
			}
		}
		f.Source, f.Updated = SourceLive, at
		f.Samples++
		l.dirty[[2]string{rigID, algo}] = true
	}
}

// PutBenchmark replaces the rig's figures with a benchmark's measurements
// and writes them at once. It returns how many it kept: a run without
// samples or hash rate is skipped.
func (l *Learner) PutBenchmark(rigID string, results []flightsheet.BenchmarkResult, at time.Time) (int, error) {
	n := 0
	l.mu.Lock()
	for _, r := range results {
		algo := market.CanonicalAlgorithm(r.Algorithm)
		if r.Samples <= 0 || !(r.HashrateHs > 0) || math.IsInf(r.HashrateHs, 0) || algo == "" {
			continue
		}
		f := &Figure{HashrateHs: r.HashrateHs, Source: SourceBenchmark, Updated: at, Samples: uint64(r.Samples)}
		if r.PowerW != nil && *r.PowerW > 0 && !math.IsInf(*r.PowerW, 0) {
			f.PowerW = *r.PowerW
		}
		if l.put(rigID, algo, f) {
			l.dirty[[2]string{rigID, algo}] = true
			n++
		}
	}
	l.mu.Unlock()
	return n, l.flush()
}

// flush writes the figures changed since the last flush.
func (l *Learner) flush() error {
	l.mu.Lock()
	if len(l.dirty) == 0 {
		l.mu.Unlock()
		return nil
	}
	vals := make(map[string][]byte, len(l.dirty))
	for k := range l.dirty {
		f := l.figs[k[0]][k[1]]
		if f == nil {
			continue
		}
		b, err := json.Marshal(f)
		if err != nil {
			l.mu.Unlock()
			return err
		}
		vals[k[0]+"/"+k[1]] = b
	}
	clear(l.dirty)
	l.mu.Unlock()
	return l.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(Bucket))
		for k, v := range vals {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}
