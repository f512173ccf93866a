package billing

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/quarryfleet/quarry/pkg/redact"
	"github.com/quarryfleet/quarry/pkg/store"
)

// Kind is what an outbox record asks Stripe to do.
type Kind string

// Outbox record kinds.
const (
	KindCustomerCreate       Kind = "customer.create"
	KindSubscriptionCreate   Kind = "subscription.create"
	KindSubscriptionQuantity Kind = "subscription.quantity"
	KindMeterEvent           Kind = "meter.event"
)

// State is where an outbox record is in its life.
type State string

// Outbox record states.
const (
	StatePending State = "pending"
	StateDone    State = "done"
	StateDead    State = "dead"
)

// Record is one Stripe call waiting in, or done by, the outbox. It carries
// everything needed to rebuild the exact same request after a restart.
type Record struct {
	ID            uint64    `json:"id"`
	Kind          Kind      `json:"kind"`
	Key           string    `json:"key"`
	Customer      string    `json:"customer"`
	Rig           string    `json:"rig,omitempty"`
	Name          string    `json:"name,omitempty"`
	Email         string    `json:"email,omitempty"`
	PriceID       string    `json:"price_id,omitempty"`
	EnergyPriceID string    `json:"energy_price_id,omitempty"`
	Quantity      int64     `json:"quantity,omitempty"`
	Version       int64     `json:"version,omitempty"`
	Identifier    string    `json:"identifier,omitempty"`
	ValueWh       int64     `json:"value_wh,omitempty"`
	Timestamp     int64     `json:"timestamp,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	State         State     `json:"state"`
	Attempts      int       `json:"attempts"`
	FirstAttempt  time.Time `json:"first_attempt,omitzero"`
	NextAttempt   time.Time `json:"next_attempt,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	// KeyGen is bumped when an operator retries a record Stripe rejected
	// with a 4xx: Stripe remembers the rejected key, so the retry needs a new
	// one. Meter identifiers never change, so Stripe still deduplicates.
	KeyGen int       `json:"key_gen,omitempty"`
	DoneAt time.Time `json:"done_at,omitzero"`
	Result string    `json:"result,omitempty"`
}

// IdempotencyKey is the key sent with the record's request.
func (r Record) IdempotencyKey() string {
	if r.KeyGen == 0 {
		return r.Key
	}
	return fmt.Sprintf("%s:retry%d", r.Key, r.KeyGen)
}

func seqKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}

// enqueue writes r inside tx unless a record with the same key exists, in
// which case the business fact was already queued and nothing is added.
func enqueue(tx *store.Tx, r Record) (uint64, error) {
	kb := tx.Bucket(bucketOutboxKeys)
	if v := kb.Get([]byte(r.Key)); v != nil {
		return binary.BigEndian.Uint64(v), nil
	}
	ob := tx.Bucket(bucketOutbox)
	id, err := ob.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("outbox sequence: %w", err)
	}
	r.ID = id
	r.State = StatePending
	if err := putJSON(ob, seqKey(id), r); err != nil {
		return 0, err
	}
	if err := kb.Put([]byte(r.Key), seqKey(id)); err != nil {
		return 0, fmt.Errorf("outbox key index: %w", err)
	}
	return id, nil
}

func (s *Service) records(filter func(Record) bool) ([]Record, error) {
	var out []Record
	err := s.db.View(func(tx *store.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode outbox record %x: %w", k, err)
			}
			if filter(r) {
				out = append(out, r)
			}
			return nil
		})
	})
	return out, err
}

// Outbox lists records not yet delivered, oldest first.
func (s *Service) Outbox() ([]Record, error) {
	return s.records(func(r Record) bool { return r.State == StatePending })
}

// DeadLetter lists records that gave up and wait for Retry.
func (s *Service) DeadLetter() ([]Record, error) {
	return s.records(func(r Record) bool { return r.State == StateDead })
}

// AllRecords lists every outbox record including delivered ones.
func (s *Service) AllRecords() ([]Record, error) {
	return s.records(func(Record) bool { return true })
}

