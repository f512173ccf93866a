// Package link is the agent's side of the controller connection: the
// durable buffer of unacknowledged reports, enrollment and certificate
// renewal, and the session that replays, reports and runs commands.
package link

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

const (
	bucketReports  = "reports"
	bucketMeta     = "meta"
	bucketExecuted = "executed_commands"
	bucketEvents   = "pending_events"
)

// Bounds of the pending event queue: events wait there until a report
// carries them, at most eventsPerReport in one report.
const (
	maxPendingEvents = 1024
	eventsPerReport  = 64
)

var (
	keyNextSeq = []byte("next_seq")
	keyAcked   = []byte("acked_seq")
	keyDropped = []byte("dropped")
	// keyEventSeq orders pending events; keyEventsDropped counts those
	// dropped because the queue was full, until a report says so.
	keyEventSeq      = []byte("next_event_seq")
	keyEventsDropped = []byte("events_dropped")
)

// Buckets are the agent database buckets this package owns.
var Buckets = []string{bucketReports, bucketMeta, bucketExecuted, bucketEvents}

// Buffer keeps reports until the controller acknowledges them. It is
// bounded: when full, the oldest report is dropped, counted and logged.
type Buffer struct {
	db  *bolt.DB
	max int
	log *slog.Logger
	// Bucket names; a prefix lets many buffers share one database.
	reports, meta, executed, events []byte
	// commandTx writes the executed-command records. Buffers sharing one
	// database batch them: a fleet-wide command reaches all of them at
	// once, and one transaction each would queue on the file's writer.
	commandTx func(func(*bolt.Tx) error) error

	mu      sync.Mutex
	count   int
	notify  chan struct{}
	dropped uint64
}

// OpenBuffer opens the buffer in db, keeping at most max reports.
func OpenBuffer(db *bolt.DB, max int, log *slog.Logger) (*Buffer, error) {
	return OpenBufferPrefixed(db, "", max, log)
}

// OpenBufferPrefixed opens a buffer whose buckets are named with prefix in
// front, so that many buffers (one per simulated rig) share one database
// file instead of holding a file each.
func OpenBufferPrefixed(db *bolt.DB, prefix string, max int, log *slog.Logger) (*Buffer, error) {
	if max < 1 {
		return nil, fmt.Errorf("buffer size must be at least 1, got %d", max)
	}
	b := &Buffer{db: db, max: max, log: log, notify: make(chan struct{}, 1),
		reports: []byte(prefix + bucketReports), meta: []byte(prefix + bucketMeta), executed: []byte(prefix + bucketExecuted),
		events: []byte(prefix + bucketEvents), commandTx: db.Update}
	if prefix != "" {
		b.commandTx = db.Batch
	}
	if err := store.EnsureBuckets(db, string(b.reports), string(b.meta), string(b.executed), string(b.events)); err != nil {
		return nil, err
	}
	err := db.View(func(tx *bolt.Tx) error {
		b.count = tx.Bucket(b.reports).Stats().KeyN
		b.dropped = store.ParseU64(tx.Bucket(b.meta).Get(keyDropped))
		return nil
	})
	return b, err
}

