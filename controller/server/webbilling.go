package server

import (
	"context"
	"time"

	"github.com/quarryfleet/quarry/controller/billing"
	"github.com/quarryfleet/quarry/controller/web"
)

// billingView shows billing on the dashboard and in /metrics.
type billingView struct{ svc *billing.Service }

// BillingStatus lists every customer's month so far.
func (v billingView) BillingStatus(context.Context) ([]web.BillingLine, error) {
	cs, err := v.svc.ListCustomers()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]web.BillingLine, 0, len(cs))
	for _, c := range cs {
		st, err := v.svc.Status(c.ID, now)
		if err != nil {
			return nil, err
		}
		out = append(out, web.BillingLine{
			Customer: c.Name, Plan: st.Plan.ID, ActiveRigs: st.ActiveRigs, Action: st.Action,
			MonthToDateKWh: float64(st.MonthToDateMilliWh) / 1e6, EstimateUSD: float64(st.EstimateCents) / 100,
			PendingRecords: st.PendingRecords, DeadLetters: st.DeadLetters,
		})
	}
	return out, nil
}

// outboxDepth is the billing outbox's pending and dead-letter counts.
func (v billingView) outboxDepth() map[string]int {
	pending, err := v.svc.Outbox()
	if err != nil {
		return nil
	}
	dead, err := v.svc.DeadLetter()
	if err != nil {
		return nil
	}
	return map[string]int{"billing": len(pending), "billing_dead_letter": len(dead)}
}

// wireBillingViews connects billing to the dashboard and metrics when all
// are enabled.
func (c *Controller) wireBillingViews() {
	if c.billing == nil || c.billing.svc == nil {
		return
	}
	v := billingView{svc: c.billing.svc}
	if c.web != nil {
		c.web.SetBilling(v)
	}
	if c.metrics != nil {
		c.metrics.SetOutboxDepth(v.outboxDepth)
	}
}
