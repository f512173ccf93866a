// Package fleet is the controller's durable view of the fleet: rigs and
// their latest state, report ingestion with exactly-once accounting,
// commands with delivery tracking, join tokens, admin credentials and the
// audit log. Everything lives in one bbolt file. It serves AgentService
// to rigs (AgentServer) and FleetService to admins (FleetServer).
package fleet

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Bucket names.
const (
	bucketRigs     = "rigs"
	bucketCommands = "commands"
	bucketPending  = "pending_commands"
	bucketTokens   = "join_tokens"
	bucketAdmins   = "admin_tokens"
	bucketAudit    = "audit"
	bucketRevoked  = "revoked"
	bucketHistory  = "rig_history"
	bucketAdminUse = "admin_token_use"
)

// Buckets lists every bucket this package owns, for store.Open.
var Buckets = []string{bucketRigs, bucketCommands, bucketPending, bucketTokens, bucketAdmins, bucketAudit, bucketRevoked, bucketHistory, bucketAdminUse}

// Errors callers map to gRPC status codes.
var (
	ErrUnknownRig     = errors.New("unknown rig")
	ErrRevoked        = errors.New("rig certificate has been revoked")
	ErrUnknownCommand = errors.New("unknown command")
	ErrClosed         = errors.New("fleet is shutting down")
	ErrBadPageToken   = errors.New("bad page token")
	ErrBadAuditFilter = errors.New("bad audit filter")
	ErrBadLabel       = errors.New("bad label")
)

// Options tune the fleet store.
type Options struct {
	// MaxBatch bounds how many reports one bbolt transaction commits.
	MaxBatch int
	// CommitDelay is how long the committer waits, after a report finds
	// it idle, for more to share the transaction: at 1,000 reports a
	// second each would otherwise pay for its own commit and two disk
	// syncs. Zero commits at once. A full batch never waits.
	CommitDelay time.Duration
	// MaxEvents is how many recent events are kept per rig.
	MaxEvents int
	// HistoryLen is how many report rollups are kept per rig.
	HistoryLen int
	// AuditMaxAge and AuditMaxEntries bound the audit log; older entries
	// and, beyond the count, the oldest ones are dropped as new ones come.
	AuditMaxAge     time.Duration
	AuditMaxEntries int
	// MaxClockSkew is how far ahead of the controller's clock a report's
	// time may be; beyond it the report is taken as received now.
	MaxClockSkew time.Duration
	Now          func() time.Time
	Logger       *slog.Logger
}

