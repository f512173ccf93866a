package agentd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/quarryfleet/quarry/controller/gossipd"
	"github.com/quarryfleet/quarry/controller/server"
	"github.com/quarryfleet/quarry/pkg/gossip"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// twoCards samples two fixed GPUs.
type twoCards struct{}

func (twoCards) Sample(context.Context) (*quarryv1.Report, error) {
	t0, t1 := 61.0, 64.0
	return &quarryv1.Report{Gpus: []*quarryv1.GPUStats{
		{Index: 0, Name: "RTX 3080", TemperatureC: &t0},
		{Index: 1, Name: "RTX 3080", TemperatureC: &t1},
	}}, nil
}

func (twoCards) Inventory(context.Context) *quarryv1.Inventory {
	return &quarryv1.Inventory{Gpus: []*quarryv1.GPUStats{{Index: 0, Name: "RTX 3080"}, {Index: 1, Name: "RTX 3080"}}}
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

type gossipHarness struct {
	ctrl    *server.Controller
	dataDir string
	client  quarryv1.GossipServiceClient
	cfg     Config
	pauses  *callLog
	stop    func()
}

type callLog struct {
	mu sync.Mutex
	n  map[quarryv1.CommandKind]int
}

func (c *callLog) count(k quarryv1.CommandKind) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

// startGossipPair runs an in-process controller with gossip on a free
// loopback port and an enrolled agent that joins it.
func startGossipPair(t *testing.T) (*gossipHarness, *Agent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	scfg := server.DefaultConfig()
	scfg.DataDir, scfg.GRPCAddr, scfg.HTTPAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	scfg.ShutdownGrace = 2 * time.Second
	scfg.Gossip.BindPort, scfg.Gossip.Profile = 0, string(gossip.ProfileTuned)
	ctrl, err := server.New(scfg, "test", testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctrlCtx, stopCtrl := context.WithCancel(ctx)
	ctrlDone := make(chan error, 1)
	go func() { ctrlDone <- ctrl.Serve(ctrlCtx) }()
	t.Cleanup(func() { stopCtrl(); <-ctrlDone })

	tok, _, err := ctrl.Fleet().CreateToken(ctrl.CA().Hash(), time.Hour, 1, "gossip-rig", "test")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := os.ReadFile(filepath.Join(scfg.DataDir, server.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ctrl.CA().Cert)
	conn, err := grpc.NewClient(ctrl.GRPCAddr(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})),
		grpc.WithPerRPCCredentials(bearer(strings.TrimSpace(string(admin)))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	cfg := DefaultConfig()
	cfg.DataDir, cfg.Controller, cfg.Token, cfg.TokenFile = t.TempDir(), ctrl.GRPCAddr(), tok, ""
	cfg.ReportInterval = 100 * time.Millisecond
	cfg.Gossip.BindAddr, cfg.Gossip.BindPort, cfg.Gossip.Profile = "127.0.0.1", 0, string(gossip.ProfileTuned)
	h := &gossipHarness{ctrl: ctrl, dataDir: scfg.DataDir, client: quarryv1.NewGossipServiceClient(conn), cfg: cfg, pauses: &callLog{n: map[quarryv1.CommandKind]int{}}}
	return h, h.runAgent(t, ctx)
}

func (h *gossipHarness) runAgent(t *testing.T, ctx context.Context) *Agent {
	t.Helper()
	a, err := New(ctx, h.cfg, "test", twoCards{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []quarryv1.CommandKind{quarryv1.CommandKind_COMMAND_KIND_PAUSE, quarryv1.CommandKind_COMMAND_KIND_RESUME} {
		a.Handle(k, func(context.Context, []byte) ([]byte, error) {
			h.pauses.mu.Lock()
			defer h.pauses.mu.Unlock()
			h.pauses.n[k]++
			return []byte("miner stopped"), nil
		})
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	stopped := false
	h.stop = func() {
		if !stopped {
			stopped = true
			stop()
			<-done
		}
	}
	t.Cleanup(h.stop)
	return a
}

func (h *gossipHarness) member(t *testing.T, name string) *quarryv1.GossipMember {
	t.Helper()
	resp, err := h.client.ListMembers(context.Background(), &quarryv1.ListMembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range resp.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

func TestAgentGossipTagsEventsAndQueries(t *testing.T) {
	h, a := startGossipPair(t)
	rig := a.RigID()

	var m *quarryv1.GossipMember
	eventually(t, "the rig alive in gossip with its link connected", func() bool {
		m = h.member(t, rig)
		return m != nil && m.Status == "alive" && m.Tags["grpc"] == "connected"
	})
	want := map[string]string{"role": "agent", "rig": rig, "ver": "test", "gpus": "2", "gpu_model": "RTX 3080", "grpc": "connected"}
	for k, v := range want {
		if m.Tags[k] != v {
			t.Errorf("tag %s = %q, want %q (all: %v)", k, m.Tags[k], v, m.Tags)
		}
	}

	// Queries answer from the latest sample.
	eventually(t, "a sample taken", func() bool {
		h := a.gossip
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.latest != nil
	})
	stream, err := h.client.FleetQuery(context.Background(), &quarryv1.FleetQueryRequest{Name: "temps", TimeoutMs: 3000})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var temps struct {
		GPUs []struct {
			I uint32
			C float64
		}
	}
	if a := msg.GetAnswer(); a == nil || a.From != rig || json.Unmarshal(a.Payload, &temps) != nil || len(temps.GPUs) != 2 || temps.GPUs[1].C != 64 {
		t.Fatalf("temps answer %v", msg)
	}

	// A signed pause runs the rig's pause command and is reported.
	if _, err := h.client.FleetEvent(context.Background(), &quarryv1.FleetEventRequest{Kind: "pause"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pause handler ran", func() bool { return h.pauses.count(quarryv1.CommandKind_COMMAND_KIND_PAUSE) == 1 })
	eventually(t, "the pause reported to the controller", func() bool {
		r, err := h.ctrl.Fleet().Rig(rig)
		if err != nil {
			return false
		}
		return slices.ContainsFunc(r.Events, func(e *quarryv1.Event) bool {
			return e.Kind == "fleet_pause" && strings.Contains(e.Message, "miner stopped") && e.Fields["by"] == "local-admin"
		})
	})

	// Someone holding the gossip key but not the controller's signing key
	// cannot pause the rig.
	keys, err := os.ReadFile(filepath.Join(h.dataDir, gossipd.KeyringFile))
	if err != nil {
		t.Fatal(err)
	}
	var ring []string
	if err := json.Unmarshal(keys, &ring); err != nil {
		t.Fatal(err)
	}
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	intruder, err := gossip.New(gossip.Config{
		NodeName: "intruder", BindAddr: "127.0.0.1", BindPort: -1, Keys: ring, SigningKey: forger,
		Join: a.id.Enrollment.GossipJoin, Profile: gossip.ProfileTuned, Logger: testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := intruder.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		dead, cancel := context.WithCancel(context.Background())
		cancel()
		_ = intruder.Close(dead)
	}()
	<-intruder.Joined()
	eventually(t, "the intruder sees the rig", func() bool {
		return slices.ContainsFunc(intruder.Members(), func(m gossip.Member) bool { return m.Name == rig && m.Status == "alive" })
	})
	if _, err := intruder.Broadcast(context.Background(), "pause", "", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the forged event refused", func() bool { return a.gossip.node.Stats().BadSignature > 0 })
	if n := h.pauses.count(quarryv1.CommandKind_COMMAND_KIND_PAUSE); n != 1 {
		t.Fatalf("pause ran %d times, want once", n)
	}
}

// A rig that was down during a key rotation cannot gossip with its old
// keys; it takes the controller's keyring from the Welcome and comes back.
func TestAgentCatchesUpOnMissedKeyRotation(t *testing.T) {
	h, a := startGossipPair(t)
	rig := a.RigID()
	eventually(t, "rig alive", func() bool { m := h.member(t, rig); return m != nil && m.Status == "alive" })
	h.stop()
	eventually(t, "rig left", func() bool { m := h.member(t, rig); return m != nil && m.Status == "left" })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := h.client.RotateKeys(ctx, &quarryv1.RotateKeysRequest{Step: "rotate"})
	if err != nil {
		t.Fatal(err)
	}
	h.cfg.Token = "" // enrolled already
	h.runAgent(t, ctx)
	eventually(t, "rig alive again on the new key", func() bool { m := h.member(t, rig); return m != nil && m.Status == "alive" })
	var onDisk []string
	b, err := os.ReadFile(filepath.Join(h.cfg.DataDir, GossipKeyringFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &onDisk); err != nil || gossip.KeyFingerprint(onDisk[0]) != resp.KeyringFingerprints[0] {
		t.Fatalf("rig keyring %v (%v), controller primary %s", onDisk, err, resp.KeyringFingerprints[0])
	}
}

func TestKeyringDiverged(t *testing.T) {
	tests := []struct {
		name          string
		local, remote []string
		want          bool
	}{
		{"same", []string{"a"}, []string{"a"}, false},
		{"remote installing a new key", []string{"a"}, []string{"a", "b"}, false},
		{"remote switched, we hold both", []string{"a", "b"}, []string{"b", "a"}, false},
		{"missed the whole rotation", []string{"a"}, []string{"b"}, true},
		{"missed use and remove", []string{"a", "b"}, []string{"b"}, true},
		{"remote sent nothing", []string{"a"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyringDiverged(tt.local, tt.remote); got != tt.want {
				t.Fatalf("keyringDiverged(%v, %v) = %v", tt.local, tt.remote, got)
			}
		})
	}
}

func TestGossipConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*GossipConfig)
		want   string
	}{
		{"defaults", func(*GossipConfig) {}, ""},
		{"bind hostname", func(g *GossipConfig) { g.BindAddr = "rig.local" }, "gossip.bind_addr"},
		{"negative port", func(g *GossipConfig) { g.BindPort = -1 }, "gossip.bind_port"},
		{"advertise ip", func(g *GossipConfig) { g.Advertise = "203.0.113.7" }, ""},
		{"advertise junk", func(g *GossipConfig) { g.Advertise = "::nope" }, "gossip.advertise"},
		{"join without port", func(g *GossipConfig) { g.Join = []string{"10.0.0.2"} }, "gossip.join"},
		{"profile", func(g *GossipConfig) { g.Profile = "wan" }, "gossip.profile"},
		{"event age", func(g *GossipConfig) { g.EventMaxAge = 0 }, "gossip.event_max_age"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg.Gossip)
			err := cfg.Validate()
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestGPUSummaryAndLoopback(t *testing.T) {
	n, model := gpuSummary([]*quarryv1.GPUStats{{Name: "RX 6800"}, {Name: "RTX 3080"}, {Name: "RTX 3080"}})
	if n != 3 || model != "RTX 3080" {
		t.Fatalf("gpuSummary = %d %q", n, model)
	}
	if n, model := gpuSummary(nil); n != 0 || model != "" {
		t.Fatalf("no GPUs: %d %q", n, model)
	}
	for addrs, want := range map[string]bool{"127.0.0.1:7946": true, "127.0.0.1:7946,localhost:1": true, "127.0.0.1:7946,10.0.0.2:7946": false, "": false} {
		var list []string
		if addrs != "" {
			list = strings.Split(addrs, ",")
		}
		if got := allLoopback(list); got != want {
			t.Errorf("allLoopback(%q) = %v", addrs, got)
		}
	}
}

// A controller that takes over starts a gossip node that knows nobody; the
// address in its settings brings the rig to it.
func TestAgentJoinsTheServingControllersGossip(t *testing.T) {
	h, a := startGossipPair(t)
	rig := a.RigID()
	eventually(t, "rig alive", func() bool { m := h.member(t, rig); return m != nil && m.Status == "alive" })
	b, err := os.ReadFile(filepath.Join(h.dataDir, gossipd.KeyringFile))
	if err != nil {
		t.Fatal(err)
	}
	var ring []string
	if err := json.Unmarshal(b, &ring); err != nil {
		t.Fatal(err)
	}
	fresh, err := gossip.New(gossip.Config{NodeName: "new-leader", BindAddr: "127.0.0.1", BindPort: -1, Keys: ring, Profile: gossip.ProfileTuned, Logger: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		dead, cancel := context.WithCancel(context.Background())
		cancel()
		_ = fresh.Close(dead)
	}()
	a.gossip.settings(&quarryv1.AgentSettings{GossipJoin: []string{fresh.Addr().String()}})
	eventually(t, "the new node sees the rig", func() bool {
		return slices.ContainsFunc(fresh.Members(), func(m gossip.Member) bool { return m.Name == rig && m.Status == "alive" })
	})
	// Unusable addresses are refused before any dial.
	a.gossip.settings(&quarryv1.AgentSettings{GossipJoin: []string{"no-port"}})
	select {
	case addrs := <-a.gossip.join:
		t.Fatalf("queued a join to %v", addrs)
	default:
	}
}

func TestCheckJoin(t *testing.T) {
	nine := make([]string, maxSettingsJoin+1)
	for i := range nine {
		nine[i] = "10.0.0.1:7946"
	}
	for _, tt := range []struct {
		addrs []string
		ok    bool
	}{
		{[]string{"10.0.0.1:7946"}, true},
		{[]string{"ctl-2.example:7946", "[::1]:7946"}, true},
		{nine[:maxSettingsJoin], true},
		{nine, false},
		{[]string{"10.0.0.1"}, false},
		{[]string{":7946"}, false},
		{[]string{"10.0.0.1:0"}, false},
		{[]string{"10.0.0.1:65536"}, false},
		{[]string{"10.0.0.1:gossip"}, false},
		{[]string{"10.0.0.1:7946", "bad"}, false},
		{[]string{strings.Repeat("a", 254) + ":7946"}, false},
	} {
		if err := checkJoin(tt.addrs); (err == nil) != tt.ok {
			t.Errorf("checkJoin(%.60q) = %v, want ok %v", tt.addrs, err, tt.ok)
		}
	}
}

func TestNotAlive(t *testing.T) {
	ms := []gossip.Member{
		{Name: "ctl-1", Addr: netip.MustParseAddrPort("127.0.0.1:7946"), Status: "alive"},
		{Name: "ctl-0", Addr: netip.MustParseAddrPort("127.0.0.1:7000"), Status: "failed"},
	}
	got := notAlive(ms, []string{"127.0.0.1:7946", "127.0.0.1:7000", "127.0.0.1:7001", "ctl-1.example:7946"})
	if want := []string{"127.0.0.1:7000", "127.0.0.1:7001", "ctl-1.example:7946"}; !slices.Equal(got, want) {
		t.Fatalf("notAlive = %v, want %v", got, want)
	}
}
