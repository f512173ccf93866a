// Package miners is the controller's side of mining: flight sheets stored
// by name and applied to the rigs a selector picks, miner logs and
// benchmarks run through rig commands, and the per-rig, per-algorithm
// figures (hashrate and power) the profit engine ranks options with.
// Figures start from benchmarks and are refined with a moving average of
// the hashrate rigs report while they mine.
package miners

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Bucket names in the controller's database.
const (
	bucketSheets     = "flight_sheets"
	bucketBenchmarks = "benchmarks"
	bucketBenchCmds  = "benchmark_commands"
)

// Errors the service maps to gRPC codes.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid")
	ErrNoRigs   = errors.New("no rig matches")
	ErrOffline  = errors.New("rig is offline")
)

// Sources of a figure.
const (
	SourceBenchmark = "benchmark"
	SourceLive      = "live"
)

// Benchmark is what is known of a rig mining one algorithm.
type Benchmark struct {
	HashrateHs float64   `json:"hashrate_hs"`
	PowerW     float64   `json:"power_w"` // 0 when the rig cannot measure power
	Source     string    `json:"source"`  // SourceBenchmark, or SourceLive once live reports refined it
	Updated    time.Time `json:"updated"`
	Samples    uint64    `json:"samples"`
}

// Options tune the store. Zero values take the defaults beside them.
type Options struct {
	// Alpha is the weight of each live reading in the moving average
	// (0.1): a benchmark is worth about ten reports.
	Alpha float64
	// Every is how often finished benchmark commands are collected and
	// live figures written to disk (1s).
	Every  time.Duration
	Logger *slog.Logger
}

// Store keeps flight sheets and benchmark figures in the fleet's database.
type Store struct {
	f    *fleet.Fleet
	db   *bolt.DB
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	bench   map[string]map[string]*Benchmark // rig → algorithm
	dirty   map[[2]string]bool
	pending map[string]string // benchmark command id → rig id

	collectMu  sync.Mutex // one collect at a time
	stop, done chan struct{}
	closeOnce  sync.Once
}

// Open loads the store and starts collecting benchmark results and live
// figures. Call Close before closing the database.
func Open(f *fleet.Fleet, opts Options) (*Store, error) {
	if opts.Alpha <= 0 || opts.Alpha > 1 {
		opts.Alpha = 0.1
	}
	if opts.Every <= 0 {
		opts.Every = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		f: f, db: f.DB(), opts: opts, log: opts.Logger,
		bench: map[string]map[string]*Benchmark{}, dirty: map[[2]string]bool{}, pending: map[string]string{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if err := store.EnsureBuckets(s.db, bucketSheets, bucketBenchmarks, bucketBenchCmds); err != nil {
		return nil, err
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte(bucketBenchmarks)).ForEach(func(k, v []byte) error {
			rig, algo, ok := strings.Cut(string(k), "/")
			if !ok {
				return fmt.Errorf("benchmark key %q has no rig/algorithm", k)
			}
			b := &Benchmark{}
			if err := json.Unmarshal(v, b); err != nil {
				return fmt.Errorf("benchmark %q: %w", k, err)
			}
			s.put(rig, algo, b)
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketBenchCmds)).ForEach(func(k, v []byte) error {
			s.pending[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load benchmarks: %w", err)
	}
	f.AddObserver(s)
	go s.loop()
	return s, nil
}

// Close stops collecting and writes what is not yet on disk.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return s.flush()
}

func (s *Store) loop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.Every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.collect()
			if err := s.flush(); err != nil {
				s.log.Error("write live benchmark figures", "err", err)
			}
		}
	}
}

func (s *Store) put(rig, algo string, b *Benchmark) {
	m := s.bench[rig]
	if m == nil {
		m = map[string]*Benchmark{}
		s.bench[rig] = m
	}
	m[algo] = b
}

// Benchmarks returns a copy of what is known of rigID, by algorithm. It is
// the profit engine's hashrate and power input.
func (s *Store) Benchmarks(rigID string) map[string]Benchmark {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Benchmark, len(s.bench[rigID]))
	for algo, b := range s.bench[rigID] {
		out[algo] = *b
	}
	return out
}

// All lists every figure, by rig then algorithm.
func (s *Store) All() []*quarryv1.Benchmark {
	s.mu.Lock()
	rigs := make([]string, 0, len(s.bench))
	for r := range s.bench {
		rigs = append(rigs, r)
	}
	s.mu.Unlock()
	sort.Strings(rigs)
	var out []*quarryv1.Benchmark
	for _, r := range rigs {
		out = append(out, s.list(r)...)
	}
	return out
}

