package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/quarryfleet/quarry/pkg/store"
)

// Status is a customer's payment standing as last reported by Stripe.
type Status string

// Customer statuses.
const (
	StatusActive   Status = "active"
	StatusPastDue  Status = "past_due"
	StatusCanceled Status = "canceled"
)

// Plan prices a hosting contract. Amounts are integers so nothing drifts.
type Plan struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// MonthlyFeePerRigCents is charged per active rig per month.
	MonthlyFeePerRigCents int64 `json:"monthly_fee_per_rig_cents"`
	// EnergyMilliCentsPerKWh is the energy price in 1/1000 cent per kWh.
	EnergyMilliCentsPerKWh int64 `json:"energy_millicents_per_kwh"`
	// StripeRigPriceID is the per-unit recurring price whose quantity follows
	// the customer's active rigs.
	StripeRigPriceID string `json:"stripe_rig_price_id"`
	// StripeEnergyPriceID is the metered price attached to the energy meter;
	// optional.
	StripeEnergyPriceID string `json:"stripe_energy_price_id,omitempty"`
}

// Customer is a hosting customer and its mirror in Stripe.
type Customer struct {
	ID                       string    `json:"id"`
	Name                     string    `json:"name"`
	Email                    string    `json:"email"`
	Plan                     string    `json:"plan"`
	Rigs                     []string  `json:"rigs"`
	Status                   Status    `json:"status"`
	StripeCustomerID         string    `json:"stripe_customer_id,omitempty"`
	StripeSubscriptionID     string    `json:"stripe_subscription_id,omitempty"`
	StripeSubscriptionItemID string    `json:"stripe_subscription_item_id,omitempty"`
	CreatedAt                time.Time `json:"created_at"`
	// StatusAsOf is the Stripe event creation time (unix s) behind Status, so
	// that an older event delivered late cannot overwrite a newer one.
	StatusAsOf   int64     `json:"status_as_of,omitempty"`
	PastDueSince time.Time `json:"past_due_since,omitzero"`
	// QtyVersion numbers subscription quantity changes so a stale retry is
	// never applied after a newer one.
	QtyVersion int64 `json:"qty_version"`
}

// Errors callers can test with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
)

// validID keeps identifiers safe inside bbolt keys, idempotency keys and
// meter identifiers (which use ':' and NUL as separators).
func validID(kind, id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%s id %q must be 1..64 bytes: %w", kind, id, ErrInvalid)
	}
	for _, r := range id {
		if r <= ' ' || r == ':' || r == 0x7f {
			return fmt.Errorf("%s id %q contains %q: %w", kind, id, r, ErrInvalid)
		}
	}
	return nil
}

// PutPlan creates or replaces a plan.
func (s *Service) PutPlan(ctx context.Context, p Plan) error {
	if err := validID("plan", p.ID); err != nil {
		return err
	}
	if p.MonthlyFeePerRigCents < 0 || p.EnergyMilliCentsPerKWh < 0 {
		return fmt.Errorf("plan %s: negative price: %w", p.ID, ErrInvalid)
	}
	if p.StripeRigPriceID == "" {
		return fmt.Errorf("plan %s: StripeRigPriceID is empty: %w", p.ID, ErrInvalid)
	}
	err := s.db.Update(func(tx *store.Tx) error { return putJSON(tx.Bucket(bucketPlans), []byte(p.ID), p) })
	if err != nil {
		return fmt.Errorf("put plan %s: %w", p.ID, err)
	}
	s.audit(ctx, AuditEvent{Kind: "plan.put", Detail: p.ID})
	return nil
}

// GetPlan returns a plan.
func (s *Service) GetPlan(id string) (Plan, error) {
	var p Plan
	err := s.db.View(func(tx *store.Tx) error { return getJSON(tx.Bucket(bucketPlans), []byte(id), &p) })
	if err != nil {
		return p, fmt.Errorf("plan %s: %w", id, err)
	}
	return p, nil
}