// AddEvent stores an event durably until a report carries it: the next
// Append moves it into its report in the same transaction, so an event is
// sent exactly once (the controller drops replayed reports by sequence)
// and survives an agent restart. When the queue is full the oldest event
// is dropped and the next report says how many were.
func (b *Buffer) AddEvent(e *quarryv1.Event) error {
	v, err := proto.Marshal(e)
	if err != nil {
		return fmt.Errorf("queue event: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	err = b.db.Update(func(tx *bolt.Tx) error {
		meta, eb := tx.Bucket(b.meta), tx.Bucket(b.events)
		seq := store.ParseU64(meta.Get(keyEventSeq)) + 1
		if err := meta.Put(keyEventSeq, store.U64(seq)); err != nil {
			return err
		}
		if err := eb.Put(store.U64(seq), v); err != nil {
			return err
		}
		dropped := 0
		for n := countKeys(eb); n > maxPendingEvents; n-- {
			k, _ := eb.Cursor().First()
			if err := eb.Delete(k); err != nil {
				return err
			}
			dropped++
		}
		if dropped > 0 {
			return meta.Put(keyEventsDropped, store.U64(store.ParseU64(meta.Get(keyEventsDropped))+uint64(dropped)))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue event: %w", err)
	}
	return nil
}

// PendingEvents is how many events wait for a report.
func (b *Buffer) PendingEvents() int {
	n := 0
	_ = b.db.View(func(tx *bolt.Tx) error {
		n = countKeys(tx.Bucket(b.events))
		return nil
	})
	return n
}

func countKeys(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// takeEvents moves up to eventsPerReport pending events into r within tx.
func (b *Buffer) takeEvents(tx *bolt.Tx, r *quarryv1.Report) error {
	meta, eb := tx.Bucket(b.meta), tx.Bucket(b.events)
	if n := store.ParseU64(meta.Get(keyEventsDropped)); n > 0 {
		r.Events = append(r.Events, &quarryv1.Event{TimeUnixNano: time.Now().UnixNano(), Kind: "events_dropped",
			Message: fmt.Sprintf("%d older events were dropped while reports could not be made", n)})
		if err := meta.Delete(keyEventsDropped); err != nil {
			return err
		}
	}
	c := eb.Cursor()
	for k, v := c.First(); k != nil && len(r.Events) < eventsPerReport; k, v = c.First() {
		e := &quarryv1.Event{}
		if err := proto.Unmarshal(v, e); err != nil {
			// A record this build cannot read is dropped rather than
			// blocking every later event.
			e = &quarryv1.Event{TimeUnixNano: time.Now().UnixNano(), Kind: "event_unreadable", Message: "a queued event could not be read: " + err.Error()}
		}
		r.Events = append(r.Events, e)
		if err := eb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Append stamps r with the next sequence number, moves pending events into
// it and stores it durably.
func (b *Buffer) Append(r *quarryv1.Report) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var seq uint64
	droppedNow := 0
	nEvents := len(r.Events)
	err := b.db.Update(func(tx *bolt.Tx) error {
		r.Events = r.Events[:nEvents] // a retried transaction starts over
		if err := b.takeEvents(tx, r); err != nil {
			return err
		}
		meta := tx.Bucket(b.meta)
		seq = store.ParseU64(meta.Get(keyNextSeq))
		if seq == 0 {
			seq = 1
		}
		r.Seq = seq
		v, err := proto.Marshal(r)
		if err != nil {
			return err
		}
		rb := tx.Bucket(b.reports)
		if err := rb.Put(store.U64(seq), v); err != nil {
			return err
		}
		if err := meta.Put(keyNextSeq, store.U64(seq+1)); err != nil {
			return err
		}
		n := b.count + 1
		c := rb.Cursor()
		for k, _ := c.First(); k != nil && n > b.max; k, _ = c.First() {
			if err := rb.Delete(k); err != nil {
				return err
			}
			n--
			droppedNow++
		}
		if droppedNow > 0 {
			return meta.Put(keyDropped, store.U64(b.dropped+uint64(droppedNow)))
		}
		return nil
	})
	if err != nil {
		r.Events = r.Events[:nEvents]
		return 0, fmt.Errorf("buffer report: %w", err)
	}
	b.count += 1 - droppedNow
	if droppedNow > 0 {
		b.dropped += uint64(droppedNow)
		b.log.Warn("report buffer full; dropped oldest reports", "dropped_now", droppedNow, "dropped_total", b.dropped, "capacity", b.max)
	}
	select {
	case b.notify <- struct{}{}:
	default:
	}
	return seq, nil
}

// Notify fires after Append.
func (b *Buffer) Notify() <-chan struct{} { return b.notify }

// Range returns up to limit buffered reports with seq >= from, in order.
func (b *Buffer) Range(from uint64, limit int) ([]*quarryv1.Report, error) {
	var out []*quarryv1.Report
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(b.reports).Cursor()
		for k, v := c.Seek(store.U64(from)); k != nil && len(out) < limit; k, v = c.Next() {
			r := &quarryv1.Report{}
			if err := proto.Unmarshal(v, r); err != nil {
				return fmt.Errorf("buffered report %d: %w", store.ParseU64(k), err)
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// AckUpTo removes every report with seq <= upTo.
func (b *Buffer) AckUpTo(upTo uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	removed := 0
	err := b.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(b.meta)
		if store.ParseU64(meta.Get(keyAcked)) < upTo {
			if err := meta.Put(keyAcked, store.U64(upTo)); err != nil {
				return err
			}
		}
		rb := tx.Bucket(b.reports)
		c := rb.Cursor()
		for k, _ := c.First(); k != nil && store.ParseU64(k) <= upTo; k, _ = c.First() {
			if err := rb.Delete(k); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack reports: %w", err)
	}
	b.count -= removed
	return nil
}

// Acked is the highest sequence number the controller has acknowledged.
func (b *Buffer) Acked() uint64 {
	var n uint64
	_ = b.db.View(func(tx *bolt.Tx) error {
		n = store.ParseU64(tx.Bucket(b.meta).Get(keyAcked))
		return nil
	})
	return n
}

// Len is the number of buffered reports.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.count
}

// Dropped is how many reports were dropped because the buffer was full.
func (b *Buffer) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}

// ErrInterrupted is the result of a command the agent was running when it
// stopped; it is not run again.
var ErrInterrupted = errors.New("agent stopped while running this command; not run again")

// BeginCommand records that a command is about to run. It returns the
// stored result and true if the command was already seen.
func (b *Buffer) BeginCommand(id string) (*quarryv1.CommandResult, bool, error) {
	var prior *quarryv1.CommandResult
	seen := false
	err := b.commandTx(func(tx *bolt.Tx) error {
		prior, seen = nil, false // a batched transaction may run this again
		eb := tx.Bucket(b.executed)
		v := eb.Get([]byte(id))
		if v != nil {
			seen = true
			if len(v) > 8 {
				prior = &quarryv1.CommandResult{}
				return proto.Unmarshal(v[8:], prior)
			}
			prior = &quarryv1.CommandResult{CommandId: id, Status: quarryv1.CommandStatus_COMMAND_STATUS_FAILED, Error: ErrInterrupted.Error()}
			return nil
		}
		return eb.Put([]byte(id), store.U64(uint64(time.Now().UnixNano())))
	})
	return prior, seen, err
}

// FinishCommand stores a command's result.
func (b *Buffer) FinishCommand(res *quarryv1.CommandResult) error {
	v, err := proto.Marshal(res)
	if err != nil {
		return err
	}
	stored := append(store.U64(uint64(time.Now().UnixNano())), v...)
	return b.commandTx(func(tx *bolt.Tx) error {
		return tx.Bucket(b.executed).Put([]byte(res.CommandId), stored)
	})
}

// PruneCommands forgets executed commands older than age. Commands expire at
// the controller long before that, so they cannot be redelivered.
func (b *Buffer) PruneCommands(age time.Duration) error {
	cut := uint64(time.Now().Add(-age).UnixNano())
	return b.db.Update(func(tx *bolt.Tx) error {
		eb := tx.Bucket(b.executed)
		var old [][]byte
		_ = eb.ForEach(func(k, v []byte) error {
			if len(v) >= 8 && store.ParseU64(v[:8]) < cut {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range old {
			if err := eb.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