func (s *Store) list(rigID string) []*quarryv1.Benchmark {
	m := s.Benchmarks(rigID)
	algos := make([]string, 0, len(m))
	for a := range m {
		algos = append(algos, a)
	}
	sort.Strings(algos)
	out := make([]*quarryv1.Benchmark, 0, len(algos))
	for _, a := range algos {
		b := m[a]
		out = append(out, &quarryv1.Benchmark{RigId: rigID, Algorithm: a, Hashrate: b.HashrateHs, PowerW: b.PowerW,
			Source: b.Source, UpdatedUnixNano: b.Updated.UnixNano(), Samples: b.Samples})
	}
	return out
}

// ObserveReport refines the rig's figure for the algorithm it mines with
// the report's hashrate and measured power (GPUs and CPU package). Only a running miner's real
// reading counts: an unreachable API or a miner warming up is skipped. It
// runs in the fleet's commit path, so it only touches memory.
func (s *Store) ObserveReport(rigID string, r *quarryv1.Report) {
	// GPUs plus the CPU package: a CPU rig's power is its CPU's.
	power, havePower := r.MeasuredPowerW()
	now := time.Unix(0, r.TimeUnixNano)
	if r.TimeUnixNano == 0 {
		now = s.f.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range r.Miners {
		if m.State != "running" || m.Hashrate <= 0 || m.Algorithm == "" {
			continue
		}
		algo := normAlgo(m.Algorithm)
		b := s.bench[rigID][algo]
		if b == nil {
			b = &Benchmark{HashrateHs: m.Hashrate}
			if havePower {
				b.PowerW = power
			}
			s.put(rigID, algo, b)
		} else {
			a := s.opts.Alpha
			b.HashrateHs = a*m.Hashrate + (1-a)*b.HashrateHs
			if havePower {
				if b.PowerW == 0 {
					b.PowerW = power
				} else {
					b.PowerW = a*power + (1-a)*b.PowerW
				}
			}
		}
		b.Source, b.Updated = SourceLive, now
		b.Samples++
		s.dirty[[2]string{rigID, algo}] = true
	}
}

func normAlgo(a string) string { return strings.ToLower(strings.TrimSpace(a)) }

// flush writes the figures changed since the last flush.
func (s *Store) flush() error {
	s.mu.Lock()
	if len(s.dirty) == 0 {
		s.mu.Unlock()
		return nil
	}
	vals := make(map[string][]byte, len(s.dirty))
	for k := range s.dirty {
		b, err := json.Marshal(s.bench[k[0]][k[1]])
		if err != nil {
			s.mu.Unlock()
			return err
		}
		vals[k[0]+"/"+k[1]] = b
	}
	s.dirty = map[[2]string]bool{}
	s.mu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(bucketBenchmarks))
		for k, v := range vals {
			if err := bk.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// trackBenchmark remembers a benchmark command until its result is in.
func (s *Store) trackBenchmark(cmdID, rigID string) error {
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketBenchCmds)).Put([]byte(cmdID), []byte(rigID))
	}); err != nil {
		return err
	}
	s.mu.Lock()
	s.pending[cmdID] = rigID
	s.mu.Unlock()
	return nil
}

// collect stores the results of benchmark commands that have finished.
func (s *Store) collect() {
	s.collectMu.Lock()
	defer s.collectMu.Unlock()
	s.mu.Lock()
	ids := make(map[string]string, len(s.pending))
	for k, v := range s.pending {
		ids[k] = v
	}
	s.mu.Unlock()
	for id, rig := range ids {
		rec, err := s.f.Command(id)
		if err != nil && !errors.Is(err, fleet.ErrUnknownCommand) {
			s.log.Warn("read benchmark command", "command", id, "err", err)
			continue
		}
		if rec != nil {
			switch rec.Status {
			case quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, quarryv1.CommandStatus_COMMAND_STATUS_FAILED:
				n, perr := s.storeResults(rig, rec.Output, time.Unix(0, rec.UpdatedUnixNano))
				if perr != nil {
					s.log.Warn("benchmark output unreadable", "rig", rig, "command", id, "err", perr)
				} else {
					s.log.Info("benchmark results stored", "rig", rig, "command", id, "algorithms", n)
				}
			case quarryv1.CommandStatus_COMMAND_STATUS_EXPIRED:
			default:
				continue // still running
			}
		}
		if err := s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte(bucketBenchCmds)).Delete([]byte(id))
		}); err != nil {
			s.log.Error("forget benchmark command", "command", id, "err", err)
			continue
		}
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}
}

// storeResults replaces the rig's figures with a benchmark's measurements.
func (s *Store) storeResults(rigID string, output []byte, at time.Time) (int, error) {
	if len(output) == 0 {
		return 0, nil
	}
	var res []flightsheet.BenchmarkResult
	if err := json.Unmarshal(output, &res); err != nil {
		return 0, err
	}
	n := 0
	s.mu.Lock()
	for _, r := range res {
		if r.Samples <= 0 || r.HashrateHs <= 0 || r.Algorithm == "" {
			continue
		}
		b := &Benchmark{HashrateHs: r.HashrateHs, Source: SourceBenchmark, Updated: at, Samples: uint64(r.Samples)}
		if r.PowerW != nil {
			b.PowerW = *r.PowerW
		}
		algo := normAlgo(r.Algorithm)
		s.put(rigID, algo, b)
		s.dirty[[2]string{rigID, algo}] = true
		n++
	}
	s.mu.Unlock()
	return n, s.flush()
}