// Retry moves a dead-letter record back into the outbox. A record Stripe
// rejected as invalid gets a new idempotency key; one that ran out of
// attempts keeps its key so Stripe can still recognise a request that
// secretly succeeded.
func (s *Service) Retry(ctx context.Context, id uint64) error {
	err := s.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket(bucketOutbox)
		var r Record
		if err := getJSON(b, seqKey(id), &r); err != nil {
			return fmt.Errorf("outbox record %d: %w", id, err)
		}
		if r.State != StateDead {
			return fmt.Errorf("outbox record %d is %s, not dead: %w", id, r.State, ErrInvalid)
		}
		if r.Attempts < s.cfg.MaxAttempts {
			r.KeyGen++
		}
		r.State, r.Attempts, r.NextAttempt = StatePending, 0, time.Time{}
		return putJSON(b, seqKey(id), r)
	})
	if err != nil {
		return fmt.Errorf("retry: %w", err)
	}
	s.audit(ctx, AuditEvent{Kind: "outbox.retry", Detail: fmt.Sprintf("record %d", id)})
	s.notifyRelay()
	return nil
}

// RunRelay delivers outbox records until ctx ends. Run exactly one relay
// per database.
func (s *Service) RunRelay(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-s.wake:
		}
		next, err := s.RelayOnce(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("billing outbox relay", "err", err)
			next = s.now().Add(time.Second)
		}
		wait := time.Minute
		if !next.IsZero() {
			wait = max(next.Sub(s.now()), time.Millisecond)
			wait = min(wait, time.Minute)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// errBlocked means a record waits for another one (its Stripe customer or
// subscription does not exist yet); it is not a failed attempt.
var errBlocked = errors.New("waiting for an earlier record")

// RelayOnce sends every due record once, in order, and returns when the
// next pending record becomes due (zero if none is waiting on a timer).
func (s *Service) RelayOnce(ctx context.Context) (time.Time, error) {
	pending, err := s.Outbox()
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	// A subscription change must not overtake an earlier one for the same
	// customer that is still failing.
	held := map[string]bool{}
	for _, r := range pending {
		if ctx.Err() != nil {
			return next, nil
		}
		subKind := r.Kind == KindSubscriptionCreate || r.Kind == KindSubscriptionQuantity
		if subKind && held[r.Customer] {
			continue
		}
		now := s.now()
		if r.NextAttempt.After(now) {
			if next.IsZero() || r.NextAttempt.Before(next) {
				next = r.NextAttempt
			}
			if subKind {
				held[r.Customer] = true
			}
			continue
		}
		if s.cfg.Stripe == nil {
			continue
		}
		st, err := s.deliver(ctx, r)
		if err != nil {
			return next, err
		}
		if st == StatePending {
			if subKind {
				held[r.Customer] = true
			}
		}
	}
	return next, nil
}

// deliver sends one record and records the outcome in a second transaction.
func (s *Service) deliver(ctx context.Context, r Record) (State, error) {
	var c Customer
	if err := s.db.View(func(tx *store.Tx) error {
		return getJSON(tx.Bucket(bucketCustomers), []byte(r.Customer), &c)
	}); err != nil {
		return "", fmt.Errorf("record %d: customer %s: %w", r.ID, r.Customer, err)
	}
	now := s.now()
	var res sendResult
	var err error
	if r.Kind == KindSubscriptionQuantity && r.Version < c.QtyVersion {
		res = sendResult{note: fmt.Sprintf("superseded by version %d", c.QtyVersion)}
	} else if !r.FirstAttempt.IsZero() && now.Sub(r.FirstAttempt) > s.cfg.IdempotencyWindow {
		res, err = s.reconcile(ctx, r, c)
	} else {
		res, err = s.send(ctx, r, c)
	}
	if errors.Is(err, errBlocked) {
		return StatePending, s.update(r.ID, func(rec *Record) { rec.LastError = err.Error() })
	}
	if ctx.Err() != nil {
		// Shutting down: the attempt did not count.
		return StatePending, nil
	}
	var state State
	uerr := s.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket(bucketOutbox)
		var rec Record
		if err := getJSON(b, seqKey(r.ID), &rec); err != nil {
			return err
		}
		if rec.State != StatePending {
			state = rec.State
			return nil
		}
		if rec.FirstAttempt.IsZero() {
			rec.FirstAttempt = now
		}
		if err == nil {
			rec.State, rec.DoneAt, rec.LastError, rec.Result = StateDone, now, "", res.note
			if err := applyResult(tx, rec, res); err != nil {
				return err
			}
		} else {
			rec.Attempts++
			// Stripe (or a mock) may quote the request's key back in
			// an error; the record is shown to admins and kept, so it
			// never holds one.
			rec.LastError = redact.Text(err.Error())
			if retryable(err) && rec.Attempts < s.cfg.MaxAttempts {
				rec.NextAttempt = now.Add(s.cfg.RetryBase << (rec.Attempts - 1))
			} else {
				rec.State = StateDead
			}
		}
		state = rec.State
		return putJSON(b, seqKey(rec.ID), rec)
	})
	if uerr != nil {
		return "", fmt.Errorf("record %d: %w", r.ID, uerr)
	}
	switch {
	case state == StateDead:
		s.log.Error("billing record moved to dead letter", "id", r.ID, "kind", r.Kind, "customer", r.Customer, "err", redact.Text(err.Error()))
		s.audit(ctx, AuditEvent{Kind: "outbox.dead", Customer: r.Customer, Rig: r.Rig,
			Detail: fmt.Sprintf("record %d %s: %s", r.ID, r.Kind, redact.Text(err.Error()))})
	case err != nil:
		s.log.Warn("billing record will be retried", "id", r.ID, "kind", r.Kind, "err", redact.Text(err.Error()))
	case state == StateDone:
		s.log.Debug("billing record delivered", "id", r.ID, "kind", r.Kind)
		s.audit(ctx, AuditEvent{Kind: "outbox.sent", Customer: r.Customer, Rig: r.Rig,
			Detail: fmt.Sprintf("record %d %s %s", r.ID, r.Kind, res.note)})
	}
	return state, nil
}

