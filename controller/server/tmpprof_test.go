package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/controller/fleet/fleetbench"
)

func BenchmarkTmpOpen(b *testing.B) {
	dir := "/tmp/scale-fleet100k"
	if _, err := filepath.Glob(dir); err != nil {
		b.Fatal(err)
	}
	if err := fleetbench.Build(context.Background(), filepath.Join(dir, DBFile), 100000); err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Gossip.Enabled = false
	for b.Loop() {
		c := &Controller{cfg: cfg, log: quietLog(), version: "x", serveErr: make(chan error, 3)}
		c.parts = c.components()
		for _, p := range c.parts {
			s := time.Now()
			if p.open != nil {
				if err := p.open(); err != nil {
					b.Fatal(err)
				}
			}
			c.opened++
			b.Logf("%s %v", p.name, time.Since(s))
		}
		c.stop()
	}
}
