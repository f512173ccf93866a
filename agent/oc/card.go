package oc

import "context"

// CardInfo is a GPU's identity and the limits its driver reports.
// Absent limits are nil: the setting cannot be applied to this card.
type CardInfo struct {
	Index int
	UUID  string
	Name  string
	BusID string

	PowerMinMW, PowerMaxMW, PowerDefaultMW *uint32
	GPUClockMaxMHz, MemClockMaxMHz         *uint32
	Fans                                   int
	FanMin, FanMax                         *int
}

// Card is one GPU the applier can drive.
type Card interface {
	Info() CardInfo
	SetPowerLimit(mw uint32) error
	SetGPULockedClocks(minMHz, maxMHz uint32) error
	ResetGPULockedClocks() error
	SetMemLockedClocks(minMHz, maxMHz uint32) error
	ResetMemLockedClocks() error
	SetFanSpeed(fan, percent int) error
	SetDefaultFanSpeed(fan int) error
}

// Backend lists the cards present now.
type Backend interface {
	Cards(ctx context.Context) ([]Card, error)
}
