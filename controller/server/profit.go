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
// database, feeds it committed reports and registers ProfitService.
func (c *Controller) setupProfit() error {
	sw, err := switcher.New(c.cfg.Profit, switcher.Options{Fleet: c.fleet, DB: c.db, Logger: c.log.With("component", "profit"), Benchmarks: c.benchmarkFigures, Hold: c.billingHold})
	if err != nil {
		return err
	}
	c.profit = &profitRuntime{sw: sw}
	c.fleet.AddObserver(sw)
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

// benchmarkFigures hands the miners store's benchmarks to the switcher.
func (c *Controller) benchmarkFigures(rigID string) map[string]switcher.Figure {
	if c.miners == nil {
		return nil
	}
	bs := c.miners.Benchmarks(rigID)
	out := make(map[string]switcher.Figure, len(bs))
	for algo, b := range bs {
		out[algo] = switcher.Figure{Hashrate: b.HashrateHs, Power: b.PowerW, Source: b.Source, Samples: b.Samples}
	}
	return out
}

// billingHold is billing's past-due policy, which the switcher applies;
// billing opens before profit.
func (c *Controller) billingHold(rigID string, now time.Time) (hold, stopMining bool, reason string) {
	return c.billing.SwitchHold(rigID, now)
}