// ListPlans returns all plans ordered by id.
func (s *Service) ListPlans() ([]Plan, error) {
	var out []Plan
	err := s.db.View(func(tx *store.Tx) error {
		return tx.Bucket(bucketPlans).ForEach(func(k, v []byte) error {
			var p Plan
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("decode plan %s: %w", k, err)
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// CreateCustomer stores a customer and, in the same transaction, queues the
// Stripe customer and its subscription.
func (s *Service) CreateCustomer(ctx context.Context, c Customer) (Customer, error) {
	if err := validID("customer", c.ID); err != nil {
		return c, err
	}
	if c.Name == "" || !strings.Contains(c.Email, "@") {
		return c, fmt.Errorf("customer %s: name and a valid email are required: %w", c.ID, ErrInvalid)
	}
	now := s.now().UTC()
	c.Status = StatusActive
	c.CreatedAt = now
	c.Rigs = nil
	c.StripeCustomerID, c.StripeSubscriptionID, c.StripeSubscriptionItemID = "", "", ""
	err := s.db.Update(func(tx *store.Tx) error {
		var p Plan
		if err := getJSON(tx.Bucket(bucketPlans), []byte(c.Plan), &p); err != nil {
			return fmt.Errorf("plan %q: %w", c.Plan, err)
		}
		b := tx.Bucket(bucketCustomers)
		if b.Get([]byte(c.ID)) != nil {
			return fmt.Errorf("customer %s: %w", c.ID, ErrExists)
		}
		if err := putJSON(b, []byte(c.ID), c); err != nil {
			return err
		}
		if _, err := enqueue(tx, Record{Kind: KindCustomerCreate, Key: "quarry:customer:" + c.ID,
			Customer: c.ID, Name: c.Name, Email: c.Email, CreatedAt: now}); err != nil {
			return err
		}
		_, err := enqueue(tx, Record{Kind: KindSubscriptionCreate, Key: "quarry:subscription:" + c.ID,
			Customer: c.ID, PriceID: p.StripeRigPriceID, EnergyPriceID: p.StripeEnergyPriceID, Quantity: 0, CreatedAt: now})
		return err
	})
	if err != nil {
		return c, fmt.Errorf("create customer: %w", err)
	}
	s.notifyRelay()
	s.audit(ctx, AuditEvent{Kind: "customer.created", Customer: c.ID, Detail: "plan " + c.Plan})
	return c, nil
}

// GetCustomer returns one customer.
func (s *Service) GetCustomer(id string) (Customer, error) {
	var c Customer
	err := s.db.View(func(tx *store.Tx) error { return getJSON(tx.Bucket(bucketCustomers), []byte(id), &c) })
	if err != nil {
		return c, fmt.Errorf("customer %s: %w", id, err)
	}
	return c, nil
}

// ListCustomers returns all customers ordered by id.
func (s *Service) ListCustomers() ([]Customer, error) {
	var out []Customer
	err := s.db.View(func(tx *store.Tx) error {
		return tx.Bucket(bucketCustomers).ForEach(func(k, v []byte) error {
			var c Customer
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("decode customer %s: %w", k, err)
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

// rigOwner is the current owner of a rig and since when.
type rigOwner struct {
	Customer string    `json:"customer"`
	Since    time.Time `json:"since"`
}

// AssignRigs gives rigs to a customer, taking them away from their previous
// owner. Energy up to now stays with the previous owner; the subscription
// quantity of every customer whose rig count changed is queued for Stripe in
// the same transaction. An empty customer id unassigns the rigs.
func (s *Service) AssignRigs(ctx context.Context, customer string, rigs ...string) error {
	for _, r := range rigs {
		if err := validID("rig", r); err != nil {
			return err
		}
	}
	now := s.now().UTC()
	var moved []struct{ rig, from string }
	err := s.db.Update(func(tx *store.Tx) error {
		moved = moved[:0]
		cb := tx.Bucket(bucketCustomers)
		changed := map[string]*Customer{}
		load := func(id string) (*Customer, error) {
			if c, ok := changed[id]; ok {
				return c, nil
			}
			var c Customer
			if err := getJSON(cb, []byte(id), &c); err != nil {
				return nil, fmt.Errorf("customer %s: %w", id, err)
			}
			changed[id] = &c
			return &c, nil
		}
		var to *Customer
		if customer != "" {
			c, err := load(customer)
			if err != nil {
				return err
			}
			if c.Status == StatusCanceled {
				return fmt.Errorf("customer %s is canceled: %w", customer, ErrInvalid)
			}
			to = c
		}
		rb := tx.Bucket(bucketRigs)
		for _, rig := range rigs {
			var old rigOwner
			if err := getJSON(rb, []byte(rig), &old); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if old.Customer == customer {
				continue
			}
			if old.Customer != "" {
				from, err := load(old.Customer)
				if err != nil {
					return err
				}
				from.Rigs = slices.DeleteFunc(from.Rigs, func(r string) bool { return r == rig })
			}
			if to != nil {
				to.Rigs = append(to.Rigs, rig)
				slices.Sort(to.Rigs)
			}
			if err := putJSON(rb, []byte(rig), rigOwner{Customer: customer, Since: now}); err != nil {
				return err
			}
			moved = append(moved, struct{ rig, from string }{rig, old.Customer})
		}
		if len(moved) == 0 {
			return nil
		}
		for id, c := range changed {
			c.QtyVersion++
			if err := putJSON(cb, []byte(id), c); err != nil {
				return err
			}
			if _, err := enqueue(tx, Record{Kind: KindSubscriptionQuantity,
				Key:      fmt.Sprintf("quarry:quantity:%s:%d", id, c.QtyVersion),
				Customer: id, Quantity: int64(len(c.Rigs)), Version: c.QtyVersion, CreatedAt: now}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("assign rigs to %q: %w", customer, err)
	}
	for _, m := range moved {
		s.meter.setOwner(m.rig, now, customer)
		s.audit(ctx, AuditEvent{Kind: "rig.assigned", Customer: customer, Rig: m.rig, Detail: "from " + quoteEmpty(m.from)})
	}
	if len(moved) > 0 {
		s.notifyRelay()
	}
	return nil
}

func quoteEmpty(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func putJSON(b *store.Bucket, k []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", k, err)
	}
	return b.Put(k, buf)
}

func getJSON(b *store.Bucket, k []byte, v any) error {
	buf := b.Get(k)
	if buf == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(buf, v); err != nil {
		return fmt.Errorf("decode %s: %w", k, err)
	}
	return nil
}
