package agentd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/agent/minerfetch"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
)

// CatalogueStateDir, in the data dir, holds partial miner downloads and
// what each catalogue install holds.
const CatalogueStateDir = "catalogue"

// newInstaller returns the catalogue installer, which downloads with the
// rig's certificate; nil for an agent without one (insecure load tests).
func newInstaller(a *Agent, log *slog.Logger) *minerfetch.Installer {
	if a.id == nil || a.cfg.Insecure {
		return nil
	}
	// Downloads go to whichever controller the link uses, so they follow
	// its failover.
	conn := link.NewRedialer(a.ctrls, func(addr string) (*grpc.ClientConn, error) {
		serverName := a.cfg.ServerName
		if serverName == "" {
			serverName, _, _ = net.SplitHostPort(addr)
		}
		return grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(a.id.TLSConfig(serverName))))
	})
	in := &minerfetch.Installer{
		MinersDir: a.cfg.MinersDir, StateDir: filepath.Join(a.cfg.DataDir, CatalogueStateDir),
		Conn: conn, Log: log.With("part", "minerfetch"),
	}
	a.installed = in.Installed
	return in
}

func (m *Miners) closeInstaller() {
	if m.fetch == nil {
		return
	}
	if c, ok := m.fetch.Conn.(io.Closer); ok {
		c.Close()
	}
}

// installCatalogue makes sure a catalogue sheet's miner is unpacked and
// points the sheet at its program; the usual path and sha256 checks
// follow.
func (m *Miners) installCatalogue(ctx context.Context, sheet *flightsheet.FlightSheet) error {
	if m.fetch == nil {
		return errors.New("catalogue miners are downloaded with the rig's certificate, and this agent has none")
	}
	keep := func(dir string) bool {
		cur, _ := m.active()
		return cur != nil && cur.Miner.Archive != nil && minerfetch.DirName(cur.Miner.Name, cur.Miner.Version) == dir
	}
	path, fresh, err := m.fetch.Install(ctx, sheet.Miner, keep)
	if err != nil {
		return err
	}
	if fresh {
		m.event("miner_installed", fmt.Sprintf("installed %s %s from the controller's catalogue", sheet.Miner.Name, sheet.Miner.Version),
			map[string]string{"miner": sheet.Miner.Name, "version": sheet.Miner.Version, "sha256": sheet.Miner.Archive.SHA256})
	}
	sheet.Miner.Path = path
	return nil
}

// catalogueForm is the sheet as the controller sent it: a catalogue
// sheet's path is the rig's own business and is found again on resume.
func catalogueForm(sheet *flightsheet.FlightSheet) *flightsheet.FlightSheet {
	if sheet.Miner.Archive == nil {
		return sheet
	}
	c := *sheet
	c.Miner.Path = ""
	return &c
}
