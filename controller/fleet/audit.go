package fleet

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/pkg/redact"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Audit field caps. Refused calls from anonymous peers are audited too,
// so nothing a caller sends may make an entry large.
const (
	maxAuditField  = 256
	maxAuditDetail = 1024
	// MaxAuditPage bounds one page of the audit log, so an answer stays far
	// below the gRPC message limit (at most about 1.8 MiB).
	MaxAuditPage = 1000
)

// Audit appends an entry to the audit log. The time is set here. Callers
// leave secrets out; credentials that slip into the free-text fields
// anyway (an error quoting a flight sheet, a token pasted as a name) are
// redacted, then long fields are cut with a marker, before anything is
// stored; entries past the retention limits are dropped, oldest first, in
// the same transaction.
func (f *Fleet) Audit(e *quarryv1.AuditEntry) error {
	if err := f.db.Update(func(tx *store.Tx) error { return f.auditIn(tx, e) }); err != nil {
		f.log.Error("audit write failed", "action", e.Action, "err", err)
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// auditIn writes e in the caller's transaction, so an entry can commit
// together with the change it records.
func (f *Fleet) auditIn(tx *store.Tx, e *quarryv1.AuditEntry) error {
	cleanAudit(e, nil)
	return f.putAudit(tx, e)
}

// cleanAudit redacts and cuts an entry's fields. Entries that share
// texts (a fleet-wide command audits one detail for every rig) redact
// each distinct text once through memo, which may be nil.
func cleanAudit(e *quarryv1.AuditEntry, memo auditMemo) {
	e.Who = memo.redacted(e.Who, maxAuditField)
	e.Role = Truncate(e.Role, maxAuditField)
	e.Action = Truncate(e.Action, maxAuditField)
	e.Target = redactedField(e.Target, maxAuditField)
	e.Result = redactedField(e.Result, maxAuditField)
	e.Detail = memo.redacted(e.Detail, maxAuditDetail)
}

// auditMemo keeps redacted texts by their original and their cap.
type auditMemo map[auditMemoKey]string

type auditMemoKey struct {
	text string
	max  int
}

// maxAuditMemo bounds a memo; past it texts are redacted each time.
const maxAuditMemo = 256

func (m auditMemo) redacted(s string, max int) string {
	if m == nil {
		return redactedField(s, max)
	}
	k := auditMemoKey{s, max}
	if v, ok := m[k]; ok {
		return v
	}
	v := redactedField(s, max)
	if len(m) < maxAuditMemo {
		m[k] = v
	}
	return v
}

// putAudit stores an entry cleanAudit has cleaned, in the caller's
// transaction.
func (f *Fleet) putAudit(tx *store.Tx, e *quarryv1.AuditEntry) error {
	e.TimeUnixNano = f.opts.Now().UnixNano()
	b, err := proto.Marshal(e)
	if err != nil {
		return err
	}
	key := append(store.U64(uint64(e.TimeUnixNano)), store.U64(f.auditSeq.Add(1))...)
	ab := tx.Bucket([]byte(bucketAudit))
	f.auditMu.Lock()
	defer f.auditMu.Unlock()
	if f.auditCount < 0 {
		f.auditCount = ab.Stats().KeyN // once per open, before this write
	}
	if err := ab.Put(key, b); err != nil {
		return err
	}
	f.auditCount++
	return f.pruneAudit(ab, e.TimeUnixNano)
}

// pruneAudit drops entries older than the age limit and, beyond the count
// limit, the oldest ones. Keys start with the time, so both come off the
// front and each write does a bounded amount of work. The caller holds
// auditMu.
func (f *Fleet) pruneAudit(ab *store.Bucket, now int64) error {
	floor := store.U64(uint64(max(now-f.opts.AuditMaxAge.Nanoseconds(), 0)))
	c := ab.Cursor()
	// A few deletions per write keep the cost per call small while always
	// removing faster than one write adds.
	for i := 0; i < 64; i++ {
		k, _ := c.First()
		if k == nil {
			break
		}
		if f.auditCount <= f.opts.AuditMaxEntries && bytes.Compare(k[:8], floor) >= 0 {
			break
		}
		if err := c.Delete(); err != nil {
			return err
		}
		f.auditCount--
	}
	return nil
}

// AuditLog returns entries at or after since, oldest first, at most limit
// (the newest ones when there are more).
func (f *Fleet) AuditLog(since time.Time, limit int) ([]*quarryv1.AuditEntry, error) {
	if limit <= 0 {
		limit = int(^uint(0) >> 1)
	}
	var out []*quarryv1.AuditEntry
	token := ""
	for len(out) < limit {
		page, next, err := f.AuditPage(since, min(limit-len(out), MaxAuditPage), token)
		if err != nil {
			return nil, err
		}
		out = append(page, out...)
		if next == "" {
			break
		}
		token = next
	}
	return out, nil
}

// AuditPage returns up to limit of the newest entries at or after since
// and older than pageToken (all entries when it is empty), oldest first,
// and the token for the next older page, empty when there is none.
func (f *Fleet) AuditPage(since time.Time, limit int, pageToken string) ([]*quarryv1.AuditEntry, string, error) {
	return f.AuditQuery(AuditFilter{Since: since}, limit, pageToken)
}

// AuditFilter narrows the audit log. Zero fields match everything; text
// fields match a case-insensitive substring.
type AuditFilter struct {
	Since, Until        time.Time
	Who, Action, Target string
}

func (q AuditFilter) match(e *quarryv1.AuditEntry) bool {
	has := func(field, want string) bool {
		return want == "" || strings.Contains(strings.ToLower(field), strings.ToLower(want))
	}
	return has(e.Who, q.Who) && has(e.Action, q.Action) && has(e.Target, q.Target)
}

// maxAuditFilter caps a text filter; longer ones cannot match a stored
// field anyway, since fields are cut to maxAuditField.
const maxAuditFilter = maxAuditField

// AuditQuery is AuditPage with filters: up to limit of the newest matching
// entries older than pageToken, oldest first, and the token for the next
// older page, empty when no older entry matches. The log is bounded by
// its retention limits, so a scan past non-matching entries is too.
func (f *Fleet) AuditQuery(q AuditFilter, limit int, pageToken string) ([]*quarryv1.AuditEntry, string, error) {
	if limit <= 0 || limit > MaxAuditPage {
		limit = MaxAuditPage
	}
	for _, s := range []string{q.Who, q.Action, q.Target} {
		if len(s) > maxAuditFilter {
			return nil, "", fmt.Errorf("audit filter longer than %d bytes: %w", maxAuditFilter, ErrBadAuditFilter)
		}
	}
	if !q.Until.IsZero() && q.Until.Before(q.Since) {
		return nil, "", fmt.Errorf("audit filter ends (%s) before it starts (%s): %w", q.Until.Format(time.RFC3339), q.Since.Format(time.RFC3339), ErrBadAuditFilter)
	}
	var before []byte
	if pageToken != "" {
		b, err := hex.DecodeString(pageToken)
		if err != nil || len(b) != 16 {
			return nil, "", fmt.Errorf("page token %q is not one this controller issued: %w", pageToken, ErrBadPageToken)
		}
		before = b
	}
	// Keys start with the entry's time, so "until" is one more bound
	// from above: entries before the first key past it.
	if !q.Until.IsZero() && q.Until.UnixNano() >= 0 {
		limitKey := append(store.U64(uint64(q.Until.UnixNano())+1), make([]byte, 8)...)
		if before == nil || bytes.Compare(limitKey, before) < 0 {
			before = limitKey
		}
	}
	start := store.U64(uint64(max(q.Since.UnixNano(), 0)))
	var out []*quarryv1.AuditEntry
	next := ""
	err := f.db.View(func(tx *store.Tx) error {
		c := tx.Bucket([]byte(bucketAudit)).Cursor()
		var k, v []byte
		if before == nil {
			k, v = c.Last()
		} else {
			k, v = c.Seek(before)
			if k == nil {
				k, v = c.Last()
			}
			for k != nil && bytes.Compare(k, before) >= 0 {
				k, v = c.Prev()
			}
		}
		var last []byte
		for ; k != nil && bytes.Compare(k, start) >= 0; k, v = c.Prev() {
			e := &quarryv1.AuditEntry{}
			if err := proto.Unmarshal(v, e); err != nil {
				return err
			}
			if !q.match(e) {
				continue
			}
			if len(out) == limit {
				next = hex.EncodeToString(last)
				break
			}
			out = append(out, e)
			last = append(last[:0], k...)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, next, err
}

// redactedField redacts credentials from s and cuts it to max bytes. The
// text is first cut to a few times max, so that redacting a huge field an
// anonymous peer sent costs no more than a small one, with room for a
// credential straddling the final cut to still be recognised whole.
func redactedField(s string, max int) string {
	if len(s) <= 4*max {
		return Truncate(redact.Text(s), max)
	}
	return truncateFrom(redact.Text(s[:4*max]), max, len(s))
}
