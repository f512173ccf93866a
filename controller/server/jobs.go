package server

import (
	"github.com/quarryfleet/quarry/controller/jobs"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// setupJobs opens the build job manager and registers JobService.
func (c *Controller) setupJobs() error {
	m, err := jobs.Open(c.db, c.fleet, jobs.Options{Config: c.cfg.Jobs, DataDir: c.cfg.DataDir, Logger: c.log})
	if err != nil {
		return err
	}
	c.jobs = m
	c.RegisterService(&quarryv1.JobService_ServiceDesc, &jobs.JobServer{M: m}, jobs.JobRoles, jobs.JobAudit)
	return nil
}

// closeJobs cancels controller jobs and stops following rig jobs; rig jobs
// are followed again on the next start.
func (c *Controller) closeJobs() {
	if c.jobs != nil {
		c.jobs.Close()
	}
}
