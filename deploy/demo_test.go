package deploy_test

import (
	"os"
	"testing"

	"github.com/quarryfleet/quarry/controller/server"
	"github.com/quarryfleet/quarry/controller/sim"
	"github.com/quarryfleet/quarry/controller/switcher"
	"github.com/quarryfleet/quarry/pkg/config"
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
	if _, err := switcher.New(cfg.Profit, switcher.Options{}); err != nil {
		t.Fatal(err)
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
