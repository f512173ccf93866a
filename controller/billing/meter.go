package billing

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/quarryfleet/quarry/pkg/store"
)

// Energy is kept in units of half a milliwatt-millisecond so that the
// trapezoid (p0+p1)/2·Δt of integer mW and ms is itself an integer and sums
// never drift however many samples a month holds.
const (
	unitsPerMilliWh = 2 * 3_600_000 // 2 × (1 mW × 3.6e6 ms)
	unitsPerWh      = 1000 * unitsPerMilliWh
	hourMs          = int64(time.Hour / time.Millisecond)
	// maxPowerW bounds one rig's draw; anything above is a broken sensor.
	maxPowerW = 100_000
)

// ErrBadSample is returned for a power sample that cannot be real.
var ErrBadSample = errors.New("bad power sample")

// Gap is an interval without telemetry longer than the configured maximum;
// no energy is invented for it.
type Gap struct {
	Rig   string    `json:"rig"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// MeterStats counts what the meter did with energy that did not arrive in
// order and on time.
type MeterStats struct {
	// Backwards counts samples at or before the rig's previous sample.
	Backwards int64 `json:"backwards"`
	// LateMilliWh is energy that arrived after its hour's lateness window;
	// it was billed in the hour it arrived instead.
	LateMilliWh int64 `json:"late_milli_wh"`
	// CorrectedMilliWh is energy that arrived, within the lateness window,
	// for an hour already sent; correction events billed it to that hour.
	CorrectedMilliWh int64 `json:"corrected_milli_wh"`
	// Corrections counts correction meter events queued.
	Corrections int64 `json:"corrections"`
	// Gaps counts gaps recorded since the database was created.
	Gaps int64 `json:"gaps"`
}

// meterCounters is MeterStats as persisted, in exact energy units.
type meterCounters struct {
	Backwards      int64 `json:"backwards"`
	LateUnits      int64 `json:"late_units"`
	CorrectedUnits int64 `json:"corrected_units"`
	Corrections    int64 `json:"corrections"`
	Gaps           int64 `json:"gaps"`
}

type ownerChange struct {
	At       int64  `json:"at"`
	Customer string `json:"customer"`
}

type hourOwner struct {
	Hour     int64  `json:"hour"` // hour start, unix ms
	Customer string `json:"customer"`
}

// pendingEnergy is energy of one hour row not yet in a meter event: Units
// measured in the hour, Late measured earlier but past its own hour's
// lateness window, so billed in this (arrival) hour.
type pendingEnergy struct {
	Units int64 `json:"units"`
	Late  int64 `json:"late,omitempty"`
}

type openHour struct {
	hourOwner
	pendingEnergy
}

// rigState is a rig's integration state, persisted by Flush.
type rigState struct {
	HasLast bool          `json:"has_last"`
	LastMs  int64         `json:"last_ms"`
	LastMW  int64         `json:"last_mw"`
	Owner   string        `json:"owner"`
	Changes []ownerChange `json:"changes,omitempty"`
	// Open holds energy not yet sent, per hour and customer. An hour that
	// was already sent is open again when energy measured in it arrives
	// late; closing it then queues a correction.
	Open []openHour `json:"open,omitempty"`
	// Rem carries, per customer, the energy below one Wh left over by
	// closed hours, so hourly Wh sent to Stripe add up to the exact total.
	Rem map[string]int64 `json:"rem,omitempty"`

	open  map[hourOwner]pendingEnergy
	dirty bool
}

type closedHour struct {
	rig     string
	hour    int64
	cust    string
	energy  pendingEnergy
	valueWh int64
}

// hourRecord is what billing_energy holds per rig, hour and customer.
type hourRecord struct {
	// Units is all energy measured in the hour, Late the energy measured
	// earlier that arrived past its window and is billed in this hour.
	Units int64 `json:"units"`
	Late  int64 `json:"late,omitempty"`
	// PendUnits and PendLate are the parts of Units and Late not yet in a
	// meter event.
	PendUnits int64 `json:"pend_units,omitempty"`
	PendLate  int64 `json:"pend_late,omitempty"`
	// Closed: the hour was sent at least once. ValueWh is the sum of the
	// meter events queued for it; Events counts them (the first one and
	// its corrections).
	Closed  bool  `json:"closed"`
	ValueWh int64 `json:"value_wh,omitempty"`
	Events  int   `json:"events,omitempty"`
}

// setPending replaces the record's unsent energy with p.
func (r *hourRecord) setPending(p pendingEnergy) {
	if !r.Closed {
		// Never sent, so all of it is pending (records written before
		// the pending fields existed left them zero).
		r.PendUnits, r.PendLate = r.Units, r.Late
	}
	r.Units += p.Units - r.PendUnits
	r.Late += p.Late - r.PendLate
	r.PendUnits, r.PendLate = p.Units, p.Late
}

// Meter integrates rig power into hourly energy per customer. Observe only
// touches memory; Flush persists and turns closed hours into meter events.
type Meter struct {
	s      *Service
	maxGap int64
	idle   int64
	window int64

	mu     sync.Mutex
	rigs   map[string]*rigState
	closed []closedHour
	gaps   []Gap
	stats  meterCounters
}

func loadMeter(s *Service) (*Meter, error) {
	m := &Meter{s: s, rigs: map[string]*rigState{},
		maxGap: s.cfg.MaxGap.Milliseconds(), idle: (s.cfg.MaxGap + s.cfg.LateMargin).Milliseconds(),
		window: s.cfg.LateWindow.Milliseconds()}
	err := s.db.View(func(tx *store.Tx) error {
		if v := tx.Bucket(bucketMeta).Get([]byte("meter_counters")); v != nil {
			if err := json.Unmarshal(v, &m.stats); err != nil {
				return fmt.Errorf("decode meter counters: %w", err)
			}
		} else if v := tx.Bucket(bucketMeta).Get([]byte("meter_stats")); v != nil {
			// Counters of a database written before late energy was
			// billed; the energy they counted as late was never billed
			// and has no place in today's counters.
			var old struct {
				Backwards int64 `json:"backwards"`
				Gaps      int64 `json:"gaps"`
			}
			if err := json.Unmarshal(v, &old); err != nil {
				return fmt.Errorf("decode meter stats: %w", err)
			}
			m.stats.Backwards, m.stats.Gaps = old.Backwards, old.Gaps
		}
		if err := tx.Bucket(bucketMeterState).ForEach(func(k, v []byte) error {
			st := &rigState{}
			if err := json.Unmarshal(v, st); err != nil {
				return fmt.Errorf("decode meter state %s: %w", k, err)
			}
			st.open = map[hourOwner]pendingEnergy{}
			for _, o := range st.Open {
				st.open[o.hourOwner] = o.pendingEnergy
			}
			m.rigs[string(k)] = st
			return nil
		}); err != nil {
			return err
		}
		// Ownership changed after the last persisted sample is replayed.
		return tx.Bucket(bucketRigs).ForEach(func(k, v []byte) error {
			var o rigOwner
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("decode rig %s: %w", k, err)
			}
			st := m.rig(string(k))
			if last := st.lastOwner(); last != o.Customer {
				st.Changes = append(st.Changes, ownerChange{At: o.Since.UnixMilli(), Customer: o.Customer})
			}
			return nil
		})
	})
	return m, err
}

func (st *rigState) lastOwner() string {
	if n := len(st.Changes); n > 0 {
		return st.Changes[n-1].Customer
	}
	return st.Owner
}

func (m *Meter) rig(id string) *rigState {
	st, ok := m.rigs[id]
	if !ok {
		st = &rigState{open: map[hourOwner]pendingEnergy{}}
		m.rigs[id] = st
	}
	return st
}

func (m *Meter) setOwner(rig string, at time.Time, customer string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.rig(rig)
	st.Changes = append(st.Changes, ownerChange{At: at.UnixMilli(), Customer: customer})
	st.dirty = true
}

func hourStart(ms int64) int64 { return ms - ((ms%hourMs)+hourMs)%hourMs }

// twiceEnergy is 2∫p dt over the first u ms of a segment of length d where
// power goes linearly from p0 to p1 (mW). The 128-bit product keeps it exact
// for any gap and power the meter accepts.
func twiceEnergy(p0, p1, d, u int64) int64 {
	if u >= d {
		return (p0 + p1) * d
	}
	inner := uint64(p0)*uint64(2*d-u) + uint64(p1)*uint64(u)
	hi, lo := bits.Mul64(uint64(u), inner)
	q, _ := bits.Div64(hi, lo, uint64(d))
	return int64(q)
}

// Observe adds a power sample taken at t. Energy between consecutive
// samples is the trapezoid, split exactly at UTC hour boundaries and at
// ownership changes. A sample at or before the previous one is ignored and
// counted; a sample more than MaxGap after the previous one starts afresh
// and records a gap.
//
// Energy is billed to the hour it was measured in as long as it arrives
// (now, by the controller's clock) within LateWindow of that hour's end,
// even if the hour was already sent: closing the hour again queues a
// correction for the difference. Energy arriving later is billed in the
// hour it arrives and counted as late.
func (m *Meter) Observe(rigID string, t time.Time, powerW float64) error {
	if err := validID("rig", rigID); err != nil {
		return err
	}
	if math.IsNaN(powerW) || powerW < 0 || powerW > maxPowerW {
		return fmt.Errorf("rig %s power %v W: %w", rigID, powerW, ErrBadSample)
	}
	ms := t.UnixMilli()
	mw := int64(math.Round(powerW * 1000))
	nowMs := m.s.now().UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.rig(rigID)
	st.dirty = true
	if st.HasLast && ms <= st.LastMs {
		m.stats.Backwards++
		return nil
	}
	if st.HasLast && ms-st.LastMs > m.maxGap {
		m.gaps = append(m.gaps, Gap{Rig: rigID, Start: time.UnixMilli(st.LastMs).UTC(), End: time.UnixMilli(ms).UTC()})
		m.stats.Gaps++
	} else if st.HasLast {
		m.integrate(st, ms, mw, nowMs)
	}
	m.takeChanges(st, ms)
	st.HasLast, st.LastMs, st.LastMW = true, ms, mw
	m.closeBefore(rigID, st, hourStart(ms))
	return nil
}

// takeChanges applies ownership changes at or before ms.
func (m *Meter) takeChanges(st *rigState, ms int64) {
	n := 0
	for n < len(st.Changes) && st.Changes[n].At <= ms {
		st.Owner = st.Changes[n].Customer
		n++
	}
	if n > 0 {
		st.Changes = append(st.Changes[:0], st.Changes[n:]...)
	}
}

func (m *Meter) integrate(st *rigState, ms, mw, nowMs int64) {
	t0, p0, d := st.LastMs, st.LastMW, ms-st.LastMs
	x, prev := t0, int64(0)
	owner := st.Owner
	ci := 0
	for x < ms {
		for ci < len(st.Changes) && st.Changes[ci].At <= x {
			owner = st.Changes[ci].Customer
			ci++
		}
		end := min(hourStart(x)+hourMs, ms)
		if ci < len(st.Changes) && st.Changes[ci].At < end {
			end = st.Changes[ci].At
		}
		e := twiceEnergy(p0, mw, d, end-t0)
		units := e - prev
		prev = e
		h := hourStart(x)
		switch {
		case units <= 0:
		case nowMs-(h+hourMs) <= m.window:
			k := hourOwner{Hour: h, Customer: owner}
			p := st.open[k]
			p.Units += units
			st.open[k] = p
		default:
			// Past the window Stripe may no longer take it for its own hour
			// (or the invoice is long final): bill it now, owned by whoever
			// rented the rig when it was measured.
			k := hourOwner{Hour: hourStart(nowMs), Customer: owner}
			p := st.open[k]
			p.Late += units
			st.open[k] = p
			m.stats.LateUnits += units
		}
		x = end
	}
}

// closeBefore closes the rig's open hours that start before cutoff.
func (m *Meter) closeBefore(rigID string, st *rigState, cutoff int64) {
	var keys []hourOwner
	for k := range st.open {
		if k.Hour < cutoff {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Hour != keys[j].Hour {
			return keys[i].Hour < keys[j].Hour
		}
		return keys[i].Customer < keys[j].Customer
	})
	for _, k := range keys {
		p := st.open[k]
		delete(st.open, k)
		if st.Rem == nil {
			st.Rem = map[string]int64{}
		}
		total := st.Rem[k.Customer] + p.Units + p.Late
		wh := total / unitsPerWh
		st.Rem[k.Customer] = total % unitsPerWh
		m.closed = append(m.closed, closedHour{rig: rigID, hour: k.Hour, cust: k.Customer, energy: p, valueWh: wh})
	}
	st.dirty = true
}

// Stats returns the meter's counters.
func (m *Meter) Stats() MeterStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats.public()
}

func (c meterCounters) public() MeterStats {
	return MeterStats{Backwards: c.Backwards, LateMilliWh: c.LateUnits / unitsPerMilliWh,
		CorrectedMilliWh: c.CorrectedUnits / unitsPerMilliWh, Corrections: c.Corrections, Gaps: c.Gaps}
}

// meterIdentifier names the meter event of one rig, hour and customer; the
// n-th correction (n ≥ 1) gets its own identifier, and its idempotency key
// follows from it, so a correction is never taken for the first event.
func meterIdentifier(rig string, hour int64, cust string, n int) string {
	id := fmt.Sprintf("energy:%s:%s:%s", rig, time.UnixMilli(hour).UTC().Format("2006-01-02T15"), cust)
	if n > 0 {
		id += ":c" + strconv.Itoa(n)
	}
	return id
}

// Flush closes the hours that ended more than MaxGap+LateMargin ago (a
// rig still reporting has closed them itself by reporting past their end),
// then persists every rig's state, hourly totals and gaps and queues a
// meter event for each closed hour, all in one transaction. An hour closed
// before is closed again only when late energy reopened it, and then its
// event is a correction for that energy alone. Call it periodically (every
// few seconds) and at shutdown; samples since the last Flush are lost on a
// crash, and the rig then shows a gap rather than invented energy.
func (m *Meter) Flush(ctx context.Context, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	nowMs := now.UnixMilli()
	for id, st := range m.rigs {
		if len(st.open) > 0 {
			m.closeBefore(id, st, nowMs-m.idle-hourMs+1)
		}
	}
	type sent struct {
		c          closedHour
		correction bool
	}
	var done []sent
	var stats meterCounters
	queued := 0
	err := m.s.db.Update(func(tx *store.Tx) error {
		queued, done, stats = 0, done[:0], m.stats
		sb, eb := tx.Bucket(bucketMeterState), tx.Bucket(bucketEnergy)
		// Closed hours first: an hour closed and reopened since the last
		// Flush is then written below with only its new pending energy.
		for _, c := range m.closed {
			key := energyKey(c.rig, c.hour, c.cust)
			var rec hourRecord
			if err := getJSON(eb, key, &rec); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if rec.Closed && rec.Events == 0 && rec.ValueWh > 0 {
				// Written before corrections existed: its one event used
				// the base identifier, so the first correction is c1.
				rec.Events = 1
			}
			correction := rec.Closed
			rec.setPending(c.energy)
			rec.PendUnits, rec.PendLate, rec.Closed = 0, 0, true
			if correction {
				stats.CorrectedUnits += c.energy.Units + c.energy.Late
			}
			if c.cust != "" && c.valueWh != 0 {
				hour := time.UnixMilli(c.hour).UTC()
				ident := meterIdentifier(c.rig, c.hour, c.cust, rec.Events)
				if _, err := enqueue(tx, Record{Kind: KindMeterEvent, Key: "quarry:" + ident, Customer: c.cust, Rig: c.rig,
					Identifier: ident, ValueWh: c.valueWh, Timestamp: hour.Unix(), CreatedAt: now.UTC()}); err != nil {
					return err
				}
				if rec.Events > 0 {
					stats.Corrections++
				}
				rec.Events++
				rec.ValueWh += c.valueWh
				queued++
			}
			if err := putJSON(eb, key, rec); err != nil {
				return err
			}
			done = append(done, sent{c, correction})
		}
		for id, st := range m.rigs {
			if !st.dirty {
				continue
			}
			st.Open = st.Open[:0]
			for k, p := range st.open {
				st.Open = append(st.Open, openHour{hourOwner: k, pendingEnergy: p})
				key := energyKey(id, k.Hour, k.Customer)
				var rec hourRecord
				if err := getJSON(eb, key, &rec); err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				rec.setPending(p)
				if err := putJSON(eb, key, rec); err != nil {
					return err
				}
			}
			if err := putJSON(sb, []byte(id), st); err != nil {
				return err
			}
		}
		gb := tx.Bucket(bucketGaps)
		for _, g := range m.gaps {
			if err := putJSON(gb, gapKey(g.Rig, g.Start.UnixMilli()), g); err != nil {
				return err
			}
		}
		return putJSON(tx.Bucket(bucketMeta), []byte("meter_counters"), stats)
	})
	if err != nil {
		return fmt.Errorf("flush meter: %w", err)
	}
	m.stats = stats
	for _, st := range m.rigs {
		st.dirty = false
	}
	for _, d := range done {
		c := d.c
		kind, what := "energy.hour_closed", "billed"
		if d.correction {
			kind, what = "energy.hour_corrected", "billed as a correction"
		}
		detail := fmt.Sprintf("%s %d mWh, %d Wh %s", time.UnixMilli(c.hour).UTC().Format("2006-01-02T15"),
			c.energy.Units/unitsPerMilliWh, c.valueWh, what)
		if c.energy.Late > 0 {
			detail += fmt.Sprintf(", incl. %d mWh measured earlier that arrived past the lateness window", c.energy.Late/unitsPerMilliWh)
		}
		m.s.audit(ctx, AuditEvent{Kind: kind, Customer: c.cust, Rig: c.rig, Detail: detail})
	}
	for _, g := range m.gaps {
		m.s.audit(ctx, AuditEvent{Kind: "energy.gap", Rig: g.Rig, Detail: g.Start.Format(time.RFC3339) + " to " + g.End.Format(time.RFC3339)})
	}
	m.closed, m.gaps = m.closed[:0], m.gaps[:0]
	if queued > 0 {
		m.s.notifyRelay()
	}
	return nil
}

// RunFlusher calls Flush every interval until ctx ends, then once more.
func (m *Meter) RunFlusher(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := m.Flush(context.WithoutCancel(ctx), m.s.now()); err != nil {
				m.s.log.Error("billing final meter flush", "err", err)
			}
			return
		case <-t.C:
			if err := m.Flush(ctx, m.s.now()); err != nil {
				m.s.log.Error("billing meter flush", "err", err)
			}
		}
	}
}

func energyKey(rig string, hour int64, cust string) []byte {
	k := make([]byte, 0, len(rig)+len(cust)+10)
	k = append(k, rig...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, uint64(hour))
	k = append(k, 0)
	return append(k, cust...)
}

func parseEnergyKey(k []byte) (rig string, hour int64, cust string, ok bool) {
	i := 0
	for i < len(k) && k[i] != 0 {
		i++
	}
	if len(k) < i+10 {
		return "", 0, "", false
	}
	return string(k[:i]), int64(binary.BigEndian.Uint64(k[i+1 : i+9])), string(k[i+10:]), true
}

func gapKey(rig string, start int64) []byte {
	k := append([]byte(rig), 0)
	return binary.BigEndian.AppendUint64(k, uint64(start))
}
