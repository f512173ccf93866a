package fleet

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/pkg/redact"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Audit appends an entry to the audit log. The time is set here. Callers
// leave secrets out; credentials that slip into the free-text fields
// anyway (an error quoting a flight sheet, a token pasted as a name) are
// redacted before anything is stored.
func (f *Fleet) Audit(e *quarryv1.AuditEntry) error {
	e.TimeUnixNano = f.opts.Now().UnixNano()
	e.Who, e.Target, e.Result, e.Detail = redact.Text(e.Who), redact.Text(e.Target), redact.Text(e.Result), redact.Text(e.Detail)
	b, err := proto.Marshal(e)
	if err != nil {
		return err
	}
	key := append(store.U64(uint64(e.TimeUnixNano)), store.U64(f.auditSeq.Add(1))...)
	if err := f.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketAudit)).Put(key, b)
	}); err != nil {
		f.log.Error("audit write failed", "action", e.Action, "err", err)
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// AuditLog returns entries at or after since, oldest first, at most limit
// (the newest ones when there are more).
func (f *Fleet) AuditLog(since time.Time, limit int) ([]*quarryv1.AuditEntry, error) {
	var out []*quarryv1.AuditEntry
	err := f.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketAudit)).Cursor()
		start := store.U64(uint64(max(since.UnixNano(), 0)))
		for k, v := c.Seek(start); k != nil; k, v = c.Next() {
			e := &quarryv1.AuditEntry{}
			if err := proto.Unmarshal(v, e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, err
}
