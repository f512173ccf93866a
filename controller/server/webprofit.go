package server

import (
	"sort"
	"sync"

	"github.com/quarryfleet/quarry/controller/switcher"
	"github.com/quarryfleet/quarry/controller/web"
)

// switcherView shows the profit switcher's latest decisions and its switch
// history on the dashboard and in /metrics.
type switcherView struct {
	sw *switcher.Switcher

	mu   sync.Mutex
	tick *switcher.Tick
	by   map[string]web.Profit
}

func (v *switcherView) profits() map[string]web.Profit {
	t := v.sw.Last()
	v.mu.Lock()
	defer v.mu.Unlock()
	if t == nil {
		return nil
	}
	if t != v.tick {
		v.tick, v.by = t, make(map[string]web.Profit, len(t.Rigs))
		for i, r := range t.Rigs {
			if i >= len(t.Decisions) {
				break
			}
			d := t.Decisions[i]
			if d.Action == switcher.ActionNoData {
				continue
			}
			c := d.Target
			v.by[r.ID] = web.Profit{USDPerDay: c.Profit, RevenueUSDPerDay: c.Revenue, PowerCostUSDPerDay: c.Cost, Coin: c.Coin}
		}
	}
	return v.by
}

// RigProfit implements web.ProfitProvider.
func (v *switcherView) RigProfit(rigID string) (web.Profit, bool) {
	p, ok := v.profits()[rigID]
	return p, ok
}

// MarketMode implements web.MarketModer.
func (v *switcherView) MarketMode() string { return v.sw.MarketMode() }

// USDPerDay fits metrics.ProfitFunc.
func (v *switcherView) USDPerDay(rigID string) (float64, bool) {
	p, ok := v.RigProfit(rigID)
	return p.USDPerDay, ok
}

// RigSwitches implements web.SwitchProvider, newest first.
func (v *switcherView) RigSwitches(rigID string, limit int) []web.Switch {
	recs, err := v.sw.Switches(rigID, limit)
	if err != nil {
		return nil
	}
	out := make([]web.Switch, 0, len(recs))
	for _, r := range recs {
		reason := r.Reason
		if r.DryRun {
			reason += " (dry run: not sent)"
		}
		if r.Error != "" {
			reason += " — " + r.Error
		}
		out = append(out, web.Switch{Time: r.Time, From: r.From, To: r.To, Reason: reason})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out
}
