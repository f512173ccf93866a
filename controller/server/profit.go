package server

import (
	"context"
	"sync"
	"time"

	"github.com/quarryfleet/quarry/controller/switcher"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// profitRuntime is the profit switcher and the goroutine Serve starts
// for it.
type profitRuntime struct {
	sw     *switcher.Switcher
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// setupProfit opens the market cache and the switcher on the controller's
// database, ranking with the rigs' learned figures, its options naming
// flight sheets in the miners store, and registers ProfitService.
func (c *Controller) setupProfit() error {
	sw, err := switcher.New(c.cfg.Profit, switcher.Options{Fleet: c.fleet, DB: c.db, Logger: c.log.With("component", "profit"), Figures: c.figures, Hold: c.billingHold,
		Sheets: c.miners, Resolve: c.catalogue.ResolveYAML})
	if err != nil {
		return err
	}
	c.profit = &profitRuntime{sw: sw}
	c.RegisterService(&quarryv1.ProfitService_ServiceDesc, &switcher.ProfitServer{S: sw}, switcher.ProfitRoles, switcher.ProfitAudit)
	return nil
}

// startProfit runs the market refresh and the switching loop.
func (c *Controller) startProfit() {
	p := c.profit
	if p == nil || p.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = p.sw.Run(ctx)
	}()
}

// stopProfit ends the loop and waits for it; call before the database
// closes.
func (c *Controller) stopProfit() {
	p := c.profit
	if p == nil || p.cancel == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
	p.cancel = nil
}

// billingHold is billing's past-due policy, which the switcher applies;
// billing opens before profit.
func (c *Controller) billingHold(rigID string, now time.Time) (hold, stopMining bool, reason string) {
	return c.billing.SwitchHold(rigID, now)
}
