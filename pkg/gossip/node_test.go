package gossip

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

func TestConfigValidate(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"ok", Config{NodeName: "a", Keys: []string{key}}, ""},
		{"no name", Config{Keys: []string{key}}, "NodeName"},
		{"no key refused", Config{NodeName: "a"}, "unencrypted gossip is refused"},
		{"key not base64", Config{NodeName: "a", Keys: []string{"!!"}}, "not base64"},
		{"key wrong size", Config{NodeName: "a", Keys: []string{"AAAA"}}, "Keys[0]"},
		{"bad bind", Config{NodeName: "a", Keys: []string{key}, BindAddr: "host"}, "BindAddr"},
		{"bad port", Config{NodeName: "a", Keys: []string{key}, BindPort: 70000}, "BindPort"},
		{"bad profile", Config{NodeName: "a", Keys: []string{key}, Profile: "wan"}, "Profile"},
		{"custom without timings", Config{NodeName: "a", Keys: []string{key}, Profile: ProfileCustom}, "Timings"},
		{"bad role", Config{NodeName: "a", Keys: []string{key}, Tags: Tags{Role: "miner"}}, "role"},
		{"extra collides", Config{NodeName: "a", Keys: []string{key}, Tags: Tags{Extra: map[string]string{"rig": "x"}}}, "collides"},
		{"tags too big", Config{NodeName: "a", Keys: []string{key}, Tags: Tags{GPUModel: string(make([]byte, 600))}}, "serf allows"},
		{"short signing key", Config{NodeName: "a", Keys: []string{key}, SigningKey: make([]byte, 10)}, "SigningKey"},
		{"short trusted key", Config{NodeName: "a", Keys: []string{key}, TrustedKeys: []ed25519.PublicKey{make([]byte, 3)}}, "TrustedKeys[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want mention of %q", err, tt.wantErr)
			}
		})
	}
}

func TestTagsRoundTrip(t *testing.T) {
	in := Tags{Role: RoleAgent, RigID: "rig-7", Version: "1.2.3", GPUCount: 6, GPUModel: "RTX 3080", GRPC: "ready", Extra: map[string]string{"site": "north"}}
	got := ParseTags(in.Map())
	if got.Role != in.Role || got.RigID != in.RigID || got.Version != in.Version || got.GPUCount != 6 ||
		got.GPUModel != in.GPUModel || got.GRPC != in.GRPC || got.Extra["site"] != "north" {
		t.Fatalf("round trip = %+v, want %+v", got, in)
	}
	// A foreign agent's junk gpu count must not be lost or fail the parse.
	if got := ParseTags(map[string]string{"gpus": "many"}); got.GPUCount != 0 || got.Extra["gpus"] != "many" {
		t.Fatalf("junk gpus parsed as %+v", got)
	}
}

func TestJoinLeaveFailRejoin(t *testing.T) {
	keys := newTestKeys(t)
	a := startNode(t, "a", keys, nil)
	b := startNode(t, "b", keys, nil)
	c := startNode(t, "c", keys, nil)
	joinAll(t, a, b, c)
	waitFor(t, 5*time.Second, "a gets join events for b and c", func() bool {
		return a.rec.saw(MemberJoin, "b") && a.rec.saw(MemberJoin, "c")
	})
	for _, m := range a.Members() {
		if m.Name == "b" && (m.Tags.Role != RoleAgent || m.Tags.GPUCount != 2 || m.Tags.GPUModel != "RTX 3070") {
			t.Fatalf("a sees b's tags as %+v", m.Tags)
		}
	}

	// Graceful close is a leave, never a failure.
	closeNode(t, c.Node)
	waitFor(t, 5*time.Second, "a gets leave for c", func() bool { return a.rec.saw(MemberLeave, "c") })
	if a.rec.saw(MemberFailed, "c") {
		t.Fatal("graceful close of c reported as failed")
	}

	// A crash (no leave) is detected as a failure.
	bAddr := b.Addr()
	kill(b.Node)
	waitFor(t, 5*time.Second, "a gets failed for b", func() bool { return a.rec.saw(MemberFailed, "b") })
	if got := memberStatus(a.Node, "b"); got != "failed" {
		t.Fatalf("a sees b as %s, want failed", got)
	}

	// The rig comes back on its old address and rejoins.
	b2 := startNode(t, "b", keys, func(c *Config) { c.BindAddr = bAddr.Addr().String() })
	if _, err := b2.Join(context.Background(), a.Addr().String()); err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	waitFor(t, 5*time.Second, "a sees b alive again", func() bool {
		return memberStatus(a.Node, "b") == "alive" && a.rec.count(MemberJoin, "b") >= 2
	})
}

