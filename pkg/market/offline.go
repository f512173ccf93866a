package market

import (
	"context"
	"hash/fnv"
	"math"
	"time"
)

// OriginOffline marks a snapshot served by offline sources only: the
// numbers built into the binary, not live data.
const OriginOffline = "offline"

// Offline serves the snapshot built into the binary as today's market, for
// trying Quarry without network access or a market account. Its snapshots
// carry OriginOffline so that every view says the data is not live. With
// Swing set it is a demo market: each coin's price moves along a sine wave
// of the given Period, each coin at its own phase, so that a profit
// switcher has something to switch on within minutes.
type Offline struct {
	Label  string
	Swing  float64       // relative amplitude of the price wave, in [0, 0.9]
	Period time.Duration // of the price wave; default 5 minutes
	Now    func() time.Time
}

var _ Source = (*Offline)(nil)

// Name implements Source.
func (o *Offline) Name() string { return nameOr(o.Label, "offline") }

// IsOffline marks the source as serving no live data.
func (o *Offline) IsOffline() bool { return true }

// Fetch implements Source.
func (o *Offline) Fetch(_ context.Context) ([]Coin, error) {
	snap, err := DefaultSnapshot()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	period := o.Period
	if period <= 0 {
		period = 5 * time.Minute
	}
	swing := min(max(o.Swing, 0), 0.9)
	out := make([]Coin, 0, len(snap.Coins))
	for _, c := range snap.Coins {
		c.UpdatedAt, c.Source = now, o.Name()
		if swing > 0 {
			h := fnv.New32a()
			h.Write([]byte(c.Tag))
			phase := 2 * math.Pi * float64(h.Sum32()%1000) / 1000
			t := float64(now.UnixNano()%int64(period)) / float64(period)
			c.PriceUSD *= 1 + swing*math.Sin(2*math.Pi*t+phase)
		}
		out = append(out, c)
	}
	return out, nil
}

// offliner is implemented by sources that serve no live data.
type offliner interface{ IsOffline() bool }

// allOffline reports whether every source that answered serves no live
// data.
func allOffline(results []sourceResult, sources []Source) bool {
	any := false
	for i, r := range results {
		if r.err != nil {
			continue
		}
		o, ok := sources[i].(offliner)
		if !ok || !o.IsOffline() {
			return false
		}
		any = true
	}
	return any
}
