package sim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/pkg/market"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Options describe a simulated fleet.
type Options struct {
	Addr       string // controller gRPC address, or a group's, comma-separated
	ServerName string // default: the host of the address dialled
	Token      string // join token with enough uses for the rigs not yet enrolled
	DataDir    string // identities, buffers and rig state; reused across runs
	Rigs       int
	Prefix     string // rig names are Prefix-1 … Prefix-N
	Profile    *Profile
	// Interval is the report period; 0 takes the controller's setting,
	// and Saturate makes each rig's reports back to back, keeping up to
	// InFlight (default 1) of them unacknowledged: 1 is a rig in lockstep
	// with its acknowledgements, more is a rig replaying a backlog, which
	// the link sends without waiting, as after an outage.
	Interval time.Duration
	Saturate bool
	InFlight int
	// Shards is how many database files hold the rigs' buffers and state.
	Shards     int
	BufferSize int // reports kept per rig while the controller is away
	// Ramp is how many rigs may be connecting at once; default 64.
	Ramp    int
	Version string
	Log     *slog.Logger
	// Seed makes noise and random failures repeatable.
	Seed uint64
	// Gossip makes each rig a member of the controller's gossip cluster,
	// as the agent is, listening on GossipBind (default 127.0.0.1) with
	// GossipProfile's timings (default lan). At most MaxGossipRigs rigs.
	Gossip        bool
	GossipBind    string
	GossipProfile string
}

// Fleet is a running simulated fleet.
type Fleet struct {
	opts  Options
	rigs  []*simRig
	dbs   []*bolt.DB
	stats *Stats
}

type simRig struct {
	*Rig
	id       *link.Identity
	buf      *link.Buffer
	interval atomic.Int64
	up       atomic.Bool
	wasUp    atomic.Bool
	ackCh    chan struct{}
	gossip   *rigGossip // nil without Options.Gossip

	mu      sync.Mutex
	sentAt  map[uint64]time.Time
	lastAck uint64
}

// Stats counts what the fleet's rigs saw; safe for concurrent use.
type Stats struct {
	connected atomic.Int64
	ever      atomic.Int64
	acked     atomic.Uint64
	made      atomic.Uint64

	mu      sync.Mutex
	measure bool
	lat     []time.Duration

	swMu    sync.Mutex
	swOn    bool
	swAlgo  string               // canonical; "" times any flight sheet
	applied map[string]Applied   // by rig, the first flight sheet while measuring
	arrived map[string]time.Time // by command id, flight sheets while measuring
}

// Applied times one rig's first flight sheet command: when the controller
// queued it (its clock; the same machine's in a benchmark), when it
// arrived on the rig's stream, when the rig's handler began on it (after
// the link recorded it as started) and when it returned the result, which
// the link sends at once.
type Applied struct {
	Queued, Arrived, Received, Done time.Time
	Err                             bool
}

// MeasureSwitch starts (true) or stops timing the first flight sheet each
// rig is sent, and returns those timed so far. With an algorithm, only a
// sheet that moves the rig to it (or that the rig refuses) is timed, so a
// late first assignment is not taken for the switch being measured.
func (s *Stats) MeasureSwitch(on bool, algorithm string) map[string]Applied {
	s.swMu.Lock()
	defer s.swMu.Unlock()
	out := s.applied
	s.swAlgo = market.CanonicalAlgorithm(algorithm)
	s.swOn, s.applied, s.arrived = on, nil, nil
	if on {
		s.applied, s.arrived = map[string]Applied{}, map[string]time.Time{}
	}
	return out
}

func (s *Stats) noteArrived(rig, cmdID string) {
	now := time.Now()
	s.swMu.Lock()
	defer s.swMu.Unlock()
	if _, seen := s.applied[rig]; s.swOn && !seen {
		s.arrived[cmdID] = now
	}
}

// SwitchAcked is how many rigs have answered a flight sheet since
// MeasureSwitch(true).
func (s *Stats) SwitchAcked() int {
	s.swMu.Lock()
	defer s.swMu.Unlock()
	return len(s.applied)
}

func (s *Stats) noteApplied(rig, cmdID, algo string, a Applied) {
	s.swMu.Lock()
	defer s.swMu.Unlock()
	if !s.swOn || (s.swAlgo != "" && !a.Err && algo != s.swAlgo) {
		return
	}
	if _, seen := s.applied[rig]; !seen {
		a.Arrived = s.arrived[cmdID]
		if a.Arrived.IsZero() {
			a.Arrived = a.Received
		}
		delete(s.arrived, cmdID)
		s.applied[rig] = a
	}
}

