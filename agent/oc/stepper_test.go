package oc

import (
	"context"
	"errors"
	"testing"
)

type stepCard struct {
	info CardInfo
	set  []uint32
}

func (c *stepCard) Info() CardInfo                          { return c.info }
func (c *stepCard) SetPowerLimit(mw uint32) error           { c.set = append(c.set, mw); return nil }
func (c *stepCard) SetGPULockedClocks(uint32, uint32) error { return nil }
func (c *stepCard) ResetGPULockedClocks() error             { return nil }
func (c *stepCard) SetMemLockedClocks(uint32, uint32) error { return nil }
func (c *stepCard) ResetMemLockedClocks() error             { return nil }
func (c *stepCard) SetFanSpeed(int, int) error              { return nil }
func (c *stepCard) SetDefaultFanSpeed(int) error            { return nil }

type stepBackend []Card

func (b stepBackend) Cards(context.Context) ([]Card, error) { return b, nil }

func u32(v uint32) *uint32 { return &v }

func TestPowerStepperLowersToTheMinimumAndStops(t *testing.T) {
	hot := &stepCard{info: CardInfo{BusID: "00000000:01:00.0", PowerDefaultMW: u32(200000), PowerMinMW: u32(150000), PowerMaxMW: u32(250000)}}
	other := &stepCard{info: CardInfo{BusID: "0000:02:00.0", PowerDefaultMW: u32(200000), PowerMinMW: u32(100000)}}
	p := NewPowerStepper(stepBackend{hot, other}, 0.1)
	ctx := context.Background()
	for range 3 {
		if err := p.LowerPowerLimit(ctx, "01:00.0"); err != nil {
			t.Fatal(err)
		}
	}
	want := []uint32{180000, 160000, 150000}
	if len(hot.set) != 3 || hot.set[0] != want[0] || hot.set[1] != want[1] || hot.set[2] != want[2] {
		t.Fatalf("limits set %v, want %v", hot.set, want)
	}
	if err := p.LowerPowerLimit(ctx, "0000:01:00.0"); !errors.Is(err, ErrAtMinimum) {
		t.Fatalf("below minimum: %v", err)
	}
	if len(other.set) != 0 {
		t.Fatalf("another card was touched: %v", other.set)
	}
	if err := p.LowerPowerLimit(ctx, "0000:09:00.0"); err == nil {
		t.Fatal("unknown bus id accepted")
	}
}
