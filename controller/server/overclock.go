package server

import (
	"github.com/quarryfleet/quarry/controller/overclock"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// setupOverclock opens the stored overclock profiles and registers
// OverclockService, which checks profiles against the cards rigs report
// before sending them.
func (c *Controller) setupOverclock() error {
	s, err := overclock.Open(c.db)
	if err != nil {
		return err
	}
	c.RegisterService(&quarryv1.OverclockService_ServiceDesc, &overclock.Server{S: s, Fleet: c.fleet}, overclock.Roles, overclock.Audit)
	return nil
}
