package notify

import (
	"strconv"
	"strings"
	"time"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Rule names, as they appear in keys, messages and the configuration.
const (
	RuleOffline     = "offline"
	RuleGPUHot      = "gpu_hot"
	RuleGPULost     = "gpu_lost"
	RuleMinerDown   = "miner_down"
	RuleCrashLoop   = "crash_loop"
	RuleHashrateLow = "hashrate_low"
	RuleBillingDue  = "billing_past_due"
	RuleMarketStale = "market_stale"
)

// Severities.
const (
	Warning  = "warning"
	Critical = "critical"
)

// maxMessage bounds an alert's text; parts of it (miner errors) come from
// rigs.
const maxMessage = 512

// Alert is one condition a rule found: the same rule on the same subject
// of the same rig is the same alert, whatever its message says now.
type Alert struct {
	Key      string
	Rule     string
	RigID    string
	RigName  string
	Subject  string
	Severity string
	Message  string
}

// Key builds an alert's stable key.
func Key(rule, rigID, subject string) string { return rule + "|" + rigID + "|" + subject }

func newAlert(rule, rigID, rigName, subject, severity, msg string) Alert {
	return Alert{Key: Key(rule, rigID, subject), Rule: rule, RigID: rigID, RigName: rigName, Subject: subject, Severity: severity, Message: clean(msg, maxMessage)}
}

// clean drops control characters (a miner's error text goes into mail
// subjects and terminals) and bounds the length.
func clean(s string, limit int) string {
	if len(s) > limit {
		s = s[:limit]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\uFFFD' {
			if r == '\t' || r == '\n' || r == '\r' {
				return ' '
			}
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
}

// Expectations says what hashrate the controller expects of a rig on an
// algorithm; the figures learner fits through a small adapter.
type Expectations interface {
	ExpectedHashrate(rigID, algorithm string) (float64, bool)
}

// RigAlerts is every rig rule applied to one rig at now. offlineSince is
// the earliest time the rig counts as offline from (the notifier's start,
// so that rigs not yet reconnected after a controller restart do not all
// fire); a zero time counts from the rig's last report. exp may be nil.
func (r Rules) RigAlerts(rig *quarryv1.Rig, now, offlineSince time.Time, exp Expectations) []Alert {
	if rig.Revoked {
		return nil
	}
	var out []Alert
	add := func(rule, subject, sev, msg string) {
		out = append(out, newAlert(rule, rig.Id, rig.Name, subject, sev, msg))
	}
	if !rig.Online && r.Offline.Enabled {
		since := time.Unix(0, rig.LastSeenUnixNano)
		if offlineSince.After(since) {
			since = offlineSince
		}
		if now.Sub(since) >= r.Offline.After {
			add(RuleOffline, "rig", Warning, "offline")
		}
	}
	if !rig.Online {
		// What an offline rig last said is old news; its alerts stay
		// as they were until it is back (they neither fire nor resolve).
		return out
	}
	for _, g := range rig.Gpus {
		idx := strconv.Itoa(int(g.Index))
		switch {
		case g.Lost && r.GPULost.Enabled:
			add(RuleGPULost, "gpu"+idx, Critical, "GPU "+idx+" lost")
		case !g.Lost && r.GPUHot.Enabled && g.TemperatureC != nil && *g.TemperatureC >= r.GPUHot.TempC:
			add(RuleGPUHot, "gpu"+idx, Warning, "GPU "+idx+" at "+strconv.FormatFloat(*g.TemperatureC, 'f', 0, 64)+" °C")
		}
	}
	for _, m := range rig.Miners {
		switch {
		case (m.State == "crashed" || m.State == "api-unreachable") && r.MinerDown.Enabled:
			msg := m.Miner + " " + m.State
			if m.Error != "" {
				msg += ": " + m.Error
			}
			add(RuleMinerDown, m.Miner, Critical, msg)
		case m.HashrateKnown() && r.HashrateLow.Enabled && exp != nil:
			want, ok := exp.ExpectedHashrate(rig.Id, m.Algorithm)
			if ok && want > 0 && m.Hashrate < want*r.HashrateLow.Percent/100 {
				add(RuleHashrateLow, m.Miner+"/"+m.Algorithm, Warning, m.Miner+" "+m.Algorithm+" at "+
					strconv.FormatFloat(100*m.Hashrate/want, 'f', 0, 64)+"% of the expected hashrate")
			}
		}
	}
	if r.CrashLoop.Enabled {
		n := 0
		from := now.Add(-r.CrashLoop.Window).UnixNano()
		for _, e := range rig.Events {
			if e.Kind == "miner_exited" && e.TimeUnixNano >= from {
				n++
			}
		}
		if n >= r.CrashLoop.Crashes {
			add(RuleCrashLoop, "miner", Critical, "miner exited "+strconv.Itoa(n)+" times in "+r.CrashLoop.Window.String())
		}
	}
	return out
}

// keepWhileOffline reports whether an alert's condition cannot be judged
// while its rig is offline (everything but the offline rule itself).
func keepWhileOffline(rule string) bool {
	switch rule {
	case RuleGPUHot, RuleGPULost, RuleMinerDown, RuleHashrateLow, RuleCrashLoop:
		return true
	}
	return false
}

// PastDueCustomer is a hosting customer behind on payment.
type PastDueCustomer struct {
	ID    string
	Name  string
	Since time.Time
}

// Billing says which customers are past due; billing fits through an
// adapter.
type Billing interface {
	PastDue() ([]PastDueCustomer, error)
}

// Market says whether the market data profit switching uses is too old
// to switch on, and why.
type Market interface {
	MarketStale() (stale bool, reason string)
}

// BillingAlerts is the billing rule over the past-due customers.
func (r Rules) BillingAlerts(cs []PastDueCustomer) []Alert {
	if !r.BillingDue.Enabled {
		return nil
	}
	out := make([]Alert, 0, len(cs))
	for _, c := range cs {
		msg := "customer " + c.Name + " is past due"
		if !c.Since.IsZero() {
			msg += " since " + c.Since.UTC().Format(time.RFC3339)
		}
		out = append(out, newAlert(RuleBillingDue, "", "", c.ID, Warning, msg))
	}
	return out
}

// MarketAlerts is the market rule.
func (r Rules) MarketAlerts(stale bool, reason string) []Alert {
	if !r.MarketStale.Enabled || !stale {
		return nil
	}
	return []Alert{newAlert(RuleMarketStale, "", "", "market", Warning, "market data stale: "+reason)}
}
