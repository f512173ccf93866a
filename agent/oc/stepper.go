package oc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/quarryfleet/quarry/pkg/telemetry"
)

// ErrAtMinimum is returned when a card's power limit cannot go lower.
var ErrAtMinimum = errors.New("power limit already at the card's minimum")

// PowerStepper lowers one card's power limit a step at a time, for the
// watchdog's overheat rule. Each step is a fraction of the card's default
// limit and never goes below the card's own minimum.
type PowerStepper struct {
	backend Backend
	step    float64

	mu  sync.Mutex
	cur map[string]uint32 // bus id → last limit set, mW
}

// NewPowerStepper steps by fraction of the default limit (0.1 if ≤ 0).
func NewPowerStepper(b Backend, fraction float64) *PowerStepper {
	if fraction <= 0 || fraction >= 1 {
		fraction = 0.1
	}
	return &PowerStepper{backend: b, step: fraction, cur: map[string]uint32{}}
}

// LowerPowerLimit lowers the limit of the card at busID by one step.
func (p *PowerStepper) LowerPowerLimit(ctx context.Context, busID string) error {
	cards, err := p.backend.Cards(ctx)
	if err != nil {
		return fmt.Errorf("oc: list cards: %w", err)
	}
	want := normBus(busID)
	for _, c := range cards {
		info := c.Info()
		if normBus(info.BusID) != want {
			continue
		}
		if info.PowerDefaultMW == nil || info.PowerMinMW == nil {
			return fmt.Errorf("oc: GPU %s does not report power limits", busID)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		cur, ok := p.cur[want]
		if !ok {
			cur = *info.PowerDefaultMW
		}
		if cur <= *info.PowerMinMW {
			return fmt.Errorf("oc: GPU %s: %w (%d W)", busID, ErrAtMinimum, *info.PowerMinMW/1000)
		}
		next := max(*info.PowerMinMW, cur-uint32(float64(*info.PowerDefaultMW)*p.step))
		if err := c.SetPowerLimit(next); err != nil {
			return fmt.Errorf("oc: GPU %s: set power limit %d W: %w", busID, next/1000, err)
		}
		p.cur[want] = next
		return nil
	}
	return fmt.Errorf("oc: no GPU at bus id %s", busID)
}

func normBus(s string) string {
	if n, err := telemetry.NormalizeBusID(s); err == nil {
		return n
	}
	return strings.ToLower(s)
}