func (o *Options) fill() {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 4096
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = 50
	}
	if o.HistoryLen <= 0 {
		o.HistoryLen = 360
	}
	if o.AuditMaxAge <= 0 {
		o.AuditMaxAge = DefaultAuditMaxAge
	}
	if o.AuditMaxEntries <= 0 {
		o.AuditMaxEntries = DefaultAuditMaxEntries
	}
	if o.MaxClockSkew <= 0 {
		o.MaxClockSkew = DefaultMaxClockSkew
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Defaults of the bounds in Options.
const (
	DefaultAuditMaxAge     = 90 * 24 * time.Hour
	DefaultAuditMaxEntries = 100_000
	DefaultMaxClockSkew    = 5 * time.Minute
)

// Fleet is the controller's fleet state.
type Fleet struct {
	db   *store.DB
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	rigs     map[string]*quarryv1.Rig
	sessions map[string]*Session
	revoked  map[string]bool

	ingest   chan ingestItem
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
	stats    IngestStats
	observer []ReportObserver
	// A switch times 10,000 commands at once, one per rig's stream; they
	// take their own lock, not the one the committer holds.
	cmdSendMu sync.Mutex
	cmdSend   LatencyHistogram
	auditSeq  atomic.Uint64 // breaks ties between audit entries in one nanosecond

	regMu sync.Mutex // serialises enrolment name choice

	auditMu    sync.Mutex
	auditCount int // entries in the audit bucket; -1 until first counted
}

// ReportObserver is told about every committed report, after the commit.
// Billing meters energy and the metrics exporter updates gauges this way.
type ReportObserver interface {
	ObserveReport(rigID string, r *quarryv1.Report)
}

// IngestStats are counters for the metrics endpoint.
type IngestStats struct {
	Committed   uint64
	Duplicates  uint64
	Batches     uint64
	LastBatchNs int64
	// AckLatency is how long reports waited from arriving at Ingest to
	// their acknowledgement being handed to the rig's stream: the queue
	// before the committer, the commit with its disk sync, and the
	// observers of committed reports.
	AckLatency LatencyHistogram
	// CommandSendLatency is how long commands took from being queued to
	// being handed to their rig's stream: the controller's own share of
	// how long a switch takes to reach the fleet.
	CommandSendLatency LatencyHistogram
}

// ackLatencyBounds are the upper bounds, in seconds, of AckLatency's
// buckets.
var ackLatencyBounds = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// LatencyHistogram counts durations into buckets with fixed upper bounds,
// as a Prometheus histogram does; the last count is above every bound.
type LatencyHistogram struct {
	Counts [len(ackLatencyBounds) + 1]uint64
	Sum    time.Duration
}

// Bounds returns the buckets' upper bounds in seconds.
func (LatencyHistogram) Bounds() []float64 { return ackLatencyBounds[:] }

// Count is the number of durations observed.
func (h *LatencyHistogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

func (h *LatencyHistogram) observe(d time.Duration) {
	i, _ := slices.BinarySearch(ackLatencyBounds[:], d.Seconds())
	h.Counts[i]++
	h.Sum += d
}

func (h *LatencyHistogram) add(o *LatencyHistogram) {
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.Sum += o.Sum
}

type ingestItem struct {
	rigID    string
	report   *quarryv1.Report
	ack      func(seq uint64)
	received time.Time
}

// Open loads the fleet state from db (whose buckets must exist) and starts
// the committer.
func Open(db *store.DB, opts Options) (*Fleet, error) {
	opts.fill()
	if err := db.EnsureBuckets(Buckets...); err != nil {
		return nil, err
	}
	f := &Fleet{
		db:       db,
		opts:     opts,
		log:      opts.Logger,
		rigs:     make(map[string]*quarryv1.Rig),
		sessions: make(map[string]*Session),
		revoked:  make(map[string]bool),
		ingest:   make(chan ingestItem, opts.MaxBatch),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),

		auditCount: -1,
	}
	if err := f.migrateAdminTokens(); err != nil {
		return nil, err
	}
	err := db.View(func(tx *store.Tx) error {
		if err := f.loadRigs(tx); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketRevoked)).ForEach(func(k, _ []byte) error {
			f.revoked[string(k)] = true
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load fleet state: %w", err)
	}
	go f.commitLoop()
	return f, nil
}

// AddObserver registers an observer of committed reports. Call before
// agents connect.
func (f *Fleet) AddObserver(o ReportObserver) {
	f.mu.Lock()
	f.observer = append(f.observer, o)
	f.mu.Unlock()
}

// Close stops the committer after it has committed and acknowledged
// everything already handed to it.
func (f *Fleet) Close() {
	f.stopOnce.Do(func() { close(f.stop) })
	<-f.done
}

// Now returns the fleet clock.
func (f *Fleet) Now() time.Time { return f.opts.Now() }

// RegisterRig records a newly enrolled rig.
func (f *Fleet) RegisterRig(id, name, hostname string) error {
	now := f.opts.Now()
	r := &quarryv1.Rig{Id: id, Name: name, Hostname: hostname, LastSeenUnixNano: now.UnixNano()}
	b, err := proto.Marshal(r)
	if err != nil {
		return err
	}
	if err := f.db.Update(func(tx *store.Tx) error {
		return tx.Bucket([]byte(bucketRigs)).Put([]byte(id), b)
	}); err != nil {
		return fmt.Errorf("register rig: %w", err)
	}
	f.mu.Lock()
	f.rigs[id] = r
	f.mu.Unlock()
	return nil
}

// Known reports whether a rig is enrolled, and whether it is revoked.
func (f *Fleet) Known(id string) (known, revoked bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, known = f.rigs[id]
	return known, f.revoked[id]
}

// Resolve finds a rig by id or name.
func (f *Fleet) Resolve(idOrName string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.rigs[idOrName]; ok {
		return idOrName, nil
	}
	// Names are unique and set by the controller; a hostname is what the
	// rig says, so it is only a fallback when no name matches.
	var found []string
	for id, r := range f.rigs {
		if r.Name == idOrName {
			found = append(found, id)
		}
	}
	if len(found) == 0 {
		for id, r := range f.rigs {
			if r.Hostname == idOrName {
				found = append(found, id)
			}
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("%w %q", ErrUnknownRig, idOrName)
	default:
		sort.Strings(found)
		return "", fmt.Errorf("rig name %q is ambiguous: matches %v", idOrName, found)
	}
}

// Rigs returns a copy of every rig, sorted by name then id. Only the
// rigs' top-level fields are read under the fleet's lock: a rig's nested
// messages, maps and lists are never changed once stored (a report or an
// update replaces them), so the deep copy, about a second for 100,000
// rigs, is made outside it and the committer does not wait for it.
func (f *Fleet) Rigs() []*quarryv1.Rig {
	f.mu.Lock()
	out := make([]*quarryv1.Rig, 0, len(f.rigs))
	for id, r := range f.rigs {
		v := &quarryv1.Rig{}
		f.fillView(v, id, r)
		out = append(out, v)
	}
	f.mu.Unlock()
	for i, v := range out {
		out[i] = proto.Clone(v).(*quarryv1.Rig)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Id < out[j].Id
	})
	return out
}

// EachRig calls fn with a view of every rig, in no particular order, under
// the fleet's lock. The view is valid only during the call and shares its
// fields with the fleet's own record, so fn must neither keep nor change
// it nor call into the fleet; in return a caller that only summarises the
// fleet (the dashboard's overview of 100,000 rigs) copies nothing.
func (f *Fleet) EachRig(fn func(r *quarryv1.Rig)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// One view, refilled for each rig, since fn keeps none.
	v := &quarryv1.Rig{}
	for id, r := range f.rigs {
		f.fillView(v, id, r)
		fn(v)
	}
}

// fillView sets every field of v from the stored record r, sharing its
// nested values, with the fleet's live state (online, revoked). The
// caller holds f.mu.
func (f *Fleet) fillView(v *quarryv1.Rig, id string, r *quarryv1.Rig) {
	_, v.Online = f.sessions[id]
	v.Revoked = f.revoked[id]
	v.Id, v.Name, v.Hostname, v.Version = r.Id, r.Name, r.Hostname, r.Version
	v.LastSeenUnixNano, v.LastSeq, v.Reports, v.SeqGaps = r.LastSeenUnixNano, r.LastSeq, r.Reports, r.SeqGaps
	v.Host, v.Gpus, v.Miners, v.Events = r.Host, r.Gpus, r.Miners, r.Events
	v.Labels, v.Tags, v.GossipStatus, v.InstalledMiners = r.Labels, r.Tags, r.GossipStatus, r.InstalledMiners
}

// Rig returns one rig's snapshot.
func (f *Fleet) Rig(id string) (*quarryv1.Rig, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rigs[id]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownRig, id)
	}
	c := proto.Clone(r).(*quarryv1.Rig)
	_, c.Online = f.sessions[id]
	c.Revoked = f.revoked[id]
	return c, nil
}

