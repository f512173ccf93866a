package server

import (
	"github.com/quarryfleet/quarry/controller/figures"
	"github.com/quarryfleet/quarry/controller/miners"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// setupMiners opens the rigs' learned figures (fed every committed
// report; the switcher ranks with them) and the flight sheet and benchmark
// store, and registers MinerService.
func (c *Controller) setupMiners() error {
	figs, err := figures.Open(c.db, figures.Options{Alpha: c.cfg.Profit.Smoothing, Logger: c.log.With("component", "figures")})
	if err != nil {
		return err
	}
	c.figures = figs
	c.fleet.AddObserver(figs)
	s, err := miners.Open(c.fleet, miners.Options{Figures: figs, Logger: c.log})
	if err != nil {
		return err
	}
	c.miners = s
	c.RegisterService(&quarryv1.MinerService_ServiceDesc, &miners.Server{S: s, Log: c.log, Resolve: c.catalogue.ResolveYAML}, miners.Roles)
	return nil
}

// Miners is the flight sheet and benchmark store.
func (c *Controller) Miners() *miners.Store { return c.miners }

// closeMiners stops collecting benchmarks and writes the last live
// figures; call after the last report is observed and the switcher
// stopped, before the database closes.
func (c *Controller) closeMiners() {
	if c.miners != nil {
		if err := c.miners.Close(); err != nil {
			c.log.Error("close miners store", "err", err)
		}
		c.miners = nil
	}
	if c.figures != nil {
		if err := c.figures.Close(); err != nil {
			c.log.Error("write rig figures", "err", err)
		}
		c.figures = nil
	}
}
