// Package miners is the controller's side of mining: flight sheets stored
// by name and applied to the rigs a selector picks, miner logs and
// benchmarks run through rig commands. A finished benchmark's results go
// to the per-rig, per-algorithm figures (controller/figures) the profit
// engine ranks options with.
package miners

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/controller/figures"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/market"
	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Bucket names in the controller's database.
const (
	bucketSheets    = "flight_sheets"
	bucketBenchCmds = "benchmark_commands"
)

// Errors the service maps to gRPC codes.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid")
	ErrNoRigs   = errors.New("no rig matches")
	ErrOffline  = errors.New("rig is offline")
)

// Figures is where benchmark results go and what ListBenchmarks lists;
// *figures.Learner fits.
type Figures interface {
	Figures(rigID string) map[string]figures.Figure
	Rigs() []string
	PutBenchmark(rigID string, results []flightsheet.BenchmarkResult, at time.Time) (int, error)
}

// Options tune the store. Zero values take the defaults beside them.
type Options struct {
	// Figures receives benchmark results; required.
	Figures Figures
	// Every is how often finished benchmark commands are collected (1s).
	Every  time.Duration
	Logger *slog.Logger
}

// Store keeps flight sheets and running benchmark commands in the fleet's
// database.
type Store struct {
	f    *fleet.Fleet
	db   *store.DB
	figs Figures
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	pending map[string]string // benchmark command id → rig id

	collectMu  sync.Mutex // one collect at a time
	stop, done chan struct{}
	closeOnce  sync.Once
}

// Open loads the store and starts collecting benchmark results. Call
// Close before closing the database.
func Open(db *store.DB, f *fleet.Fleet, opts Options) (*Store, error) {
	if opts.Figures == nil {
		return nil, errors.New("miners: no figures to store benchmark results in")
	}
	if opts.Every <= 0 {
		opts.Every = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		f: f, db: db, figs: opts.Figures, opts: opts, log: opts.Logger, pending: map[string]string{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if err := s.db.EnsureBuckets(bucketSheets, bucketBenchCmds); err != nil {
		return nil, err
	}
	err := s.db.View(func(tx *store.Tx) error {
		return tx.Bucket([]byte(bucketBenchCmds)).ForEach(func(k, v []byte) error {
			s.pending[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load benchmark commands: %w", err)
	}
	go s.loop()
	return s, nil
}

// Close stops collecting.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
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
		}
	}
}

// All lists every figure, by rig then algorithm.
func (s *Store) All() []*quarryv1.Benchmark {
	var out []*quarryv1.Benchmark
	for _, r := range s.figs.Rigs() {
		out = append(out, s.list(r)...)
	}
	return out
}

func (s *Store) list(rigID string) []*quarryv1.Benchmark {
	m := s.figs.Figures(rigID)
	out := make([]*quarryv1.Benchmark, 0, len(m))
	for _, a := range slices.Sorted(maps.Keys(m)) {
		b := m[a]
		out = append(out, &quarryv1.Benchmark{RigId: rigID, Algorithm: a, Hashrate: b.HashrateHs, PowerW: b.PowerW,
			Source: b.Source, UpdatedUnixNano: b.Updated.UnixNano(), Samples: b.Samples})
	}
	return out
}

// trackBenchmark remembers a benchmark command until its result is in.
func (s *Store) trackBenchmark(cmdID, rigID string) error {
	if err := s.db.Update(func(tx *store.Tx) error {
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
		if err := s.db.Update(func(tx *store.Tx) error {
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

// storeResults hands a benchmark's measurements to the figures.
func (s *Store) storeResults(rigID string, output []byte, at time.Time) (int, error) {
	if len(output) == 0 {
		return 0, nil
	}
	var res []flightsheet.BenchmarkResult
	if err := json.Unmarshal(output, &res); err != nil {
		return 0, err
	}
	return s.figs.PutBenchmark(rigID, res, at)
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
	if err := s.db.Update(func(tx *store.Tx) error {
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
	err := s.db.View(func(tx *store.Tx) error {
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
	err := s.db.View(func(tx *store.Tx) error {
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
	return s.db.Update(func(tx *store.Tx) error {
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
			if len(algos) > 0 && !slices.Contains(algos, market.CanonicalAlgorithm(rec.Algorithm)) {
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
		i := slices.IndexFunc(all, func(r *quarryv1.FlightSheetRecord) bool { return market.CanonicalAlgorithm(r.Algorithm) == a })
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
