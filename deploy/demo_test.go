package deploy_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/controller/figures"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/miners"
	"github.com/quarryfleet/quarry/controller/server"
	"github.com/quarryfleet/quarry/controller/sim"
	"github.com/quarryfleet/quarry/controller/switcher"
	"github.com/quarryfleet/quarry/pkg/config"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

// The demo configuration that `make run` starts the controller with must
// load, switch on the offline demo market, and describe the hardware of the
// simulator's built-in profile, or its rigs would have no figures for the
// options they do not mine yet.
func TestDemoControllerConfig(t *testing.T) {
	b, err := os.ReadFile("demo/controller.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.DefaultConfig()
	if err := config.DecodeYAML(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Profit.Options) < 3 || len(cfg.Profit.Market.Sources) != 1 || cfg.Profit.Market.Sources[0].Kind != "demo" {
		t.Fatalf("demo profit config: %d options, sources %v; want several options on the demo market", len(cfg.Profit.Options), cfg.Profit.Market.Sources)
	}
	// Seeded as `make run` seeds it: into a real database, with its
	// flight sheets stored and validated like any other.
	db := testsupport.OpenStore(t, filepath.Join(t.TempDir(), "quarry.db"), fleet.Buckets...)
	f, err := fleet.Open(db, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	figs, err := figures.Open(db, figures.Options{Alpha: 0.2, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = figs.Close() })
	sheets, err := miners.Open(db, f, miners.Options{Figures: figs, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sheets.Close() })
	sw, err := switcher.New(cfg.Profit, switcher.Options{Fleet: f, DB: db, Figures: figs, Sheets: sheets})
	if err != nil {
		t.Fatal(err)
	}
	seeded, err := sw.SettingsAt(1)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(seeded.Settings.Options); got != len(cfg.Profit.Options) {
		t.Errorf("seeded %d options, the file has %d", got, len(cfg.Profit.Options))
	}
	p, err := sim.DefaultProfile()
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range p.Rigs {
		if _, ok := cfg.Profit.Profiles[rt.Fingerprint()]; !ok {
			t.Errorf("no profit profile for the simulator's %s rigs (fingerprint %q)", rt.Name, rt.Fingerprint())
		}
	}
	if site := cfg.Profit.Sites[cfg.Profit.DefaultSite]; len(site.Rules) == 0 {
		t.Errorf("demo site %q has no time-of-use tariff", cfg.Profit.DefaultSite)
	}
}