func TestBackgroundJoinRetries(t *testing.T) {
	keys := newTestKeys(t)
	seedIP := takeIP()
	b := startNode(t, "b", keys, func(c *Config) {
		c.Join = []string{net.JoinHostPort(seedIP, strconv.Itoa(DefaultPort))}
		c.JoinBackoff = Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	})
	select {
	case <-b.Joined():
		t.Fatal("joined before the seed exists")
	case <-time.After(150 * time.Millisecond):
	}
	a := startNode(t, "a", keys, func(c *Config) { c.BindAddr = seedIP })
	select {
	case <-b.Joined():
	case <-time.After(5 * time.Second):
		t.Fatal("background join never succeeded after the seed came up")
	}
	waitFor(t, 5*time.Second, "a sees b", func() bool { return memberStatus(a.Node, "b") == "alive" })
}

func TestJoinHonoursContext(t *testing.T) {
	keys := newTestKeys(t)
	a := startNode(t, "a", keys, func(c *Config) { c.JoinBackoff = Backoff{Initial: 10 * time.Millisecond} })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := a.Join(ctx, net.JoinHostPort(takeIP(), "7946"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Join to nobody = %v, want deadline exceeded", err)
	}
}

func TestWrongKeyCannotJoin(t *testing.T) {
	keys := newTestKeys(t)
	a := startNode(t, "a", keys, nil)
	other := newTestKeys(t)
	b := startNode(t, "intruder", other, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := b.Join(ctx, a.Addr().String()); err == nil {
		t.Fatal("node with another key joined")
	}

	// A plaintext serf node (what an unconfigured stock agent would be)
	// cannot join either.
	sc := serf.DefaultConfig()
	sc.NodeName = "plain"
	sc.MemberlistConfig = memberlist.DefaultLANConfig()
	sc.MemberlistConfig.BindAddr = takeIP()
	sc.MemberlistConfig.BindPort = DefaultPort
	sc.MemberlistConfig.TCPTimeout = 200 * time.Millisecond
	sc.LogOutput = newDiscard()
	sc.MemberlistConfig.LogOutput = newDiscard()
	plain, err := serf.Create(sc)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Shutdown()
	if _, err := plain.Join([]string{a.Addr().String()}, true); err == nil {
		t.Fatal("plaintext node joined an encrypted cluster")
	}
	time.Sleep(200 * time.Millisecond) // give any leaked state a chance to show
	if got := a.NumAlive(); got != 1 {
		t.Fatalf("a has %d alive members, want only itself: %+v", got, a.Members())
	}
}

func TestSetTagsPropagates(t *testing.T) {
	keys := newTestKeys(t)
	a := startNode(t, "a", keys, nil)
	b := startNode(t, "b", keys, nil)
	joinAll(t, a, b)
	if err := b.SetTags(Tags{Role: RoleAgent, RigID: "b", GPUCount: 8, GRPC: "down"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a sees b's new tags", func() bool {
		for _, m := range a.Members() {
			if m.Name == "b" && m.Tags.GRPC == "down" && m.Tags.GPUCount == 8 {
				return a.rec.saw(MemberUpdate, "b")
			}
		}
		return false
	})
	if err := b.SetTags(Tags{Role: "miner"}); err == nil {
		t.Fatal("SetTags accepted an unknown role")
	}
}

// Rotation is each member taking the new keyring from its owner (over
// gRPC in Quarry) with SetKeyring: the cluster keeps talking, the new
// keyring is persisted, and the old key no longer gets in.
func TestKeyRotationAcrossCluster(t *testing.T) {
	keys := newTestKeys(t)
	dir := t.TempDir()
	nodes := make([]*testNode, 3)
	for i := range nodes {
		nodes[i] = startNode(t, nodeName("n", i), keys, func(c *Config) {
			c.KeyringFile = filepath.Join(dir, nodeName("keyring", i)+".json")
		})
	}
	joinAll(t, nodes...)
	ctx := context.Background()
	newKey, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.SetKeyring([]string{newKey}); err != nil {
			t.Fatalf("%s: %v", n.Name(), err)
		}
	}
	if err := nodes[0].SetKeyring([]string{"not-base64!"}); err == nil {
		t.Fatal("SetKeyring accepted an invalid key")
	}
	res, err := nodes[2].ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Keys) != 1 || res.Keys[newKey] != 3 || res.PrimaryKeys[newKey] != 3 {
		t.Fatalf("after rotation keys=%v primary=%v, want only the new key on 3 nodes", res.Keys, res.PrimaryKeys)
	}
	for _, n := range nodes {
		if got := n.LocalKeys(); len(got) != 1 || got[0] != newKey {
			t.Fatalf("%s local keys = %v", n.Name(), got)
		}
		if got := n.Keys(); len(got) != 1 || got[0] != newKey {
			t.Fatalf("%s wanted keys = %v", n.Name(), got)
		}
	}
	// The rotated key was persisted and wins over Config.Keys on restart.
	restarted, err := New(Config{NodeName: "x", Keys: []string{keys.gossip}, KeyringFile: filepath.Join(dir, "keyring-00.json")})
	if err != nil {
		t.Fatal(err)
	}
	if got := restarted.LocalKeys(); got[0] != newKey {
		t.Fatalf("restart from keyring file uses %v, want the new key", got)
	}

	// Old key holders are now locked out; new key holders get in.
	oldOnly := startNode(t, "old", keys, nil)
	tctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := oldOnly.Join(tctx, nodes[0].Addr().String()); err == nil {
		t.Fatal("node with the removed key joined")
	}
	fresh := startNode(t, "fresh", testKeys{gossip: newKey, pub: keys.pub}, nil)
	if _, err := fresh.Join(ctx, nodes[0].Addr().String()); err != nil {
		t.Fatalf("node with the new key: %v", err)
	}
}

func TestKeyringFileCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, _ := GenerateKey()
	if _, err := New(Config{NodeName: "a", Keys: []string{key}, KeyringFile: path}); err == nil {
		t.Fatal("corrupt keyring file accepted")
	}
}

func TestCloseWithDoneContextSkipsLeave(t *testing.T) {
	keys := newTestKeys(t)
	a := startNode(t, "a", keys, nil)
	b := startNode(t, "b", keys, nil)
	joinAll(t, a, b)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close(cancelled) = %v, want context.Canceled", err)
	}
	// No leave was sent, so the peer sees a failure.
	waitFor(t, 5*time.Second, "a sees b failed", func() bool { return a.rec.saw(MemberFailed, "b") })
	if err := b.Close(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("second Close = %v, want the first result", err)
	}
}

func TestMethodsBeforeStart(t *testing.T) {
	keys := newTestKeys(t)
	n, err := New(Config{NodeName: "a", Keys: []string{keys.gossip}, SigningKey: keys.priv})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	checks := map[string]error{}
	_, checks["Join"] = n.Join(ctx, "127.0.0.1:7946")
	checks["SetTags"] = n.SetTags(Tags{})
	_, checks["Broadcast"] = n.Broadcast(ctx, "pause", "", nil)
	_, checks["Query"] = n.Query(ctx, "temps", "", time.Second)
	_, checks["ListKeys"] = n.ListKeys(ctx)
	for name, err := range checks {
		if !errors.Is(err, ErrNotStarted) {
			t.Errorf("%s before Start = %v, want ErrNotStarted", name, err)
		}
	}
	if m := n.Members(); m != nil || n.NumAlive() != 0 || n.LocalMember().Name != "a" {
		t.Errorf("member views before Start: %v %d %v", m, n.NumAlive(), n.LocalMember())
	}
	if err := n.Close(ctx); err != nil {
		t.Errorf("Close before Start: %v", err)
	}
}

// A member reported failed that is alive again within FailureGrace is
// never handed to handlers as failed (the flap after a partition heals).
func TestFailureGraceDropsRefutedFailures(t *testing.T) {
	keys := newTestKeys(t)
	a := startNode(t, "a", keys, func(c *Config) { c.FailureGrace = 5 * time.Second })
	b := startNode(t, "b", keys, nil)
	joinAll(t, a, b)
	bAddr := b.Addr()
	kill(b.Node)
	waitFor(t, 5*time.Second, "a's serf marks b failed", func() bool { return memberStatus(a.Node, "b") == "failed" })
	b2 := startNode(t, "b", keys, func(c *Config) { c.BindAddr = bAddr.Addr().String() })
	if _, err := b2.Join(context.Background(), a.Addr().String()); err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	waitFor(t, 15*time.Second, "the held failure is checked and dropped", func() bool { return a.Stats().FailedRefuted >= 1 })
	if a.rec.saw(MemberFailed, "b") {
		t.Fatal("handlers were told b failed although it was back within the grace")
	}

	// Without a return, the failure is reported once the grace has passed.
	c := startNode(t, "c", keys, func(c *Config) { c.FailureGrace = 100 * time.Millisecond })
	d := startNode(t, "d", keys, nil)
	joinAll(t, c, d)
	kill(d.Node)
	waitFor(t, 5*time.Second, "c reports d failed", func() bool { return c.rec.saw(MemberFailed, "d") })
}
