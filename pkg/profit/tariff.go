package profit

import (
	"fmt"
	"math"
	"time"
)

// Tariff is a site's electricity price in USD per kWh, by hour of the week.
// Rules are checked in order and the first that covers the hour wins;
// hours no rule covers cost Default.
type Tariff struct {
	Default float64      `json:"default" yaml:"default"`
	Rules   []TariffRule `json:"rules,omitempty" yaml:"rules,omitempty"`
	// Location is the site's wall clock; nil means UTC. Tariffs follow
	// local time, so a fleet spread over time zones needs this.
	Location *time.Location `json:"-" yaml:"-"`
}

// TariffRule prices the hours [From, To) on the listed weekdays. To may be
// smaller than From for a window that crosses midnight (22 → 6); the
// hours after midnight then belong to the day the window started on.
// Empty Days means every day.
type TariffRule struct {
	Days  []time.Weekday `json:"days,omitempty" yaml:"days,omitempty"`
	From  int            `json:"from" yaml:"from"`
	To    int            `json:"to" yaml:"to"`
	Price float64        `json:"price" yaml:"price"`
}

// FlatTariff is a tariff with one price at all hours.
func FlatTariff(usdPerKWh float64) Tariff { return Tariff{Default: usdPerKWh} }

// Validate names the first rule that cannot be applied.
func (t Tariff) Validate() error {
	ok := func(p float64) bool { return p >= 0 && !math.IsInf(p, 0) }
	if !ok(t.Default) {
		return fmt.Errorf("tariff: default price %v must be a finite non-negative USD/kWh", t.Default)
	}
	for i, r := range t.Rules {
		if r.From < 0 || r.From > 23 || r.To < 0 || r.To > 24 || r.From == r.To {
			return fmt.Errorf("tariff rule %d: hours %d-%d must be distinct, from in 0..23 and to in 0..24", i, r.From, r.To)
		}
		if !ok(r.Price) {
			return fmt.Errorf("tariff rule %d: price %v must be a finite non-negative USD/kWh", i, r.Price)
		}
		for _, d := range r.Days {
			if d < time.Sunday || d > time.Saturday {
				return fmt.Errorf("tariff rule %d: weekday %d out of range", i, int(d))
			}
		}
	}
	return nil
}

// WeekTable is a tariff resolved to one price per hour of the week,
// indexed [weekday][hour], for lookups on the hot path.
type WeekTable [7][24]float64

// Table resolves the rules into a WeekTable.
func (t Tariff) Table() WeekTable {
	var w WeekTable
	set := [7][24]bool{}
	for d := range 7 {
		for h := range 24 {
			w[d][h] = t.Default
		}
	}
	for _, r := range t.Rules {
		days := r.Days
		if len(days) == 0 {
			days = []time.Weekday{0, 1, 2, 3, 4, 5, 6}
		}
		for _, d := range days {
			h, end := r.From, r.To
			if end <= h {
				end += 24
			}
			for ; h < end; h++ {
				dd, hh := (int(d)+h/24)%7, h%24
				if !set[dd][hh] {
					set[dd][hh] = true
					w[dd][hh] = r.Price
				}
			}
		}
	}
	return w
}

// At returns the price in force at t in the table's site time.
func (w *WeekTable) At(t time.Time) float64 { return w[t.Weekday()][t.Hour()] }

// DayAverage is the mean price over the 24 hours of a weekday, the right
// figure for a rig that runs all day.
func (w *WeekTable) DayAverage(d time.Weekday) float64 {
	s := 0.0
	for _, p := range w[d] {
		s += p
	}
	return s / 24
}

// Price returns the price in force at t. It resolves the rules on every
// call; use Table for repeated lookups.
func (t Tariff) Price(at time.Time) float64 {
	w := t.Table()
	return w.At(t.local(at))
}

func (t Tariff) local(at time.Time) time.Time {
	if t.Location != nil {
		return at.In(t.Location)
	}
	return at.UTC()
}