// timedHandler is a rig's command handler that times flight sheets for
// the switch benchmark.
type timedHandler struct {
	r     *Rig
	stats *Stats
}

func (h timedHandler) HandleCommand(ctx context.Context, cmd *quarryv1.Command) ([]byte, error) {
	got := time.Now()
	out, err := h.r.HandleCommand(ctx, cmd)
	if cmd.Kind == quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET {
		_, algo, _ := h.r.Job()
		h.stats.noteApplied(h.r.Name, cmd.Id, algo, Applied{Queued: time.Unix(0, cmd.CreatedUnixNano), Received: got, Done: time.Now(), Err: err != nil})
	}
	return out, err
}

// Connected is how many rigs have their session up now.
func (s *Stats) Connected() int { return int(s.connected.Load()) }

// EverConnected is how many rigs have had a session up since Run began.
func (s *Stats) EverConnected() int { return int(s.ever.Load()) }

// Acked is how many reports the controller has acknowledged (committed).
func (s *Stats) Acked() uint64 { return s.acked.Load() }

// Made is how many reports the rigs made.
func (s *Stats) Made() uint64 { return s.made.Load() }

// Measure starts (true) or stops keeping each report's time from being
// made until its acknowledgement, and returns those kept so far.
func (s *Stats) Measure(on bool) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.lat
	s.measure, s.lat = on, nil
	return out
}

func (s *Stats) add(d time.Duration) {
	s.mu.Lock()
	if s.measure {
		s.lat = append(s.lat, d)
	}
	s.mu.Unlock()
}

