package server

import (
	"github.com/quarryfleet/quarry/controller/catalogue"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// setupCatalogue opens the miner catalogue, registers CatalogueService
// for admins and MinerDownloadService for rigs.
func (c *Controller) setupCatalogue() error {
	s, err := catalogue.Open(c.fleet, catalogue.Options{DataDir: c.cfg.DataDir, Logger: c.log})
	if err != nil {
		return err
	}
	c.catalogue = s
	c.RegisterService(&quarryv1.CatalogueService_ServiceDesc, &catalogue.CatalogueServer{S: s, Log: c.log}, catalogue.CatalogueRoles)
	quarryv1.RegisterMinerDownloadServiceServer(c.grpcSrv, &catalogue.DownloadServer{S: s, Log: c.log})
	return nil
}

// Catalogue is the miner catalogue.
func (c *Controller) Catalogue() *catalogue.Store { return c.catalogue }
