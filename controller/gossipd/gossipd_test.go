package gossipd

import (
	"strings"
	"testing"
	"time"
)

func TestGossipConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"defaults", func(*Config) {}, ""},
		{"off ignores the rest", func(g *Config) { g.Enabled, g.Profile = false, "fast" }, ""},
		{"bind not an IP", func(g *Config) { g.BindAddr = "localhost" }, "gossip.bind_addr"},
		{"port out of range", func(g *Config) { g.BindPort = 70000 }, "gossip.bind_port"},
		{"advertise with port", func(g *Config) { g.Advertise = "10.0.0.2:8000" }, ""},
		{"advertise hostname", func(g *Config) { g.Advertise = "ctl.example:7946" }, "gossip.advertise"},
		{"advertise bad port", func(g *Config) { g.Advertise = "10.0.0.2:0" }, "gossip.advertise"},
		{"join without port", func(g *Config) { g.Join = []string{"10.0.0.3"} }, "gossip.join"},
		{"unknown profile", func(g *Config) { g.Profile = "fast" }, "gossip.profile"},
		{"event age too short", func(g *Config) { g.EventMaxAge = time.Millisecond }, "gossip.event_max_age"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
}
