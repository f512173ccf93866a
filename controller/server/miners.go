package server

import (
	"github.com/quarryfleet/quarry/controller/miners"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// setupMiners opens the flight sheet and benchmark store and registers
// MinerService.
func (c *Controller) setupMiners() error {
	s, err := miners.Open(c.db, c.fleet, miners.Options{Logger: c.log})
	if err != nil {
		return err
	}
	c.miners = s
	c.RegisterService(&quarryv1.MinerService_ServiceDesc, &miners.MinerServer{S: s}, miners.MinerRoles, miners.MinerAudit)
	return nil
}

// Miners is the flight sheet and benchmark store; its Benchmarks are the
// profit engine's hashrate and power figures.
func (c *Controller) Miners() *miners.Store { return c.miners }

// closeMiners writes the last live figures; call before the database closes.
func (c *Controller) closeMiners() {
	if c.miners != nil {
		if err := c.miners.Close(); err != nil {
			c.log.Error("close miners store", "err", err)
		}
		c.miners = nil
	}
}