// UpdateRig applies fn to a rig's record and persists it; used for fields
// that change outside reports (tags, gossip state).
func (f *Fleet) UpdateRig(id string, fn func(r *quarryv1.Rig)) error {
	f.mu.Lock()
	r, ok := f.rigs[id]
	if !ok {
		f.mu.Unlock()
		return fmt.Errorf("%w %q", ErrUnknownRig, id)
	}
	fn(r)
	b, err := proto.Marshal(r)
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.db.Update(func(tx *store.Tx) error {
		return tx.Bucket([]byte(bucketRigs)).Put([]byte(id), b)
	})
}

// LastSeq is the highest committed report sequence number of a rig.
func (f *Fleet) LastSeq(id string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.rigs[id]; ok {
		return r.LastSeq
	}
	return 0
}

// Stats returns a copy of the ingest counters.
func (f *Fleet) Stats() IngestStats {
	f.mu.Lock()
	st := f.stats
	f.mu.Unlock()
	f.cmdSendMu.Lock()
	st.CommandSendLatency = f.cmdSend
	f.cmdSendMu.Unlock()
	return st
}

// Ingest hands a report to the committer. ack is called with the report's
// sequence number once it is durably committed (or was already committed
// before, for a replayed duplicate). Ingest blocks when the committer is
// behind, which pushes back on the agent's stream.
//
// A report dated further ahead than MaxClockSkew (or not dated) is taken as
// made when it was received, so a rig's clock cannot stop its billing meter
// or push its history into the future.
func (f *Fleet) Ingest(ctx context.Context, rigID string, r *quarryv1.Report, ack func(seq uint64)) error {
	now := f.opts.Now().UnixNano()
	if t := r.GetTimeUnixNano(); t <= 0 || t > now+f.opts.MaxClockSkew.Nanoseconds() {
		r.TimeUnixNano = now
	}
	select {
	case f.ingest <- ingestItem{rigID: rigID, report: r, ack: ack, received: time.Now()}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-f.stop:
		return ErrClosed
	}
}

