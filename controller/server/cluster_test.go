package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/quarryfleet/quarry/controller/gossipd"
	"github.com/quarryfleet/quarry/pkg/gossip"
	"github.com/quarryfleet/quarry/pkg/pki"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
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

// runMember runs a one-member group in this process until the returned
// stop; it serves once it leads.
func runMember(t *testing.T, dir string) (cfg Config, stop func()) {
	t.Helper()
	cfg = DefaultConfig()
	cfg.DataDir = dir
	cfg.GRPCAddr, cfg.HTTPAddr = freeLoopback(t), freeLoopback(t)
	cfg.ShutdownGrace = 2 * time.Second
	cfg.Gossip.BindPort = 0
	cfg.Gossip.Profile = string(gossip.ProfileTuned)
	cfg.Cluster = ClusterConfig{NodeID: "ctl-1", RaftAddr: freeLoopback(t), SerfAddr: freeLoopback(t), BootstrapExpect: 1}
	cfg.clusterFast = true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunCluster(ctx, cfg, "test", quietLog()) }()
	eventually(t, "the member leads and serves", func() bool {
		resp, err := http.Get("http://" + cfg.HTTPAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("member: %v", err)
		}
	}
	t.Cleanup(stop)
	return cfg, stop
}

// memberPorts: the members of every group test bind in this one process,
// so no port may be handed out twice.
var memberPorts = testsupport.NewPorts()

func freeLoopback(t *testing.T) string {
	t.Helper()
	return memberPorts.Addr(t, "127.0.0.1")
}

// TestGroupKeepsRotatedGossipKey: a key rotation on a group's leader is
// kept in the group's state, so the member that leads next hands rigs the
// rotated key even when its own keyring file still holds the old one.
func TestGroupKeepsRotatedGossipKey(t *testing.T) {
	dir := t.TempDir()
	cfg, stop := runMember(t, dir)
	keyringPath := filepath.Join(dir, gossipd.KeyringFile)
	oldFile, err := os.ReadFile(keyringPath)
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(dir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(filepath.Join(dir, PKIDir, "ca.crt"), filepath.Join(dir, PKIDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	conn, err := grpc.NewClient(cfg.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})),
		grpc.WithPerRPCCredentials(bearerCreds(strings.TrimSpace(string(token)))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := quarryv1.NewGossipServiceClient(conn).RotateKeys(ctx(t), &quarryv1.RotateKeysRequest{Step: "rotate"})
	if err != nil {
		t.Fatal(err)
	}
	rotated := resp.KeyringFingerprints[0]
	stop()

	// The next leader's copy of the file is the one from before.
	if err := os.WriteFile(keyringPath, oldFile, 0o600); err != nil {
		t.Fatal(err)
	}
	runMember(t, dir)
	var keys []string
	b, err := os.ReadFile(keyringPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &keys); err != nil || len(keys) == 0 {
		t.Fatalf("keyring file after the restart: %s (%v)", b, err)
	}
	if got := gossip.KeyFingerprint(keys[0]); got != rotated {
		t.Fatalf("the new leader uses key %s, want the rotated %s", got, rotated)
	}
}
