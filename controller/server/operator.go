package server

import (
	"os"
	"path/filepath"

	"github.com/quarryfleet/quarry/controller/cluster"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/snapshot"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// openOperator registers OperatorService: online snapshots of the
// database and their staged restore.
func (c *Controller) openOperator() error {
	path := filepath.Join(c.cfg.DataDir, DBFile)
	// A restore may be several times today's database, but not enough to
	// fill the disk by mistake.
	limit := int64(1 << 30)
	if fi, err := os.Stat(path); err == nil {
		limit = max(limit, 4*fi.Size())
	}
	c.RegisterService(&quarryv1.OperatorService_ServiceDesc, &snapshot.OperatorServer{
		DB: c.db, DBPath: path, Required: fleet.Buckets, MaxRestoreBytes: limit,
		// Bucket names as their owners (fleet, miners, billing) write them.
		Count:          map[string]string{"rigs": "rigs", "flight_sheets": "flight_sheets", "customers": "billing_customers"},
		RestoreRefused: c.restoreRefused(),
	}, snapshot.OperatorRoles, snapshot.OperatorAudit)
	if c.group != nil {
		c.RegisterService(&quarryv1.ClusterService_ServiceDesc, &cluster.ClusterServer{Node: c.group}, cluster.ClusterRoles, cluster.ClusterAudit)
	}
	return nil
}

// restoreRefused explains, on a group member, why a snapshot restore goes
// to a single controller instead.
func (c *Controller) restoreRefused() string {
	if c.group == nil {
		return ""
	}
	return "this controller is a member of a Raft group: restore the snapshot into a single controller (no cluster section), then start a new group from its data dir with cluster.bootstrap_expect 1"
}
