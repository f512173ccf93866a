package server

import (
	"context"
	"sync"

	"github.com/quarryfleet/quarry/controller/billing"
	"github.com/quarryfleet/quarry/controller/notify"
	"github.com/quarryfleet/quarry/controller/web"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// notifyRuntime is the notifier and the goroutine Serve starts for it.
type notifyRuntime struct {
	n      *notify.Notifier
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// openNotify opens the alert notifier over the fleet, the learned
// figures, billing's standing and the market's health, and registers
// NotifyService.
func (c *Controller) openNotify() error {
	o := notify.Options{DB: c.db, Fleet: c.fleet, Log: c.log.With("component", "notify")}
	if c.figures != nil {
		o.Expectations = expectations{c}
	}
	if c.billing != nil && c.billing.Service() != nil {
		o.Billing = pastDue{c.billing.Service()}
	}
	if c.profit != nil && c.profit.sw.Engine() != nil {
		o.Market = marketHealth{c}
	}
	n, err := notify.Open(c.cfg.Notify, o)
	if err != nil {
		return err
	}
	c.notify = &notifyRuntime{n: n}
	c.RegisterService(&quarryv1.NotifyService_ServiceDesc, &notify.NotifyServer{N: n}, notify.NotifyRoles, notify.NotifyAudit)
	return nil
}

func (c *Controller) startNotify() {
	p := c.notify
	if p == nil || p.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.n.Run(ctx)
	}()
}

// stopNotify ends the tick and the senders (a message being sent stays
// pending) before the database closes.
func (c *Controller) stopNotify() {
	p := c.notify
	if p == nil || p.cancel == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
	p.cancel = nil
}

// Notifier is the alert notifier.
func (c *Controller) Notifier() *notify.Notifier { return c.notify.n }

// expectations is the hashrate profit switching expects of a rig: the
// learned figure on that algorithm.
type expectations struct{ c *Controller }

func (e expectations) ExpectedHashrate(rigID, algorithm string) (float64, bool) {
	f, ok := e.c.figures.Figures(rigID)[algorithm]
	return f.HashrateHs, ok && f.HashrateHs > 0
}

// pastDue lists billing's past-due customers.
type pastDue struct{ svc *billing.Service }

func (p pastDue) PastDue() ([]notify.PastDueCustomer, error) {
	cs, err := p.svc.ListCustomers()
	if err != nil {
		return nil, err
	}
	var out []notify.PastDueCustomer
	for _, cu := range cs {
		if cu.Status == billing.StatusPastDue {
			out = append(out, notify.PastDueCustomer{ID: cu.ID, Name: cu.Name, Since: cu.PastDueSince})
		}
	}
	return out, nil
}

// marketHealth is stale when profit switching has paused on old market
// data.
type marketHealth struct{ c *Controller }

func (m marketHealth) MarketStale() (bool, string) {
	h := m.c.profit.sw.Market().Health()
	return !h.OK, h.Reason
}

// alertsView shows the notifier's firing alerts on the dashboard.
type alertsView struct{ n *notify.Notifier }

func (v alertsView) FiringAlerts() []web.Alert {
	recs := v.n.Firing()
	out := make([]web.Alert, 0, len(recs))
	for _, r := range recs {
		a := web.Alert{Rig: r.RigID, RigName: r.RigName, Severity: r.Severity, Message: r.Message, Rule: r.Rule, SinceMs: r.Since.UnixMilli()}
		for _, d := range notify.Latest(r.Deliveries) {
			a.Deliveries = append(a.Deliveries, web.AlertDelivery{Channel: d.Channel, Kind: d.Msg.Kind, State: d.State, Attempts: d.Attempts, Error: d.LastError})
		}
		out = append(out, a)
	}
	return out
}