// New opens the fleet's storage and enrolls every rig that has no
// certificate yet.
func New(ctx context.Context, o Options) (*Fleet, error) {
	if o.Rigs < 1 {
		return nil, errors.New("at least one rig is required")
	}
	if o.Gossip && o.Rigs > MaxGossipRigs {
		return nil, fmt.Errorf("gossip per rig is for at most %d rigs, not %d: without it the controller still reaches every rig over gRPC", MaxGossipRigs, o.Rigs)
	}
	if o.GossipBind == "" {
		o.GossipBind = "127.0.0.1"
	}
	if o.Profile == nil {
		p, err := DefaultProfile()
		if err != nil {
			return nil, err
		}
		o.Profile = p
	}
	if o.Prefix == "" {
		o.Prefix = "sim"
	}
	if o.Shards <= 0 {
		o.Shards = 16
	}
	if o.BufferSize <= 0 {
		o.BufferSize = 1000
	}
	if o.Ramp <= 0 {
		o.Ramp = 64
	}
	if o.InFlight < 0 || o.InFlight > o.BufferSize {
		return nil, fmt.Errorf("in-flight reports: %d is outside 1 to the buffer's %d", o.InFlight, o.BufferSize)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	for _, a := range o.addrs() {
		if err := link.CheckAddr(a); err != nil {
			return nil, fmt.Errorf("controller address %q: %w", a, err)
		}
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, err
	}
	f := &Fleet{opts: o, stats: &Stats{}}
	for i := range o.Shards {
		// Without fsync: a killed simulator loses nothing the kernel
		// already has, which is what its tests kill it for, and a
		// thousand rigs' fsyncs would measure the simulator's disk
		// rather than the controller.
		// Each file holds hundreds of rigs' buffers, which free pages
		// with every acknowledgement: bbolt's default freelist, a sorted
		// array written out with every commit, cost more than the
		// reports themselves, so it is kept as a map and rebuilt on open.
		db, err := bolt.Open(filepath.Join(o.DataDir, fmt.Sprintf("rigs-%02d.db", i)), 0o600,
			&bolt.Options{Timeout: time.Second, NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("open rig store %d (is another simulator using %s?): %w", i, o.DataDir, err)
		}
		f.dbs = append(f.dbs, db)
	}
	f.rigs = make([]*simRig, o.Rigs)
	var reader *apiReader
	if o.Profile.minerAPIs(o.Rigs) {
		reader = newAPIReader()
	}
	sheets := &sheetCache{}
	var g errgroup.Group
	g.SetLimit(16)
	for i := range o.Rigs {
		name := fmt.Sprintf("%s-%d", o.Prefix, i+1)
		h := fnv.New32a()
		h.Write([]byte(name))
		db := f.dbs[int(h.Sum32())%len(f.dbs)]
		prefix := name + "/"
		g.Go(func() error {
			r, err := newRig(name, i, o.Profile, db, prefix, o.Seed, reader)
			if err != nil {
				return err
			}
			r.sheets = sheets
			buf, err := link.OpenBufferPrefixed(db, prefix, o.BufferSize, o.Log.With("rig", name))
			if err != nil {
				r.Close()
				return fmt.Errorf("rig %s buffer: %w", name, err)
			}
			id, err := f.identity(ctx, name)
			if err != nil {
				r.Close()
				return err
			}
			sr := &simRig{Rig: r, id: id, buf: buf, sentAt: map[uint64]time.Time{}, ackCh: make(chan struct{}, 1), lastAck: buf.Acked()}
			sr.interval.Store(int64(o.Interval))
			f.rigs[i] = sr
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (f *Fleet) identity(ctx context.Context, name string) (*link.Identity, error) {
	dir := filepath.Join(f.opts.DataDir, "pki", name)
	id, err := link.LoadIdentity(dir)
	if err == nil || !errors.Is(err, link.ErrNotEnrolled) {
		return id, err
	}
	if f.opts.Token == "" {
		return nil, fmt.Errorf("rig %s is not enrolled and no join token was given", name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var errs []error
	for _, addr := range f.opts.addrs() {
		if id, err = link.Enroll(ctx, dir, addr, f.opts.Token, name); err == nil {
			return id, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return nil, fmt.Errorf("rig %s: %w", name, errors.Join(errs...))
}

// addrs is Addr as a list: one controller, or each member of a group.
func (o Options) addrs() []string {
	var out []string
	for a := range strings.SplitSeq(o.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Stats is the fleet's counters.
func (f *Fleet) Stats() *Stats { return f.stats }

// Rig returns the rig named name, or nil.
func (f *Fleet) Rig(name string) *Rig {
	for _, r := range f.rigs {
		if r.Name == name {
			return r.Rig
		}
	}
	return nil
}

// Close stops the rigs' miner APIs and closes the fleet's storage; call
// it after Run returns.
func (f *Fleet) Close() {
	for _, r := range f.rigs {
		if r != nil {
			r.Rig.Close()
		}
	}
	for _, db := range f.dbs {
		db.Close()
	}
}

// Run connects every rig and reports until ctx ends. Cue files dropped in
// DataDir/cues ("crash-NAME", "lose-gpu-NAME") make that rig's miner crash
// or one of its GPUs fall off the bus, for demonstrations and tests.
func (f *Fleet) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if f.opts.Gossip {
		for _, r := range f.rigs {
			g, err := f.startGossip(ctx, r)
			if err != nil {
				cancel()
				wg.Wait()
				return fmt.Errorf("rig %s gossip: %w", r.Name, err)
			}
			r.gossip = g
			wg.Add(1)
			go func() { defer wg.Done(); g.run(ctx) }()
		}
	}
	// Rigs connect at most Ramp at a time, the next when one is up (or
	// has failed once), as a real fleet coming online does; thousands of
	// TLS handshakes at once only time each other out.
	ramp := make(chan struct{}, max(1, f.opts.Ramp))
	for _, r := range f.rigs {
		wg.Add(1)
		go func() { defer wg.Done(); f.report(ctx, r) }()
	}
	for _, r := range f.rigs {
		select {
		case ramp <- struct{}{}:
		case <-ctx.Done():
		}
		var once sync.Once
		wg.Add(1)
		go func() { defer wg.Done(); f.link(ctx, r, func() { once.Do(func() { <-ramp }) }) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); f.watchCues(ctx) }()
	wg.Wait()
	return nil
}

func (f *Fleet) link(ctx context.Context, r *simRig, settled func()) {
	defer settled()
	ctrls, err := link.NewControllers(f.opts.addrs(), filepath.Join(f.opts.DataDir, "pki", r.Name))
	if err != nil {
		f.opts.Log.Error("controller addresses", "rig", r.Name, "err", err)
		return
	}
	c := &link.Client{
		Controllers: ctrls, ServerName: f.opts.ServerName, Identity: r.id, Buffer: r.buf, Handler: timedHandler{r.Rig, f.stats},
		Log: f.opts.Log.With("rig", r.Name),
		Hello: func() *quarryv1.Hello {
			return &quarryv1.Hello{Hostname: r.Name, Version: f.opts.Version, Inventory: r.Inventory()}
		},
		OnCommand: func(cmd *quarryv1.Command) {
			if cmd.Kind == quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET {
				f.stats.noteArrived(r.Name, cmd.Id)
			}
		},
		OnState: func(up bool) {
			settled()
			if r.gossip != nil {
				r.gossip.linkState(up)
			}
			if up && !r.wasUp.Swap(true) {
				f.stats.ever.Add(1)
			}
			if r.up.Swap(up) != up {
				if up {
					f.stats.connected.Add(1)
				} else {
					f.stats.connected.Add(-1)
				}
			}
		},
		OnSettings: func(s *quarryv1.AgentSettings) {
			if r.gossip != nil {
				r.gossip.settings(s)
			}
			if f.opts.Interval == 0 && s.ReportIntervalSeconds > 0 {
				r.interval.Store(int64(time.Duration(s.ReportIntervalSeconds) * time.Second))
			}
		},
		OnAck: func(upTo uint64) { f.acked(r, upTo) },
	}
	if err := c.Run(ctx); err != nil {
		f.opts.Log.Error("rig link stopped", "rig", r.Name, "err", err)
	}
	if r.up.Swap(false) {
		f.stats.connected.Add(-1)
	}
}

func (f *Fleet) acked(r *simRig, upTo uint64) {
	now := time.Now()
	r.mu.Lock()
	if upTo > r.lastAck {
		f.stats.acked.Add(upTo - r.lastAck)
		for seq := r.lastAck + 1; seq <= upTo; seq++ {
			if t, ok := r.sentAt[seq]; ok {
				f.stats.add(now.Sub(t))
				delete(r.sentAt, seq)
			}
		}
		r.lastAck = upTo
	}
	r.mu.Unlock()
	select {
	case r.ackCh <- struct{}{}:
	default:
	}
}

// report makes the rig's reports: on a timer whose first tick is spread
// over the interval, as a real fleet's are, or back to back when
// saturating.
func (f *Fleet) report(ctx context.Context, r *simRig) {
	if f.opts.Saturate {
		window := uint64(max(f.opts.InFlight, 1))
		for ctx.Err() == nil {
			seq := f.makeReport(ctx, r)
			for {
				r.mu.Lock()
				done := r.lastAck+window > seq
				r.mu.Unlock()
				if done || seq == 0 {
					break
				}
				select {
				case <-ctx.Done():
					return
				case <-r.ackCh:
				}
			}
		}
		return
	}
	wait := func() time.Duration {
		if d := time.Duration(r.interval.Load()); d > 0 {
			return d
		}
		return 10 * time.Second
	}
	t := time.NewTimer(time.Duration(rand.Int64N(int64(wait()))))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.makeReport(ctx, r)
		t.Reset(wait())
	}
}

func (f *Fleet) makeReport(ctx context.Context, r *simRig) uint64 {
	now := time.Now()
	rep := r.Report(ctx, now)
	rep.TimeUnixNano = now.UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	seq, err := r.buf.Append(rep)
	if err != nil {
		f.opts.Log.Error("buffer report", "rig", r.Name, "err", err)
		return 0
	}
	f.stats.made.Add(1)
	// Bounded by the buffer: entries past its size are forgotten.
	if len(r.sentAt) < f.opts.BufferSize {
		r.sentAt[seq] = now
	}
	return seq
}

func (f *Fleet) watchCues(ctx context.Context) {
	dir := filepath.Join(f.opts.DataDir, "cues")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		f.opts.Log.Warn("cue directory", "err", err)
		return
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			_ = os.Remove(filepath.Join(dir, name))
			switch {
			case strings.HasPrefix(name, "crash-"):
				if r := f.Rig(strings.TrimPrefix(name, "crash-")); r != nil {
					f.opts.Log.Info("cue: miner crash", "rig", r.Name)
					r.Crash()
				}
			case strings.HasPrefix(name, "lose-gpu-"):
				if r := f.Rig(strings.TrimPrefix(name, "lose-gpu-")); r != nil {
					f.opts.Log.Info("cue: GPU lost", "rig", r.Name)
					r.LoseGPU()
				}
			default:
				f.opts.Log.Warn("unknown cue ignored", "file", name)
			}
		}
	}
}
