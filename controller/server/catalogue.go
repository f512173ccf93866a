package server

import (
	"github.com/quarryfleet/quarry/controller/catalogue"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// setupCatalogue opens the miner catalogue, registers CatalogueService
// for admins and MinerDownloadService for rigs.
func (c *Controller) setupCatalogue() error {
	s, err := catalogue.Open(c.db, c.fleet, catalogue.Options{DataDir: c.cfg.DataDir, Logger: c.log})
	if err != nil {
		return err
	}
	c.catalogue = s
	c.RegisterService(&quarryv1.CatalogueService_ServiceDesc, &catalogue.CatalogueServer{S: s, Log: c.log, SheetsUsing: c.sheetsUsing}, catalogue.CatalogueRoles, catalogue.CatalogueAudit)
	quarryv1.RegisterMinerDownloadServiceServer(c.grpcSrv, &catalogue.DownloadServer{S: s, Log: c.log})
	return nil
}

// Catalogue is the miner catalogue.
func (c *Controller) Catalogue() *catalogue.Store { return c.catalogue }

// sheetsUsing names the stored flight sheets that run a catalogue version.
func (c *Controller) sheetsUsing(name, version string) ([]string, error) {
	if c.miners == nil {
		return nil, nil
	}
	recs, err := c.miners.Sheets()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range recs {
		if r.Miner != name {
			continue
		}
		full, err := c.miners.Sheet(r.Name)
		if err != nil {
			continue // deleted meanwhile
		}
		fs, err := flightsheet.Parse(full.Yaml)
		if err == nil && fs.Miner.FromCatalogue() && fs.Miner.Version == version {
			out = append(out, r.Name)
		}
	}
	return out, nil
}