// PutSheet validates a flight sheet and stores it under its name.
func (s *Store) PutSheet(yaml []byte, who string) (*quarryv1.FlightSheetRecord, error) {
	fs, err := ParseSheet(yaml)
	if err != nil {
		return nil, err
	}
	rec := &quarryv1.FlightSheetRecord{
		Name: fs.Name, Coin: fs.Coin, Algorithm: fs.Algorithm, Miner: fs.Miner.Name, Pools: uint32(len(fs.Pools)),
		Yaml: yaml, UpdatedUnixNano: s.f.Now().UnixNano(), UpdatedBy: who,
	}
	b, err := proto.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketSheets)).Put([]byte(fs.Name), b)
	}); err != nil {
		return nil, err
	}
	return rec, nil
}

// ParseSheet parses and validates a flight sheet against the miners this
// build supports. The sha256 pin is required.
func ParseSheet(yaml []byte) (*flightsheet.FlightSheet, error) {
	if len(yaml) == 0 {
		return nil, fmt.Errorf("%w: flight sheet is empty", ErrInvalid)
	}
	if len(yaml) > flightsheet.MaxSize {
		return nil, fmt.Errorf("%w: flight sheet is %d bytes, more than %d", ErrInvalid, len(yaml), flightsheet.MaxSize)
	}
	fs, err := flightsheet.Parse(yaml)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := fs.Validate(minerapi.Default().Names()); err != nil {
		return nil, fmt.Errorf("%w: flight sheet %q: %w", ErrInvalid, fs.Name, err)
	}
	return fs, nil
}

// Sheet returns a stored flight sheet.
func (s *Store) Sheet(name string) (*quarryv1.FlightSheetRecord, error) {
	var rec *quarryv1.FlightSheetRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketSheets)).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("flight sheet %q: %w", name, ErrNotFound)
		}
		rec = &quarryv1.FlightSheetRecord{}
		return proto.Unmarshal(v, rec)
	})
	return rec, err
}

// Sheets lists the stored flight sheets by name, without their YAML.
func (s *Store) Sheets() ([]*quarryv1.FlightSheetRecord, error) {
	var out []*quarryv1.FlightSheetRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketSheets)).ForEach(func(_, v []byte) error {
			rec := &quarryv1.FlightSheetRecord{}
			if err := proto.Unmarshal(v, rec); err != nil {
				return err
			}
			rec.Yaml = nil
			out = append(out, rec)
			return nil
		})
	})
	return out, err
}

// DeleteSheet removes a stored flight sheet.
func (s *Store) DeleteSheet(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketSheets))
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("flight sheet %q: %w", name, ErrNotFound)
		}
		return b.Delete([]byte(name))
	})
}

// sheetsFor picks, for each algorithm, the stored sheet that mines it
// (first by name), or checks the named sheets.
func (s *Store) sheetsFor(algos, names []string) ([]*quarryv1.FlightSheetRecord, error) {
	var out []*quarryv1.FlightSheetRecord
	if len(names) > 0 {
		for _, n := range names {
			rec, err := s.Sheet(n)
			if err != nil {
				return nil, err
			}
			if len(algos) > 0 && !slices.Contains(algos, normAlgo(rec.Algorithm)) {
				return nil, fmt.Errorf("%w: flight sheet %q mines %s, which is not among the algorithms asked for", ErrInvalid, n, rec.Algorithm)
			}
			out = append(out, rec)
		}
		return out, nil
	}
	if len(algos) == 0 {
		return nil, fmt.Errorf("%w: name the algorithms or the flight sheets to benchmark", ErrInvalid)
	}
	all, err := s.Sheets()
	if err != nil {
		return nil, err
	}
	for _, a := range algos {
		i := slices.IndexFunc(all, func(r *quarryv1.FlightSheetRecord) bool { return normAlgo(r.Algorithm) == a })
		if i < 0 {
			return nil, fmt.Errorf("%w: no stored flight sheet mines %s; put one first", ErrInvalid, a)
		}
		rec, err := s.Sheet(all[i].Name)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// Match returns the rigs (not revoked) the selector picks, by name.
func (s *Store) Match(selector string) ([]*quarryv1.Rig, error) {
	sel, err := flightsheet.ParseSelector(selector)
	if err != nil {
		return nil, fmt.Errorf("%w: selector: %w", ErrInvalid, err)
	}
	var out []*quarryv1.Rig
	for _, r := range s.f.Rigs() {
		if !r.Revoked && sel.Matches(fleet.SelectorRig(r)) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
