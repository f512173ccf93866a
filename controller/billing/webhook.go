package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v85/webhook"

	"github.com/quarryfleet/quarry/pkg/store"
)

// maxWebhookBody bounds a webhook request; Stripe events are far smaller.
const maxWebhookBody = 1 << 20

// Handler returns the http.Handler for Stripe webhooks. It answers 400 for
// anything it cannot verify (Stripe shows the message in the dashboard and
// retries), 200 for events it applied, ignored, or had already seen, and 500
// only when the database failed so Stripe delivers again.
func (s *Service) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		ev, err := webhook.ConstructEventWithOptions(body, r.Header.Get("Stripe-Signature"), s.cfg.WebhookSecret,
			webhook.ConstructEventOptions{Tolerance: s.cfg.WebhookTolerance, IgnoreAPIVersionMismatch: s.cfg.AcceptAPIVersionMismatch})
		if err != nil {
			s.log.Warn("billing webhook rejected", "err", err, "remote", r.RemoteAddr)
			http.Error(w, "webhook rejected: "+err.Error(), http.StatusBadRequest)
			return
		}
		outcome, err := s.applyEvent(r.Context(), ev.ID, string(ev.Type), ev.Created, ev.Data.Raw)
		if err != nil {
			s.log.Error("billing webhook", "event", ev.ID, "type", ev.Type, "err", err)
			if errors.Is(err, ErrInvalid) {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"outcome": outcome})
	})
}

// webhookObject holds the few fields of an invoice or subscription we need.
type webhookObject struct {
	Object   string `json:"object"`
	Customer string `json:"customer"`
	Status   string `json:"status"`
}

// statusFor maps an event to the customer status it implies; ok is false
// for events that say nothing about payment standing.
func statusFor(typ string, obj webhookObject) (Status, bool) {
	switch typ {
	case "invoice.paid":
		return StatusActive, true
	case "invoice.payment_failed", "invoice.payment_action_required":
		return StatusPastDue, true
	case "customer.subscription.deleted":
		return StatusCanceled, true
	case "customer.subscription.updated":
		// The subscription's own status is authoritative, whatever changed.
		switch obj.Status {
		case "active", "trialing":
			return StatusActive, true
		case "past_due", "unpaid", "incomplete":
			return StatusPastDue, true
		case "canceled", "incomplete_expired":
			return StatusCanceled, true
		}
	}
	return "", false
}

// applyEvent records the event id and applies its status in one
// transaction. Ordering comes from the event's creation time, not arrival:
// an event older than the one behind the current status is recorded but
// does not change it, and cancellation is final.
func (s *Service) applyEvent(ctx context.Context, id, typ string, created int64, raw json.RawMessage) (string, error) {
	var obj webhookObject
	if len(raw) > 0 {
		// raw is data.object as stripe-go hands it over.
		if err := json.Unmarshal(raw, &obj); err != nil {
			return "", fmt.Errorf("event %s: decode object: %v: %w", id, err, ErrInvalid)
		}
	}
	if id == "" {
		return "", fmt.Errorf("event without id: %w", ErrInvalid)
	}
	var outcome string
	var cust Customer
	var from Status
	err := s.db.Update(func(tx *store.Tx) error {
		eb := tx.Bucket(bucketWebhook)
		if eb.Get([]byte(id)) != nil {
			outcome = "duplicate"
			return nil
		}
		if err := eb.Put([]byte(id), []byte(fmt.Sprintf("%s %d", typ, created))); err != nil {
			return err
		}
		st, ok := statusFor(typ, obj)
		if !ok {
			outcome = "ignored"
			return nil
		}
		cid := tx.Bucket(bucketStripeIndex).Get([]byte(obj.Customer))
		if cid == nil {
			outcome = "unknown customer"
			return nil
		}
		cb := tx.Bucket(bucketCustomers)
		if err := getJSON(cb, cid, &cust); err != nil {
			return err
		}
		from = cust.Status
		switch {
		case cust.Status == StatusCanceled:
			outcome = "canceled is final"
			return nil
		case created < cust.StatusAsOf:
			outcome = "stale"
			return nil
		}
		if st == StatusPastDue && cust.Status != StatusPastDue {
			cust.PastDueSince = time.Unix(created, 0).UTC()
		}
		if st != StatusPastDue {
			cust.PastDueSince = time.Time{}
		}
		cust.Status, cust.StatusAsOf = st, created
		outcome = "applied"
		return putJSON(cb, cid, cust)
	})
	if err != nil {
		return "", fmt.Errorf("apply event %s: %w", id, err)
	}
	detail := fmt.Sprintf("event %s %s: %s", id, typ, outcome)
	if outcome == "applied" && from != cust.Status {
		detail += fmt.Sprintf(" (%s -> %s)", from, cust.Status)
	}
	s.audit(ctx, AuditEvent{Kind: "webhook." + strings.TrimSpace(typ), Customer: cust.ID, Detail: detail})
	return outcome, nil
}
