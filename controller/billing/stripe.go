package billing

import (
	"context"
	"fmt"
	"strconv"

	"github.com/stripe/stripe-go/v85"
)

// send turns a record into its Stripe request, carrying the record's
// idempotency key so a repeat after a crash or a timeout is recognised.
func (s *Service) send(ctx context.Context, r Record, c Customer) (sendResult, error) {
	sc := s.cfg.Stripe
	s.log.Debug("billing send", logAttrs(r)...)
	switch r.Kind {
	case KindCustomerCreate:
		p := &stripe.CustomerCreateParams{Name: stripe.String(r.Name), Email: stripe.String(r.Email),
			Metadata: map[string]string{"quarry_id": r.Customer}}
		p.SetIdempotencyKey(r.IdempotencyKey())
		cu, err := sc.V1Customers.Create(ctx, p)
		if err != nil {
			return sendResult{}, fmt.Errorf("create stripe customer: %w", err)
		}
		return sendResult{customerID: cu.ID, note: cu.ID}, nil
	case KindSubscriptionCreate:
		if c.StripeCustomerID == "" {
			return sendResult{}, fmt.Errorf("subscription for %s: %w", r.Customer, errBlocked)
		}
		items := []*stripe.SubscriptionCreateItemParams{{Price: stripe.String(r.PriceID), Quantity: stripe.Int64(r.Quantity)}}
		if r.EnergyPriceID != "" {
			items = append(items, &stripe.SubscriptionCreateItemParams{Price: stripe.String(r.EnergyPriceID)})
		}
		p := &stripe.SubscriptionCreateParams{Customer: stripe.String(c.StripeCustomerID), Items: items,
			Metadata: map[string]string{"quarry_id": r.Customer}}
		p.SetIdempotencyKey(r.IdempotencyKey())
		sub, err := sc.V1Subscriptions.Create(ctx, p)
		if err != nil {
			return sendResult{}, fmt.Errorf("create subscription: %w", err)
		}
		return subResult(sub, r.PriceID), nil
	case KindSubscriptionQuantity:
		if c.StripeSubscriptionID == "" {
			return sendResult{}, fmt.Errorf("quantity for %s: %w", r.Customer, errBlocked)
		}
		p := &stripe.SubscriptionUpdateParams{Items: []*stripe.SubscriptionUpdateItemParams{
			{ID: stripe.String(c.StripeSubscriptionItemID), Quantity: stripe.Int64(r.Quantity)}}}
		p.SetIdempotencyKey(r.IdempotencyKey())
		if _, err := sc.V1Subscriptions.Update(ctx, c.StripeSubscriptionID, p); err != nil {
			return sendResult{}, fmt.Errorf("update subscription quantity: %w", err)
		}
		return sendResult{note: "quantity " + strconv.FormatInt(r.Quantity, 10)}, nil
	case KindMeterEvent:
		if c.StripeCustomerID == "" {
			return sendResult{}, fmt.Errorf("meter event for %s: %w", r.Customer, errBlocked)
		}
		p := &stripe.BillingMeterEventCreateParams{
			EventName:  stripe.String(s.cfg.EventName),
			Identifier: stripe.String(r.Identifier),
			Timestamp:  stripe.Int64(r.Timestamp),
			Payload: map[string]string{
				"stripe_customer_id": c.StripeCustomerID,
				"value":              strconv.FormatInt(r.ValueWh, 10),
			},
		}
		p.SetIdempotencyKey(r.IdempotencyKey())
		if _, err := sc.V1BillingMeterEvents.Create(ctx, p); err != nil {
			return sendResult{}, fmt.Errorf("create meter event: %w", err)
		}
		return sendResult{note: r.Identifier}, nil
	}
	return sendResult{}, fmt.Errorf("record %d: unknown kind %q: %w", r.ID, r.Kind, ErrInvalid)
}

func subResult(sub *stripe.Subscription, priceID string) sendResult {
	res := sendResult{subscriptionID: sub.ID, note: sub.ID}
	if sub.Items != nil {
		for _, it := range sub.Items.Data {
			if it.Price != nil && it.Price.ID == priceID {
				res.itemID = it.ID
			}
		}
		if res.itemID == "" && len(sub.Items.Data) > 0 {
			// stripe-mock answers with fixture prices; the first item is
			// the per-rig one because it is sent first.
			res.itemID = sub.Items.Data[0].ID
		}
	}
	return res
}

// reconcile handles a record first tried longer ago than Stripe keeps
// idempotency keys: the key no longer protects against a duplicate, so
// Stripe is read first and the request is sent only if it never landed.
func (s *Service) reconcile(ctx context.Context, r Record, c Customer) (sendResult, error) {
	sc := s.cfg.Stripe
	switch r.Kind {
	case KindCustomerCreate:
		p := &stripe.CustomerSearchParams{SearchParams: stripe.SearchParams{
			Query: fmt.Sprintf("metadata['quarry_id']:'%s'", r.Customer), Context: ctx}}
		for cu, err := range sc.V1Customers.Search(ctx, p).All(ctx) {
			if err != nil {
				return sendResult{}, fmt.Errorf("reconcile customer %s: %w", r.Customer, err)
			}
			if cu.Metadata["quarry_id"] == r.Customer {
				return sendResult{customerID: cu.ID, note: "reconciled " + cu.ID}, nil
			}
		}
	case KindSubscriptionCreate:
		if c.StripeCustomerID != "" {
			p := &stripe.SubscriptionListParams{Customer: stripe.String(c.StripeCustomerID)}
			for sub, err := range sc.V1Subscriptions.List(ctx, p).All(ctx) {
				if err != nil {
					return sendResult{}, fmt.Errorf("reconcile subscription %s: %w", r.Customer, err)
				}
				if sub.Metadata["quarry_id"] == r.Customer {
					res := subResult(sub, r.PriceID)
					res.note = "reconciled " + sub.ID
					return res, nil
				}
			}
		}
	case KindSubscriptionQuantity:
		if c.StripeSubscriptionID != "" {
			sub, err := sc.V1Subscriptions.Retrieve(ctx, c.StripeSubscriptionID, nil)
			if err != nil {
				return sendResult{}, fmt.Errorf("reconcile quantity %s: %w", r.Customer, err)
			}
			if sub.Items != nil {
				for _, it := range sub.Items.Data {
					if it.ID == c.StripeSubscriptionItemID && it.Quantity == r.Quantity {
						return sendResult{note: "reconciled quantity"}, nil
					}
				}
			}
		}
	case KindMeterEvent:
		// Meter events are deduplicated by Identifier, which never changes,
		// so resending is the reconciliation. The log line lets an operator
		// compare against the meter's event summaries if needed.
		s.log.Warn("billing meter event older than the idempotency window is resent", logAttrs(r)...)
	}
	return s.send(ctx, r, c)
}
