package billing

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/quarryfleet/quarry/pkg/store"
)

// CustomerStatus is what `quarryctl billing status` shows.
type CustomerStatus struct {
	Customer   Customer `json:"customer"`
	Plan       Plan     `json:"plan"`
	ActiveRigs int      `json:"active_rigs"`
	Action     string   `json:"action"`
	// MonthToDateMilliWh is this UTC month's metered energy.
	MonthToDateMilliWh int64 `json:"month_to_date_milli_wh"`
	// EstimateCents is rig fees plus energy for the month so far.
	EstimateCents  int64 `json:"estimate_cents"`
	PendingRecords int   `json:"pending_records"`
	DeadLetters    int   `json:"dead_letters"`
	GapsThisMonth  int   `json:"gaps_this_month"`
}

// Status summarises one customer at now.
func (s *Service) Status(customer string, now time.Time) (CustomerStatus, error) {
	c, err := s.GetCustomer(customer)
	if err != nil {
		return CustomerStatus{}, err
	}
	p, err := s.GetPlan(c.Plan)
	if err != nil {
		return CustomerStatus{}, err
	}
	now = now.UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	u, err := s.Usage(UsageQuery{Customer: customer, From: month, To: now.Add(time.Hour)})
	if err != nil {
		return CustomerStatus{}, err
	}
	st := CustomerStatus{Customer: c, Plan: p, ActiveRigs: len(c.Rigs),
		Action: s.cfg.PastDue.action(c, now).String(), MonthToDateMilliWh: u.TotalMilliWh, GapsThisMonth: len(u.Gaps)}
	// Energy in milli-cents: mWh × m¢/kWh / 1e6; integer all the way.
	st.EstimateCents = int64(len(c.Rigs))*p.MonthlyFeePerRigCents + u.TotalMilliWh*p.EnergyMilliCentsPerKWh/1_000_000/1000
	recs, err := s.records(func(r Record) bool { return r.Customer == customer && r.State != StateDone })
	if err != nil {
		return st, err
	}
	for _, r := range recs {
		if r.State == StateDead {
			st.DeadLetters++
		} else {
			st.PendingRecords++
		}
	}
	return st, nil
}

// UsageQuery selects energy by customer, rig, or both, over [From, To).
type UsageQuery struct {
	Customer string
	Rig      string
	From, To time.Time
}

// HourUsage is one rig's energy for one customer in one UTC hour.
type HourUsage struct {
	Rig      string    `json:"rig"`
	Customer string    `json:"customer"`
	Hour     time.Time `json:"hour"`
	// MilliWh is the energy billed in this hour: measured in it, plus
	// LateMilliWh measured earlier that arrived past the lateness window.
	MilliWh     int64 `json:"milli_wh"`
	LateMilliWh int64 `json:"late_milli_wh,omitempty"`
	// Closed hours have been handed to the outbox; ValueWh is the sum of
	// the meter events queued for the hour, Corrections how many of them
	// are corrections for energy that arrived after it was first sent, and
	// PendingMilliWh the part of MilliWh not in any event yet.
	Closed         bool  `json:"closed"`
	ValueWh        int64 `json:"value_wh"`
	Corrections    int   `json:"corrections,omitempty"`
	PendingMilliWh int64 `json:"pending_milli_wh,omitempty"`
}

// UsageReport is the answer to a UsageQuery. TotalMilliWh is computed from
// the exact units, so it can exceed the sum of rounded hourly values.
type UsageReport struct {
	Hours        []HourUsage `json:"hours"`
	TotalMilliWh int64       `json:"total_milli_wh"`
	// LateMilliWh is the part of TotalMilliWh billed late (see HourUsage).
	LateMilliWh int64 `json:"late_milli_wh"`
	Gaps        []Gap `json:"gaps"`
}

// Usage reports hourly energy and telemetry gaps as of the last Flush.
// Gaps are listed for the selected rig, or the customer's current rigs.
func (s *Service) Usage(q UsageQuery) (UsageReport, error) {
	if q.Customer == "" && q.Rig == "" {
		return UsageReport{}, fmt.Errorf("usage: customer or rig required: %w", ErrInvalid)
	}
	if !q.To.After(q.From) {
		return UsageReport{}, fmt.Errorf("usage: empty range %v..%v: %w", q.From, q.To, ErrInvalid)
	}
	from, to := q.From.UnixMilli(), q.To.UnixMilli()
	var rep UsageReport
	var units, late int64
	rigs := map[string]bool{}
	err := s.db.View(func(tx *store.Tx) error {
		if q.Rig != "" {
			rigs[q.Rig] = true
		} else {
			var c Customer
			if err := getJSON(tx.Bucket(bucketCustomers), []byte(q.Customer), &c); err != nil {
				return fmt.Errorf("customer %s: %w", q.Customer, err)
			}
			for _, r := range c.Rigs {
				rigs[r] = true
			}
		}
		err := tx.Bucket(bucketEnergy).ForEach(func(k, v []byte) error {
			rig, hour, cust, ok := parseEnergyKey(k)
			if !ok || hour+hourMs <= from || hour >= to {
				return nil
			}
			if (q.Rig != "" && rig != q.Rig) || (q.Customer != "" && cust != q.Customer) {
				return nil
			}
			var h hourRecord
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("decode energy %q: %w", k, err)
			}
			units += h.Units + h.Late
			late += h.Late
			rep.Hours = append(rep.Hours, HourUsage{Rig: rig, Customer: cust, Hour: time.UnixMilli(hour).UTC(),
				MilliWh: (h.Units + h.Late) / unitsPerMilliWh, LateMilliWh: h.Late / unitsPerMilliWh,
				Closed: h.Closed, ValueWh: h.ValueWh, Corrections: max(h.Events-1, 0),
				PendingMilliWh: (h.PendUnits + h.PendLate) / unitsPerMilliWh})
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketGaps).ForEach(func(k, v []byte) error {
			var g Gap
			if err := json.Unmarshal(v, &g); err != nil {
				return fmt.Errorf("decode gap: %w", err)
			}
			if rigs[g.Rig] && g.End.UnixMilli() > from && g.Start.UnixMilli() < to {
				rep.Gaps = append(rep.Gaps, g)
			}
			return nil
		})
	})
	if err != nil {
		return rep, fmt.Errorf("usage: %w", err)
	}
	sort.Slice(rep.Hours, func(i, j int) bool {
		a, b := rep.Hours[i], rep.Hours[j]
		if !a.Hour.Equal(b.Hour) {
			return a.Hour.Before(b.Hour)
		}
		if a.Rig != b.Rig {
			return a.Rig < b.Rig
		}
		return a.Customer < b.Customer
	})
	rep.TotalMilliWh = units / unitsPerMilliWh
	rep.LateMilliWh = late / unitsPerMilliWh
	return rep, nil
}
