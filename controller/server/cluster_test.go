package server

import (
	"strings"
	"testing"
)

func TestClusterConfigNamesBadSettings(t *testing.T) {
	cases := []struct {
		name string
		cc   ClusterConfig
		want string // "" for valid
	}{
		{"alone", ClusterConfig{RaftMultiplier: 2}, ""},
		{"first member", ClusterConfig{RaftAddr: "127.0.0.1:7300", SerfAddr: "127.0.0.1:7301", BootstrapExpect: 3}, ""},
		{"joining member", ClusterConfig{RaftAddr: "127.0.0.1:7300", SerfAddr: "127.0.0.1:7301", Join: []string{"10.0.0.1:7301"}}, ""},
		{"pool without raft", ClusterConfig{SerfAddr: "127.0.0.1:7301", BootstrapExpect: 3}, "raft_addr is required"},
		{"bad raft address", ClusterConfig{RaftAddr: "7300", SerfAddr: "127.0.0.1:7301", BootstrapExpect: 3}, `cluster.raft_addr: "7300" is not host:port`},
		{"no serf address", ClusterConfig{RaftAddr: "127.0.0.1:7300", BootstrapExpect: 3}, `cluster.serf_addr: "" is not host:port`},
		{"nothing to join", ClusterConfig{RaftAddr: "127.0.0.1:7300", SerfAddr: "127.0.0.1:7301"}, "needs join addresses"},
		{"negative expect", ClusterConfig{RaftAddr: "127.0.0.1:7300", SerfAddr: "127.0.0.1:7301", BootstrapExpect: -1}, "cluster.bootstrap_expect: -1"},
		{"multiplier", ClusterConfig{RaftAddr: "127.0.0.1:7300", SerfAddr: "127.0.0.1:7301", BootstrapExpect: 1, RaftMultiplier: 50}, "cluster.raft_multiplier: 50"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Cluster = c.cc
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid settings refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error naming %q", err, c.want)
			}
		})
	}
}
