package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	if c.billing == nil || c.billing.Service() == nil {
		return
	}
	v := billingView{svc: c.billing.Service()}
	if c.web != nil {
		c.web.SetBilling(v)
	}
	if c.metrics != nil {
		c.metrics.SetOutboxDepth(v.outboxDepth)
		if err := c.metrics.Registry().Register(meterCollector{m: c.billing.Service().Meter()}); err != nil {
			c.log.Error("billing metrics not registered", "err", err)
		}
	}
}

var (
	dBillingLate = prometheus.NewDesc("quarry_billing_late_energy_milliwatt_hours_total",
		"Energy that arrived past its hour's lateness window and was billed in the hour it arrived.", nil, nil)
	dBillingCorrected = prometheus.NewDesc("quarry_billing_corrected_energy_milliwatt_hours_total",
		"Energy that arrived within the lateness window for an hour already sent, billed to that hour by corrections.", nil, nil)
	dBillingCorrections = prometheus.NewDesc("quarry_billing_corrections_total",
		"Correction meter events queued for hours already sent.", nil, nil)
	dBillingBackwards = prometheus.NewDesc("quarry_billing_samples_out_of_order_total",
		"Power samples at or before a rig's previous one, ignored.", nil, nil)
	dBillingGaps = prometheus.NewDesc("quarry_billing_energy_gaps_total",
		"Telemetry gaps longer than billing.max_gap, recorded and not billed.", nil, nil)
)

// meterCollector exports the energy meter's counters; they are persisted,
// so they count since the database was created.
type meterCollector struct{ m *billing.Meter }

func (meterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dBillingLate, dBillingCorrected, dBillingCorrections, dBillingBackwards, dBillingGaps} {
		ch <- d
	}
}

func (c meterCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.Stats()
	for d, v := range map[*prometheus.Desc]int64{dBillingLate: st.LateMilliWh, dBillingCorrected: st.CorrectedMilliWh,
		dBillingCorrections: st.Corrections, dBillingBackwards: st.Backwards, dBillingGaps: st.Gaps} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
}
