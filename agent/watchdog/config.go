// Package watchdog watches a running miner and the GPUs under it and acts
// when something is wrong: it restarts a miner whose hashrate stays low or
// whose stats API stops answering, moves to the next pool when shares stop
// or the pool refuses the login, stops the miner (or lowers a power limit)
// when a GPU reaches its critical temperature, reports lost GPUs, and as a
// last resort runs a configured reboot command when restarts pile up.
//
// Every decision is an Event, so an operator can always see why the agent
// did what it did. Time comes from an injectable Clock.
package watchdog

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// OverheatAction is what the watchdog does when a GPU reaches CriticalTempC.
type OverheatAction string

// Overheat actions.
const (
	OverheatStop       OverheatAction = "stop"        // stop the miner until every GPU has cooled
	OverheatPowerLimit OverheatAction = "power_limit" // lower the hot GPU's power limit, keep mining
)

// Config holds the watchdog's rules. Zero fields take the default written
// beside them (DefaultConfig returns them all); durations set negative turn
// their rule off.
type Config struct {
	// PollInterval is how often stats and GPU readings are taken. 10s.
	PollInterval time.Duration
	// StartupGrace is how long after a miner start its hashrate and stats
	// API are not judged: miners spend it building DAGs and datasets. 2m.
	StartupGrace time.Duration

	// The miner is restarted when its hashrate stays below
	// LowHashrateFraction (0.7) of the flight sheet's expected hashrate for
	// LowHashrateFor (5m). Sheets without an expected hashrate skip this.
	LowHashrateFraction float64
	LowHashrateFor      time.Duration

	// The miner moves to the next pool when no share has been accepted for
	// NoShareFor (10m).
	NoShareFor time.Duration
	// LoginFailurePatterns are case-insensitive regular expressions matched
	// against miner log lines; a match means the pool refused the login and
	// the miner moves to the next pool, at most once per LoginFailureCooldown
	// (1m). nil means DefaultLoginFailurePatterns; an empty list turns the
	// rule off.
	LoginFailurePatterns []string
	LoginFailureCooldown time.Duration

	// StatsUnreachableFor (3m) of an unanswered stats API means the miner
	// hangs; it is restarted. Unreachable is never read as zero hashrate.
	StatsUnreachableFor time.Duration

	// When the miner has been restarted MaxRestarts (5) times within
	// RestartWindow (1h), RebootCommand is run, if set (off by default),
	// with RebootTimeout (1m). Without it the storm is only reported.
	MaxRestarts   int
	RestartWindow time.Duration
	RebootCommand []string
	RebootTimeout time.Duration

	// CriticalTempC (90 °C) triggers OnOverheat (stop). A stopped miner is
	// started again once every GPU is below CriticalTempC - CoolDownC (10).
	// With power_limit the hot GPU's limit is lowered again every
	// PowerLimitEvery (1m) while it stays at or above critical.
	CriticalTempC   float64
	CoolDownC       float64
	OnOverheat      OverheatAction
	PowerLimitEvery time.Duration
}

// DefaultLoginFailurePatterns match what common miners print when a pool
// rejects the wallet or worker.
func DefaultLoginFailurePatterns() []string {
	return []string{
		`login (failed|error)`,
		`unauthori[sz]ed`,
		`authori[sz]ation failed`,
		`invalid (wallet|address|user|login)`,
		`bad (wallet|user|login)`,
		`failed to authori[sz]e`,
	}
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		PollInterval:         10 * time.Second,
		StartupGrace:         2 * time.Minute,
		LowHashrateFraction:  0.7,
		LowHashrateFor:       5 * time.Minute,
		NoShareFor:           10 * time.Minute,
		LoginFailurePatterns: DefaultLoginFailurePatterns(),
		LoginFailureCooldown: time.Minute,
		StatsUnreachableFor:  3 * time.Minute,
		MaxRestarts:          5,
		RestartWindow:        time.Hour,
		RebootTimeout:        time.Minute,
		CriticalTempC:        90,
		CoolDownC:            10,
		OnOverheat:           OverheatStop,
		PowerLimitEvery:      time.Minute,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&c.PollInterval, d.PollInterval)
	setDur(&c.StartupGrace, d.StartupGrace)
	setDur(&c.LowHashrateFor, d.LowHashrateFor)
	setDur(&c.NoShareFor, d.NoShareFor)
	setDur(&c.LoginFailureCooldown, d.LoginFailureCooldown)
	setDur(&c.StatsUnreachableFor, d.StatsUnreachableFor)
	setDur(&c.RestartWindow, d.RestartWindow)
	setDur(&c.RebootTimeout, d.RebootTimeout)
	setDur(&c.PowerLimitEvery, d.PowerLimitEvery)
	if c.LowHashrateFraction == 0 {
		c.LowHashrateFraction = d.LowHashrateFraction
	}
	if c.LoginFailurePatterns == nil {
		c.LoginFailurePatterns = d.LoginFailurePatterns
	}
	if c.MaxRestarts == 0 {
		c.MaxRestarts = d.MaxRestarts
	}
	if c.CriticalTempC == 0 {
		c.CriticalTempC = d.CriticalTempC
	}
	if c.CoolDownC == 0 {
		c.CoolDownC = d.CoolDownC
	}
	if c.OnOverheat == "" {
		c.OnOverheat = d.OnOverheat
	}
	return c
}

// Validate reports every bad field, by name, after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("watchdog config %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.PollInterval < 0 {
		bad("PollInterval", "%v must be positive", c.PollInterval)
	}
	if c.StartupGrace < 0 {
		bad("StartupGrace", "%v must not be negative", c.StartupGrace)
	}
	if c.LowHashrateFraction <= 0 || c.LowHashrateFraction >= 1 {
		bad("LowHashrateFraction", "%v must be between 0 and 1", c.LowHashrateFraction)
	}
	for i, p := range c.LoginFailurePatterns {
		if _, err := regexp.Compile("(?i)" + p); err != nil {
			bad(fmt.Sprintf("LoginFailurePatterns[%d]", i), "%v", err)
		}
	}
	if c.MaxRestarts < 1 {
		bad("MaxRestarts", "%d must be at least 1", c.MaxRestarts)
	}
	if c.RestartWindow < 0 || c.RebootTimeout < 0 || c.LoginFailureCooldown < 0 || c.PowerLimitEvery < 0 {
		bad("RestartWindow/RebootTimeout/LoginFailureCooldown/PowerLimitEvery", "must not be negative")
	}
	if len(c.RebootCommand) > 0 && c.RebootCommand[0] == "" {
		bad("RebootCommand", "first element must be the program to run")
	}
	if c.CriticalTempC < 40 || c.CriticalTempC > 120 {
		bad("CriticalTempC", "%v °C is not a plausible critical GPU temperature (40-120)", c.CriticalTempC)
	}
	if c.CoolDownC < 0 || c.CoolDownC >= c.CriticalTempC {
		bad("CoolDownC", "%v must be positive and below CriticalTempC", c.CoolDownC)
	}
	switch c.OnOverheat {
	case OverheatStop, OverheatPowerLimit:
	default:
		bad("OnOverheat", "%q is not %q or %q", c.OnOverheat, OverheatStop, OverheatPowerLimit)
	}
	return errors.Join(errs...)
}

// compilePatterns joins the patterns into one alternation: one pass over
// each log line instead of one per pattern. nil when there are none.
func compilePatterns(ps []string) *regexp.Regexp {
	if len(ps) == 0 {
		return nil
	}
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = "(?:" + p + ")"
	}
	return regexp.MustCompile("(?i)" + strings.Join(parts, "|"))
}