func (f *Fleet) commitLoop() {
	defer close(f.done)
	batch := make([]ingestItem, 0, f.opts.MaxBatch)
	var delay *time.Timer
	if f.opts.CommitDelay > 0 {
		delay = time.NewTimer(f.opts.CommitDelay)
		delay.Stop()
		defer delay.Stop()
	}
	for {
		select {
		case it := <-f.ingest:
			batch = append(batch[:0], it)
		case <-f.stop:
			f.drainOnStop(batch[:0])
			return
		}
		f.gather(&batch)
		if delay != nil && len(batch) < f.opts.MaxBatch {
			delay.Reset(f.opts.CommitDelay)
		wait:
			for len(batch) < f.opts.MaxBatch {
				select {
				case it := <-f.ingest:
					batch = append(batch, it)
				case <-delay.C:
					break wait
				case <-f.stop:
					f.commit(batch)
					f.drainOnStop(batch[:0])
					return
				}
			}
			delay.Stop()
		}
		f.commit(batch)
	}
}

// drainOnStop commits what was already accepted, so nothing handed to
// the committer is lost on a clean shutdown.
func (f *Fleet) drainOnStop(batch []ingestItem) {
	for {
		select {
		case it := <-f.ingest:
			batch = append(batch[:0], it)
			f.gather(&batch)
			f.commit(batch)
		default:
			return
		}
	}
}

func (f *Fleet) gather(batch *[]ingestItem) {
	for len(*batch) < f.opts.MaxBatch {
		select {
		case it := <-f.ingest:
			*batch = append(*batch, it)
		default:
			return
		}
	}
}