func (s *Service) update(id uint64, fn func(*Record)) error {
	return s.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket(bucketOutbox)
		var rec Record
		if err := getJSON(b, seqKey(id), &rec); err != nil {
			return err
		}
		fn(&rec)
		return putJSON(b, seqKey(id), rec)
	})
}

// retryable reports whether the same request may succeed later: network
// failures, 409 (idempotency conflicts, locks), 429 and 5xx. Other 4xx mean
// the request itself is wrong and repeating it cannot help.
func retryable(err error) bool {
	var se *stripe.Error
	if errors.As(err, &se) {
		c := se.HTTPStatusCode
		return c == 0 || c == http.StatusConflict || c == http.StatusTooManyRequests || c >= 500
	}
	return !errors.Is(err, ErrInvalid)
}

// sendResult carries what Stripe returned that the outbox must remember.
type sendResult struct {
	customerID, subscriptionID, itemID string
	note                               string
}

func applyResult(tx *store.Tx, r Record, res sendResult) error {
	if res.customerID == "" && res.subscriptionID == "" {
		return nil
	}
	cb := tx.Bucket(bucketCustomers)
	var c Customer
	if err := getJSON(cb, []byte(r.Customer), &c); err != nil {
		return err
	}
	if res.customerID != "" {
		c.StripeCustomerID = res.customerID
		if err := tx.Bucket(bucketStripeIndex).Put([]byte(res.customerID), []byte(c.ID)); err != nil {
			return err
		}
	}
	if res.subscriptionID != "" {
		c.StripeSubscriptionID, c.StripeSubscriptionItemID = res.subscriptionID, res.itemID
	}
	return putJSON(cb, []byte(c.ID), c)
}

func logAttrs(r Record) []any {
	return []any{slog.Uint64("id", r.ID), slog.String("kind", string(r.Kind)), slog.String("key", r.IdempotencyKey())}
}
