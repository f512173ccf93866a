package gossip

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// startRawSerf starts a plain serf node holding key, outside Quarry's
// Node: what a member that stole or kept the gossip key can run.
func startRawSerf(t *testing.T, name, key string) *serf.Serf {
	t.Helper()
	raw, err := DecodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := memberlist.NewKeyring(nil, raw)
	if err != nil {
		t.Fatal(err)
	}
	cfg := (&Config{NodeName: name, BindAddr: takeIP(), BindPort: DefaultPort, Profile: ProfileCustom, Timings: testTimings(), Logger: testLogger(t)})
	cfg.setDefaults()
	sc := cfg.serfConfig(kr, nil, nil)
	s, err := serf.Create(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	return s
}

func readKeyringFile(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestAttackKeyringQueries: a member holding the gossip key sends serf's
// install-key, use-key and remove-key queries to put its own key in as
// primary and drop the real one. Every Quarry node undoes the change,
// reports it, and neither its held keyring nor its keyring file ever
// names the attacker's key.
func TestAttackKeyringQueries(t *testing.T) {
	keys := newTestKeys(t)
	dir := t.TempDir()
	var mu sync.Mutex
	var tampers []KeyringTamper
	nodes := make([]*testNode, 2)
	for i := range nodes {
		nodes[i] = startNode(t, nodeName("n", i), keys, func(c *Config) {
			c.KeyringFile = filepath.Join(dir, nodeName("keyring", i)+".json")
			c.KeyringCheck = 20 * time.Millisecond
			c.OnKeyringTamper = func(kt KeyringTamper) {
				mu.Lock()
				defer mu.Unlock()
				tampers = append(tampers, kt)
			}
		})
		if err := nodes[i].SetKeyring([]string{keys.gossip}); err != nil {
			t.Fatal(err)
		}
	}
	joinAll(t, nodes...)
	attacker := startRawSerf(t, "attacker", keys.gossip)
	if _, err := attacker.Join([]string{nodes[0].Addr().String()}, true); err != nil {
		t.Fatalf("attacker join: %v", err)
	}
	evil, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	km := attacker.KeyManager()
	for _, op := range []struct {
		name string
		f    func(string) (*serf.KeyResponse, error)
		key  string
	}{{"install", km.InstallKey, evil}, {"use", km.UseKey, evil}, {"remove", km.RemoveKey, keys.gossip}} {
		// Serf may report success: the change happens and is then undone.
		_, _ = op.f(op.key)
	}
	waitFor(t, 10*time.Second, "every node reports the keyring change as undone", func() bool {
		for _, n := range nodes {
			if n.Stats().KeyringRestored == 0 {
				return false
			}
		}
		return true
	})
	waitFor(t, 5*time.Second, "live keyrings back to the real key only", func() bool {
		for _, n := range nodes {
			if !slices.Equal(n.LocalKeys(), []string{keys.gossip}) {
				return false
			}
		}
		return true
	})
	for i, n := range nodes {
		if got := n.Keys(); !slices.Equal(got, []string{keys.gossip}) {
			t.Errorf("%s holds %v, want only the real key", n.Name(), got)
		}
		if got := readKeyringFile(t, filepath.Join(dir, nodeName("keyring", i)+".json")); !slices.Equal(got, []string{keys.gossip}) {
			t.Errorf("%s keyring file = %v, want only the real key", n.Name(), got)
		}
	}
	mu.Lock()
	for _, kt := range tampers {
		if !slices.Equal(kt.Restored, []string{KeyFingerprint(keys.gossip)}) {
			t.Errorf("tamper report restored %v", kt.Restored)
		}
		for _, f := range kt.Found {
			if f == evil || f == keys.gossip {
				t.Errorf("tamper report carries a key instead of its fingerprint")
			}
		}
	}
	mu.Unlock()
	// The cluster still talks on the real key and the attacker's key does
	// not get in.
	joinAll(t, nodes...)
	outsider := startRawSerf(t, "outsider", evil)
	if _, err := outsider.Join([]string{nodes[1].Addr().String()}, true); err == nil {
		t.Fatal("a node with the attacker's key joined")
	}
}

// A member's identity verifies only with the key that signed it and only
// for the name, address and tags it signed.
func TestMemberIdentitySignature(t *testing.T) {
	keys := newTestKeys(t)
	rigKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := startNode(t, "a", keys, nil)
	rig := startNode(t, "rig-1", keys, func(c *Config) { c.Identity = rigKey })
	joinAll(t, a, rig)
	if err := rig.SetTags(Tags{Role: RoleAgent, RigID: "rig-1", GRPC: "connected"}); err != nil {
		t.Fatal(err)
	}
	var seen Member
	waitFor(t, 5*time.Second, "the new tags reach a", func() bool {
		for _, m := range a.Members() {
			if m.Name == "rig-1" && m.Tags.GRPC == "connected" {
				seen = m
				return true
			}
		}
		return false
	})
	if err := VerifyMember(&rigKey.PublicKey, seen); err != nil {
		t.Fatalf("genuine member: %v", err)
	}
	tamper := func(f func(*Member)) Member {
		m := seen
		m.RawTags = cloneMap(seen.RawTags)
		f(&m)
		return m
	}
	for _, tt := range []struct {
		name string
		m    Member
		pub  *ecdsa.PublicKey
		want error
	}{
		{"other key", seen, &otherKey.PublicKey, ErrIdentityMismatch},
		{"renamed", tamper(func(m *Member) { m.Name = "rig-2" }), &rigKey.PublicKey, ErrIdentityMismatch},
		{"tag changed", tamper(func(m *Member) { m.RawTags[TagGRPC] = "down" }), &rigKey.PublicKey, ErrIdentityMismatch},
		{"unsigned", tamper(func(m *Member) { delete(m.RawTags, TagSig) }), &rigKey.PublicKey, ErrIdentityUnsigned},
		{"not base64", tamper(func(m *Member) { m.RawTags[TagSig] = "!!" }), &rigKey.PublicKey, ErrIdentityMismatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := VerifyMember(tt.pub, tt.m); !errors.Is(err, tt.want) {
				t.Fatalf("VerifyMember = %v, want %v", err, tt.want)
			}
		})
	}
	if err := VerifyMember(&rigKey.PublicKey, a.LocalMember()); !errors.Is(err, ErrIdentityUnsigned) {
		t.Fatalf("node without Identity: %v", err)
	}
}
