package fleet

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// DefaultCommandTTL is how long a command waits for an offline rig.
const DefaultCommandTTL = 24 * time.Hour

// QueueCommand persists a command for a rig and, if the rig is connected,
// hands it to its stream. A command for an offline rig waits until the rig
// returns or the command expires.
func (f *Fleet) QueueCommand(rigID string, kind quarryv1.CommandKind, payload []byte, ttl time.Duration) (*quarryv1.CommandRecord, error) {
	rec, err := f.newCommand(rigID, kind, payload, ttl)
	if err != nil {
		return nil, err
	}
	if err := f.putCommand(rec, true); err != nil {
		return nil, err
	}
	f.deliver(rec)
	return rec, nil
}

// CommandRequest is one command of a QueueCommands batch.
type CommandRequest struct {
	RigID   string
	Kind    quarryv1.CommandKind
	Payload []byte
	TTL     time.Duration
	// Audit, when set, is written in the same transaction as the
	// command, its Result set to "queued ID" or the error.
	Audit *quarryv1.AuditEntry
}

// QueueCommands is QueueCommand for many rigs at once: every command and
// its audit entry commit in one transaction, one disk sync for the batch
// instead of two per command, and only then is each handed to its rig's
// stream. A request that cannot be queued (an unknown rig) fails alone;
// a failed commit fails them all, and nothing is delivered.
func (f *Fleet) QueueCommands(reqs []CommandRequest) ([]*quarryv1.CommandRecord, []error) {
	recs := make([]*quarryv1.CommandRecord, len(reqs))
	errs := make([]error, len(reqs))
	type put struct {
		key, val []byte
		pending  []byte
	}
	puts := make([]put, len(reqs))
	memo := auditMemo{}
	// The whole batch is checked, named and timed at once: a fleet-wide
	// switch queues ten thousand commands, and a lock and a random read
	// for each let every busy stream run between them.
	known := make([]bool, len(reqs))
	f.mu.Lock()
	for i, r := range reqs {
		_, known[i] = f.rigs[r.RigID]
	}
	f.mu.Unlock()
	ids := make([]byte, commandIDBytes*len(reqs))
	_, _ = rand.Read(ids) // crypto/rand never fails: it fills ids or crashes the process
	now := f.opts.Now()
	for i, r := range reqs {
		rec, err := commandRecord(r.RigID, known[i], r.Kind, r.Payload, r.TTL, ids[i*commandIDBytes:(i+1)*commandIDBytes], now)
		if err == nil {
			var b []byte
			if b, err = proto.Marshal(rec); err == nil {
				recs[i], puts[i] = rec, put{key: []byte(rec.Command.Id), val: b, pending: pendingKey(rec.RigId, rec.Command.Id)}
			}
		}
		errs[i] = err
		if a := r.Audit; a != nil {
			a.Result = "queued"
			if err != nil {
				a.Result = "error: " + err.Error()
			} else {
				a.Result += " " + rec.Command.Id
			}
			// Outside the transaction, which holds up every other writer.
			cleanAudit(a, memo)
		}
	}
	err := f.db.Update(func(tx *store.Tx) error {
		cb, pb := tx.Bucket([]byte(bucketCommands)), tx.Bucket([]byte(bucketPending))
		for i, p := range puts {
			if recs[i] != nil {
				if err := cb.Put(p.key, p.val); err != nil {
					return err
				}
				if err := pb.Put(p.pending, nil); err != nil {
					return err
				}
			}
			if a := reqs[i].Audit; a != nil {
				if err := f.putAudit(tx, a); err != nil {
					return fmt.Errorf("audit: %w", err)
				}
			}
		}
		return nil
	})
	if err != nil {
		f.log.Error("queue commands", "commands", len(reqs), "err", err)
		for i := range reqs {
			recs[i], errs[i] = nil, err
		}
		return recs, errs
	}
	f.deliver(recs...)
	return recs, errs
}

// newCommand builds a pending command record for a known rig.
func (f *Fleet) newCommand(rigID string, kind quarryv1.CommandKind, payload []byte, ttl time.Duration) (*quarryv1.CommandRecord, error) {
	f.mu.Lock()
	_, ok := f.rigs[rigID]
	f.mu.Unlock()
	id := make([]byte, commandIDBytes)
	_, _ = rand.Read(id) // crypto/rand never fails: it fills id or crashes the process
	return commandRecord(rigID, ok, kind, payload, ttl, id, f.opts.Now())
}

