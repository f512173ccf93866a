// Package minerapi reads the stats APIs that mining programs serve and turns
// each miner's own reply into one Stats value, and turns a flight sheet into
// each miner's command line or config file.
//
// Build adapters from a Registry (Default() has every built-in adapter; see
// Default), then call Launch to start a miner and Stats to poll it:
//
//	a, err := minerapi.Default().New("xmrig", minerapi.Options{Client: minerapi.NewClient()})
//	l, err := a.Launch(sheet)               // l.Args, and l.Config to write to l.ConfigName
//	st, err := a.Stats(ctx, sheet.API)      // one reading
//
// Errors from Stats tell the caller what to do: errors.Is(err,
// ErrUnreachable) (refused, timeout, closed without a word) means the miner
// did not answer; ErrBadReply (ErrTooLarge is a kind of it) means it
// answered with something that cannot be read, even after the firmware
// defects this package knows are repaired; ErrAuth means the
// token is wrong; ErrNoHashrate means the miner answered without a hashrate
// yet, and the Stats returned alongside it holds everything else.
package minerapi

import "time"

// Stats is one reading of a miner's stats API, normalised across miners.
// Hashrates are in hashes per second whatever unit the miner reported.
type Stats struct {
	Miner     string        // adapter name, e.g. "xmrig"
	Version   string        // miner's own version string, when it reports one
	Algorithm string        // algorithm the miner says it is running
	Uptime    time.Duration // miner process uptime as the miner reports it
	Pool      string        // pool URL the miner is connected to now
	// Model is the machine the miner names, e.g. "Antminer L3+" (ASIC
	// firmware only); it picks the units of the rate fields.
	Model string

	TotalHashrate float64 // H/s
	Accepted      uint64
	Rejected      uint64
	Stale         uint64

	GPUs []GPUStats

	// HottestC is the hottest real temperature sensor the miner reports
	// (any board, chip or PCB sensor; failed sensors excluded), nil when
	// it reports none. Overheat protection compares this, not an average
	// or the first sensor, so one hot chip is enough to act.
	HottestC *float64
}

// GPUStats is one device's share of a Stats reading. BusID is normalised to
// the long PCI form "0000:01:00.0" so it can be matched against telemetry.
type GPUStats struct {
	Index    int
	BusID    string
	Name     string
	Hashrate float64 // H/s
	Accepted uint64
	Rejected uint64
	Stale    uint64

	// Optional readings some miners report; nil when absent, never a
	// made-up zero.
	TemperatureC *float64
	PowerW       *float64
	FanPercent   *float64
}