func (f *Fleet) commit(batch []ingestItem) {
	start := time.Now()
	fresh := make([]bool, len(batch))
	type dirtyRig struct {
		id  string
		val []byte
	}
	var dirty []dirtyRig
	seen := make(map[string]bool)
	var dups uint64
	// Apply to the cached rigs under the lock and marshal them there, so the
	// transaction below writes a consistent snapshot. If it fails, the
	// touched rigs are reloaded from the file.
	f.mu.Lock()
	for i, it := range batch {
		r, ok := f.rigs[it.rigID]
		if !ok {
			continue // unknown rigs never reach ingest; be safe anyway
		}
		seq := it.report.GetSeq()
		if seq <= r.LastSeq {
			dups++
			continue
		}
		if r.LastSeq != 0 && seq > r.LastSeq+1 {
			r.SeqGaps += seq - r.LastSeq - 1
		}
		fresh[i] = true
		applyReport(r, it.report, f.opts.MaxEvents)
		if !seen[it.rigID] {
			seen[it.rigID] = true
			dirty = append(dirty, dirtyRig{id: it.rigID})
		}
	}
	var merr error
	for i := range dirty {
		if dirty[i].val, merr = proto.Marshal(f.rigs[dirty[i].id]); merr != nil {
			break
		}
	}
	obs := f.observer
	f.mu.Unlock()

	err := merr
	if err == nil {
		err = f.db.Update(func(tx *store.Tx) error {
			rb := tx.Bucket([]byte(bucketRigs))
			hb := tx.Bucket([]byte(bucketHistory))
			for _, d := range dirty {
				if err := rb.Put([]byte(d.id), d.val); err != nil {
					return err
				}
			}
			for i, it := range batch {
				if !fresh[i] {
					continue
				}
				if err := appendHistory(hb, it.rigID, it.report, f.opts.HistoryLen); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		// Nothing is acknowledged: agents keep the reports and replay.
		f.log.Error("commit reports failed; agents will replay", "reports", len(batch), "err", err)
		f.reload(seen)
		return
	}
	took := time.Since(start)
	for i, it := range batch {
		if fresh[i] {
			for _, o := range obs {
				o.ObserveReport(it.rigID, it.report)
			}
		}
	}
	// The latencies are counted before any acknowledgement goes out, so a
	// rig that has its ack finds its report in the figures.
	var lat LatencyHistogram
	now := time.Now()
	for _, it := range batch {
		if it.ack != nil {
			lat.observe(now.Sub(it.received))
		}
	}
	f.mu.Lock()
	f.stats.Committed += uint64(len(batch)) - dups
	f.stats.Duplicates += dups
	f.stats.Batches++
	f.stats.LastBatchNs = took.Nanoseconds()
	f.stats.AckLatency.add(&lat)
	f.mu.Unlock()
	for _, it := range batch {
		if it.ack != nil {
			it.ack(it.report.GetSeq())
		}
	}
}

// reload restores cached rigs from the file after a failed commit.
func (f *Fleet) reload(ids map[string]bool) {
	_ = f.db.View(func(tx *store.Tx) error {
		rb := tx.Bucket([]byte(bucketRigs))
		f.mu.Lock()
		defer f.mu.Unlock()
		for id := range ids {
			r := &quarryv1.Rig{}
			if v := rb.Get([]byte(id)); v != nil && proto.Unmarshal(v, r) == nil {
				f.rigs[id] = r
			}
		}
		return nil
	})
}

func applyReport(r *quarryv1.Rig, rep *quarryv1.Report, maxEvents int) {
	r.LastSeq = rep.GetSeq()
	r.Reports++
	r.LastSeenUnixNano = rep.GetTimeUnixNano()
	if rep.Host != nil {
		r.Host = rep.Host
	}
	r.Gpus = rep.Gpus
	r.Miners = rep.Miners
	if len(rep.Events) > 0 {
		r.Events = append(r.Events, rep.Events...)
		if n := len(r.Events) - maxEvents; n > 0 {
			r.Events = append(r.Events[:0:0], r.Events[n:]...)
		}
	}
}

func appendHistory(hb *store.Bucket, rigID string, rep *quarryv1.Report, keep int) error {
	b, err := hb.CreateBucketIfNotExists([]byte(rigID))
	if err != nil {
		return err
	}
	v, err := encodeRollup(rep)
	if err != nil {
		return err
	}
	if err := b.Put(store.U64(rep.Seq), v); err != nil {
		return err
	}
	// Keys are sequence numbers, so everything below seq-keep+1 is older
	// than the window; deleting from the front keeps this O(1) amortised.
	if rep.Seq < uint64(keep) {
		return nil
	}
	floor := store.U64(rep.Seq - uint64(keep) + 1)
	c := b.Cursor()
	for k, _ := c.First(); k != nil && string(k) < string(floor); k, _ = c.First() {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// History returns up to limit of a rig's most recent report rollups, oldest
// first.
func (f *Fleet) History(rigID string, limit int) ([]*quarryv1.Report, error) {
	var out []*quarryv1.Report
	err := f.db.View(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(bucketHistory)).Bucket([]byte(rigID))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			r := &quarryv1.Report{}
			if err := proto.Unmarshal(v, r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// Rig list pages are bounded in count and in encoded bytes, so no answer
// nears the gRPC message limit however large the fleet or its rigs.
const (
	DefaultRigPage  = 500
	MaxRigPage      = 1000
	maxRigPageBytes = 2 << 20
)

// RigsPage returns up to pageSize rigs (0: the default) after pageToken,
// sorted by name then id like Rigs, and the token for the next page,
// empty on the last one.
func (f *Fleet) RigsPage(pageSize int, pageToken string) ([]*quarryv1.Rig, string, error) {
	if pageSize <= 0 {
		pageSize = DefaultRigPage
	}
	pageSize = min(pageSize, MaxRigPage)
	var afterName, afterID string
	if pageToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(pageToken)
		name, id, ok := strings.Cut(string(b), "\x00")
		if err != nil || !ok || id == "" {
			return nil, "", fmt.Errorf("page token %q is not one this controller issued: %w", pageToken, ErrBadPageToken)
		}
		afterName, afterID = name, id
	}
	type key struct{ name, id string }
	less := func(a, b key) bool {
		if a.name != b.name {
			return a.name < b.name
		}
		return a.id < b.id
	}
	after := key{afterName, afterID}
	f.mu.Lock()
	keys := make([]key, 0, len(f.rigs))
	for id, r := range f.rigs {
		k := key{r.Name, id}
		if pageToken == "" || less(after, k) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return less(keys[i], keys[j]) })
	var out []*quarryv1.Rig
	size := 0
	for _, k := range keys {
		if len(out) == pageSize {
			break
		}
		c := proto.Clone(f.rigs[k.id]).(*quarryv1.Rig)
		_, c.Online = f.sessions[k.id]
		c.Revoked = f.revoked[k.id]
		n := proto.Size(c)
		if len(out) > 0 && size+n > maxRigPageBytes {
			break
		}
		size += n
		out = append(out, c)
	}
	more := len(out) < len(keys)
	f.mu.Unlock()
	next := ""
	if more {
		last := out[len(out)-1]
		next = base64.RawURLEncoding.EncodeToString([]byte(last.Name + "\x00" + last.Id))
	}
	return out, next, nil
}

// Label limits: labels drive selectors, the electricity site and billing,
// so keys are plain identifiers and both sides are short.
const (
	MaxLabels        = 32
	maxLabelKeyBytes = 63
)

func validLabelKey(k string) bool {
	if k == "" || len(k) > maxLabelKeyBytes {
		return false
	}
	for _, c := range k {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/'
		if !ok {
			return false
		}
	}
	return true
}

// SetLabels sets and removes a rig's controller-side labels and returns
// the rig afterwards. Nothing changes if any label is invalid.
func (f *Fleet) SetLabels(id string, set map[string]string, remove []string) (*quarryv1.Rig, error) {
	for k, v := range set {
		if !validLabelKey(k) {
			return nil, fmt.Errorf("label key %q: want 1-%d letters, digits, '-', '_', '.' or '/': %w", k, maxLabelKeyBytes, ErrBadLabel)
		}
		if len(v) > MaxFieldBytes || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, fmt.Errorf("label %s: the value must be at most %d bytes without control characters: %w", k, MaxFieldBytes, ErrBadLabel)
		}
	}
	var tooMany bool
	err := f.UpdateRig(id, func(r *quarryv1.Rig) {
		labels := maps.Clone(r.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		for _, k := range remove {
			delete(labels, k)
		}
		maps.Copy(labels, set)
		if len(labels) > MaxLabels {
			tooMany = true
			return
		}
		r.Labels = labels
	})
	if err != nil {
		return nil, err
	}
	if tooMany {
		return nil, fmt.Errorf("a rig has at most %d labels: %w", MaxLabels, ErrBadLabel)
	}
	return f.Rig(id)
}