// commandIDBytes is how many random bytes name a command.
const commandIDBytes = 8

// commandRecord builds a pending command record; known says whether the
// fleet has the rig, and id holds the command's random bytes.
func commandRecord(rigID string, known bool, kind quarryv1.CommandKind, payload []byte, ttl time.Duration, id []byte, now time.Time) (*quarryv1.CommandRecord, error) {
	if kind == quarryv1.CommandKind_COMMAND_KIND_UNSPECIFIED {
		return nil, fmt.Errorf("command kind is required")
	}
	if ttl <= 0 {
		ttl = DefaultCommandTTL
	}
	if !known {
		return nil, fmt.Errorf("%w %q", ErrUnknownRig, rigID)
	}
	return &quarryv1.CommandRecord{
		Command: &quarryv1.Command{
			Id:              "cmd-" + hex.EncodeToString(id),
			Kind:            kind,
			Payload:         payload,
			CreatedUnixNano: now.UnixNano(),
			ExpiresUnixNano: now.Add(ttl).UnixNano(),
		},
		RigId:           rigID,
		Status:          quarryv1.CommandStatus_COMMAND_STATUS_PENDING,
		UpdatedUnixNano: now.UnixNano(),
	}, nil
}

func (f *Fleet) deliver(recs ...*quarryv1.CommandRecord) {
	sessions := make([]*Session, len(recs))
	f.mu.Lock()
	for i, rec := range recs {
		if rec != nil {
			sessions[i] = f.sessions[rec.RigId]
		}
	}
	f.mu.Unlock()
	for i, s := range sessions {
		if s == nil {
			continue
		}
		select {
		case s.commands <- recs[i].Command:
		default:
			// The stream is saturated; the command stays pending and goes
			// out on the next connect.
			f.log.Warn("command queue full; delivering on reconnect", "rig", recs[i].RigId, "command", recs[i].Command.Id)
		}
	}
}

func pendingKey(rigID, cmdID string) []byte { return []byte(rigID + "/" + cmdID) }

func (f *Fleet) putCommand(rec *quarryv1.CommandRecord, pending bool) error {
	b, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	return f.db.Update(func(tx *store.Tx) error {
		if err := tx.Bucket([]byte(bucketCommands)).Put([]byte(rec.Command.Id), b); err != nil {
			return err
		}
		pb := tx.Bucket([]byte(bucketPending))
		if pending {
			return pb.Put(pendingKey(rec.RigId, rec.Command.Id), nil)
		}
		return pb.Delete(pendingKey(rec.RigId, rec.Command.Id))
	})
}

// Command returns a command's record.
func (f *Fleet) Command(id string) (*quarryv1.CommandRecord, error) {
	var rec *quarryv1.CommandRecord
	err := f.db.View(func(tx *store.Tx) error {
		v := tx.Bucket([]byte(bucketCommands)).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("%w %q", ErrUnknownCommand, id)
		}
		rec = &quarryv1.CommandRecord{}
		return proto.Unmarshal(v, rec)
	})
	return rec, err
}

