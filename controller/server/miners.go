package server

import (
	"github.com/quarryfleet/quarry/controller/figures"
	"github.com/quarryfleet/quarry/controller/miners"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// openFigures opens the rigs' learned figures, fed every committed
// report; the miners store, the switcher, billing and the dashboard read
// them.
func (c *Controller) openFigures() error {
	figs, err := figures.Open(c.db, figures.Options{Alpha: c.cfg.Profit.Smoothing, Logger: c.log.With("component", "figures")})
	if err != nil {
		return err
	}
	c.figures = figs
	c.fleet.AddObserver(figs)
	return nil
}

// closeFigures writes the last live figures; after the last report is
// observed, before the database closes.
func (c *Controller) closeFigures() {
	if c.figures != nil {
		if err := c.figures.Close(); err != nil {
			c.log.Error("write rig figures", "err", err)
		}
		c.figures = nil
	}
}

// setupMiners opens the flight sheet and benchmark store, which stores
// benchmark results as learned figures, and registers MinerService.
func (c *Controller) setupMiners() error {
	s, err := miners.Open(c.db, c.fleet, miners.Options{Figures: c.figures, Logger: c.log})
	if err != nil {
		return err
	}
	c.miners = s
	c.RegisterService(&quarryv1.MinerService_ServiceDesc, &miners.MinerServer{S: s, Resolve: c.catalogue.ResolveYAML}, miners.MinerRoles, miners.MinerAudit)
	// Overclock profiles are named by flight sheets and sent like them.
	return c.setupOverclock()
}

// Miners is the flight sheet and benchmark store.
func (c *Controller) Miners() *miners.Store { return c.miners }

// closeMiners stops collecting benchmarks; after the switcher stopped.
func (c *Controller) closeMiners() {
	if c.miners != nil {
		if err := c.miners.Close(); err != nil {
			c.log.Error("close miners store", "err", err)
		}
		c.miners = nil
	}
}