// PendingCommands returns the commands still owed to a rig, oldest first,
// after marking expired ones as such.
func (f *Fleet) PendingCommands(rigID string) ([]*quarryv1.Command, error) {
	now := f.opts.Now().UnixNano()
	// Most rigs have nothing pending: look first without a write
	// transaction (and its disk sync).
	any := false
	_ = f.db.View(func(tx *store.Tx) error {
		k, _ := tx.Bucket([]byte(bucketPending)).Cursor().Seek([]byte(rigID + "/"))
		any = k != nil && strings.HasPrefix(string(k), rigID+"/")
		return nil
	})
	if !any {
		return nil, nil
	}
	var out []*quarryv1.Command
	err := f.db.Update(func(tx *store.Tx) error {
		pb := tx.Bucket([]byte(bucketPending))
		cb := tx.Bucket([]byte(bucketCommands))
		prefix := []byte(rigID + "/")
		c := pb.Cursor()
		var expired [][]byte
		for k, _ := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, _ = c.Next() {
			id := k[len(prefix):]
			v := cb.Get(id)
			if v == nil {
				expired = append(expired, append([]byte(nil), k...))
				continue
			}
			rec := &quarryv1.CommandRecord{}
			if err := proto.Unmarshal(v, rec); err != nil {
				return err
			}
			if rec.Command.ExpiresUnixNano != 0 && rec.Command.ExpiresUnixNano < now {
				rec.Status = quarryv1.CommandStatus_COMMAND_STATUS_EXPIRED
				rec.Error = "expired before the rig came back"
				rec.UpdatedUnixNano = now
				b, err := proto.Marshal(rec)
				if err != nil {
					return err
				}
				if err := cb.Put(id, b); err != nil {
					return err
				}
				expired = append(expired, append([]byte(nil), k...))
				continue
			}
			out = append(out, rec.Command)
		}
		for _, k := range expired {
			if err := pb.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pending commands: %w", err)
	}
	// Ids are random; order by creation so commands run in the order given.
	sortCommands(out)
	return out, nil
}

func sortCommands(cs []*quarryv1.Command) {
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && cs[j].CreatedUnixNano < cs[j-1].CreatedUnixNano; j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

// MarkSent records that a command went out on a stream.
// CommandHandedToStream times cmd from being queued to now, when it was
// handed to its rig's stream.
func (f *Fleet) CommandHandedToStream(cmd *quarryv1.Command) {
	d := f.opts.Now().Sub(time.Unix(0, cmd.GetCreatedUnixNano()))
	f.cmdSendMu.Lock()
	f.cmdSend.observe(max(d, 0))
	f.cmdSendMu.Unlock()
}

func (f *Fleet) MarkSent(id string) error {
	return f.updateCommand(id, func(rec *quarryv1.CommandRecord) bool {
		if rec.Status != quarryv1.CommandStatus_COMMAND_STATUS_PENDING {
			return false
		}
		rec.Status = quarryv1.CommandStatus_COMMAND_STATUS_SENT
		return true
	}, true)
}

// CompleteCommand stores an agent's result for a command it owns.
func (f *Fleet) CompleteCommand(rigID string, res *quarryv1.CommandResult) error {
	var owner string
	err := f.updateCommand(res.CommandId, func(rec *quarryv1.CommandRecord) bool {
		owner = rec.RigId
		if rec.RigId != rigID {
			return false
		}
		rec.Status = res.Status
		if rec.Status != quarryv1.CommandStatus_COMMAND_STATUS_FAILED {
			rec.Status = quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED
		}
		rec.Error = res.Error
		rec.Output = res.Output
		return true
	}, false)
	if err != nil {
		return err
	}
	if owner != rigID {
		return fmt.Errorf("command %q belongs to another rig", res.CommandId)
	}
	return nil
}

// updateCommand changes a stored command. Every rig's stream marks its
// commands sent and stores their results on its own goroutine, so a
// switch that moves 10,000 rigs at once would otherwise be 20,000 write
// transactions, each with its own disk sync, queued behind one another;
// bbolt's Batch commits the calls that arrive together in one. fn may run
// more than once (Batch retries the rest of a batch alone when one call
// fails), so it only sets fields from what it is given.
func (f *Fleet) updateCommand(id string, fn func(*quarryv1.CommandRecord) bool, keepPending bool) error {
	return f.db.Batch(func(tx *store.Tx) error {
		cb := tx.Bucket([]byte(bucketCommands))
		v := cb.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("%w %q", ErrUnknownCommand, id)
		}
		rec := &quarryv1.CommandRecord{}
		if err := proto.Unmarshal(v, rec); err != nil {
			return err
		}
		if !fn(rec) {
			return nil
		}
		rec.UpdatedUnixNano = f.opts.Now().UnixNano()
		b, err := proto.Marshal(rec)
		if err != nil {
			return err
		}
		if err := cb.Put([]byte(id), b); err != nil {
			return err
		}
		if !keepPending {
			return tx.Bucket([]byte(bucketPending)).Delete(pendingKey(rec.RigId, id))
		}
		return nil
	})
}
