package e2e

import (
	"encoding/json"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/pkg/gossip"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// insider is a plain serf node on loopback holding a gossip key: what a
// member that kept or stole the key can run. It records the user events
// it receives.
type insider struct {
	*serf.Serf
	mu     sync.Mutex
	events []string
	// answer, when set before queries arrive, answers every Quarry query.
	answer []byte
}

func (in *insider) sawEvents() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.events)
}

func startInsider(t *testing.T, name, ip, key string, tags map[string]string) *insider {
	t.Helper()
	raw, err := gossip.DecodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := memberlist.NewKeyring(nil, raw)
	if err != nil {
		t.Fatal(err)
	}
	_, port := gossipAddr(t, ip)
	p, _ := strconv.Atoi(port)
	events := make(chan serf.Event, 256)
	sc := serf.DefaultConfig()
	sc.Init()
	sc.NodeName = name
	sc.Tags = tags
	sc.EventCh = events
	sc.Logger = log.New(io.Discard, "", 0)
	sc.MemberlistConfig = memberlist.DefaultLANConfig()
	sc.MemberlistConfig.Name = name
	sc.MemberlistConfig.BindAddr = ip
	sc.MemberlistConfig.BindPort = p
	sc.MemberlistConfig.Keyring = kr
	sc.MemberlistConfig.Logger = sc.Logger
	s, err := serf.Create(sc)
	if err != nil {
		t.Fatal(err)
	}
	in := &insider{Serf: s}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case e := <-events:
				switch e := e.(type) {
				case serf.UserEvent:
					in.mu.Lock()
					in.events = append(in.events, e.Name)
					in.mu.Unlock()
				case *serf.Query:
					in.mu.Lock()
					a := in.answer
					in.mu.Unlock()
					if a != nil && strings.HasPrefix(e.Name, "quarry-query:") {
						_ = e.Respond(a)
					}
				}
			case <-s.ShutdownCh():
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = s.Shutdown()
		<-done
	})
	return in
}

// controllerKeyring reads the controller's stored gossip keyring.
func controllerKeyring(t *testing.T, f *gossipFleet) []string {
	t.Helper()
	return readKeys(t, filepath.Join(f.ctrl.dir, "quarry-data", "gossip-keyring.json"))
}

func readKeys(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil || len(keys) == 0 {
		t.Fatalf("keyring %s: %v %s", path, err, b)
	}
	return keys
}

// controllerGossipAddr is the controller's own gossip address.
func controllerGossipAddr(t *testing.T, f *gossipFleet) string {
	t.Helper()
	out, err := f.ctrl.ctl(t, "gossip", "members", "-o", "json")
	if err != nil {
		t.Fatalf("gossip members: %v\n%s", err, out)
	}
	var ml struct {
		Members []struct{ Name, Addr string }
		Local   string
	}
	if err := json.Unmarshal([]byte(out), &ml); err != nil {
		t.Fatal(err)
	}
	for _, m := range ml.Members {
		if m.Name == ml.Local {
			return m.Addr
		}
	}
	t.Fatalf("controller not among the members:\n%s", out)
	return ""
}

// TestAttackGossipKeyringTakeover: a member holding the gossip key uses
// serf's own key commands (install-key, use-key, remove-key queries) to
// make its key primary and drop the real one. The controller and every
// agent undo the change and report it; the controller's stored keyring
// is untouched, and a rig enrolling afterwards is handed only the
// controller's key.
func TestAttackGossipKeyringTakeover(t *testing.T) {
	f := startGossipFleet(t, 2, "tuned", 21)
	real := controllerKeyring(t, f)
	attacker := startInsider(t, "attacker", "127.0.21.100", real[0], map[string]string{"role": "agent"})
	if _, err := attacker.Join([]string{controllerGossipAddr(t, f)}, true); err != nil {
		t.Fatalf("attacker join: %v", err)
	}
	evil, err := gossip.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	km := attacker.KeyManager()
	_, _ = km.InstallKey(evil)
	_, _ = km.UseKey(evil)
	_, _ = km.RemoveKey(real[0])

	eventually(t, "the controller audits the undone keyring change", 30*time.Second, func() bool {
		out, _ := f.ctrl.ctl(t, "audit", "-o", "json")
		return strings.Contains(out, "gossip.keyring_tamper")
	})
	for _, r := range f.rigs {
		eventually(t, r.name+" undoes the keyring change", 30*time.Second, func() bool {
			return strings.Contains(r.proc.output(), "undid a gossip keyring change made by another member")
		})
	}
	if got := controllerKeyring(t, f); !slices.Equal(got, real) {
		t.Fatalf("controller keyring file changed to %d keys (attacker's key in it: %v)", len(got), slices.Contains(got, evil))
	}
	for _, r := range f.rigs {
		p := filepath.Join(r.dir, "agent-data", "gossip-keyring.json")
		if _, err := os.Stat(p); err == nil && slices.Contains(readKeys(t, p), evil) {
			t.Fatalf("%s stored the attacker's key", r.name)
		}
	}

	// Every member still speaks the real key and only it: a fresh node
	// with the real key joins and lists the keyrings.
	observer := startInsider(t, "observer", "127.0.21.101", real[0], nil)
	if _, err := observer.Join([]string{controllerGossipAddr(t, f)}, true); err != nil {
		t.Fatalf("a node with the controller's key cannot join after the attack: %v", err)
	}
	eventually(t, "every member holds only the controller's key", 30*time.Second, func() bool {
		res, err := observer.KeyManager().ListKeys()
		if err != nil || res == nil {
			return false
		}
		// The attacker's own node took its own queries and no longer
		// speaks the real key; the controller, both rigs and the observer
		// answer.
		return res.NumResp >= 4 && len(res.Keys) == 1 && res.Keys[real[0]] == res.NumResp && res.PrimaryKeys[real[0]] == res.NumResp
	})
	outsider := startInsider(t, "outsider", "127.0.21.102", evil, nil)
	if _, err := outsider.Join([]string{controllerGossipAddr(t, f)}, true); err == nil {
		t.Fatal("a node with the attacker's key joined")
	}

	// A rig enrolling now is handed the controller's key only.
	dir := filepath.Join(f.ctrl.dir, "late")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ip, port := gossipAddr(t, "127.0.21.50")
	late := startAgent(t, dir, f.ctrl.grpc, f.ctrl.newToken(t, "--rig-name", "late"), "-gossip-bind", ip, "-gossip-port", port, "-gossip-profile", "tuned")
	eventually(t, "late rig alive in gossip", time.Minute, func() bool { return f.status(t, "late") == "alive" })
	b, err := os.ReadFile(filepath.Join(dir, "agent-data", "pki", "enrollment.pb"))
	if err != nil {
		t.Fatal(err)
	}
	var enr quarryv1.EnrollResponse
	if err := proto.Unmarshal(b, &enr); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(enr.GossipKeys, real) {
		t.Fatalf("late rig was handed %d keys (attacker's among them: %v)", len(enr.GossipKeys), slices.Contains(enr.GossipKeys, evil))
	}
	late.stop()
}

// TestAttackRevokedRigKeepsGossiping: a revoked rig (and anyone holding
// the key it had) tries to stay in the cluster. Revocation removes it
// from gossip, and rotation hands the new key only to rigs that are not
// revoked, over mTLS: afterwards the revoked side cannot join, receives
// no fleet event and does not act on one, while the other rig goes on.
func TestAttackRevokedRigKeepsGossiping(t *testing.T) {
	f := startGossipFleet(t, 2, "tuned", 22)
	kept, revoked := f.rigs[0], f.rigs[1]
	old := controllerKeyring(t, f)
	// The revoked rig's key, in a node the test can watch.
	spy := startInsider(t, "spy", "127.0.22.100", old[0], nil)
	if _, err := spy.Join([]string{controllerGossipAddr(t, f)}, true); err != nil {
		t.Fatalf("spy join: %v", err)
	}

	if out, err := f.ctrl.ctl(t, "rig", "revoke", revoked.id); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	out, err := f.ctrl.ctl(t, "gossip", "keys", "rotate")
	if err != nil || !strings.Contains(out, "handed to 1 of 1 connected rigs") {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	now := controllerKeyring(t, f)
	if len(now) != 1 || now[0] == old[0] {
		t.Fatalf("controller keyring after rotation: %d keys, old kept: %v", len(now), slices.Contains(now, old[0]))
	}
	eventually(t, "the kept rig took the new key", 30*time.Second, func() bool {
		p := filepath.Join(kept.dir, "agent-data", "gossip-keyring.json")
		if _, err := os.Stat(p); err != nil {
			return false
		}
		return slices.Equal(readKeys(t, p), now)
	})
	if p := filepath.Join(revoked.dir, "agent-data", "gossip-keyring.json"); fileHas(p, now[0]) {
		t.Fatal("the revoked rig was handed the new key")
	}
	eventually(t, "the revoked rig is out of gossip", 30*time.Second, func() bool {
		return f.status(t, revoked.name) != "alive"
	})
	if got := f.status(t, kept.name); got != "alive" {
		t.Fatalf("kept rig gossip status %q after rotation", got)
	}

	before := len(spy.sawEvents())
	if out, err := f.ctrl.ctl(t, "fleet", "pause"); err != nil {
		t.Fatalf("fleet pause: %v\n%s", err, out)
	}
	// Gossip delivers a fleet event by broadcast, and to a rig the
	// broadcast missed (its retransmissions went to members failing just
	// then) by a later push/pull state exchange, which carries recent
	// events: allow several push/pull rounds.
	eventually(t, "the kept rig acted on the pause", 90*time.Second, func() bool { return actedOn(kept.proc.output(), "pause") })
	if actedOn(revoked.proc.output(), "pause") {
		t.Fatal("the revoked rig acted on a fleet event sent after the rotation")
	}
	if got := spy.sawEvents(); len(got) != before {
		t.Fatalf("the old key still reads gossip: %v", got[before:])
	}
	// Sending: a node with the old key cannot get in any more.
	late := startInsider(t, "late-spy", "127.0.22.101", old[0], nil)
	if _, err := late.Join([]string{controllerGossipAddr(t, f)}, true); err == nil {
		t.Fatal("a node with the pre-rotation key joined")
	}
}

func fileHas(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(b), s)
}

// TestAttackGossipImpostor: a node holding the gossip key but not the
// rig's certificate key joins under the id of a rig that is offline, with
// the rig's tags, and answers fleet queries as that rig. The controller
// does not show the rig alive (its gossip status is "unverified", and
// gossip members says so), and the answer is ignored, not attributed.
func TestAttackGossipImpostor(t *testing.T) {
	f := startGossipFleet(t, 2, "tuned", 23)
	honest, victim := f.rigs[0], f.rigs[1]
	victim.proc.stop()
	eventually(t, "victim rig left", 30*time.Second, func() bool { return f.status(t, victim.name) == "left" })

	key := controllerKeyring(t, f)[0]
	imp := startInsider(t, victim.id, "127.0.23.100", key, map[string]string{"role": "agent", "rig": victim.id, "ver": "dev", "grpc": "connected"})
	imp.mu.Lock()
	imp.answer = append([]byte{0}, `{"version":"forged","rig":"`+victim.id+`"}`...)
	imp.mu.Unlock()
	if _, err := imp.Join([]string{controllerGossipAddr(t, f)}, true); err != nil {
		t.Fatalf("impostor join: %v", err)
	}
	eventually(t, "the controller marks the impostor unverified", 30*time.Second, func() bool {
		return f.status(t, victim.name) == "unverified"
	})
	out, err := f.ctrl.ctl(t, "gossip", "members")
	if err != nil || !strings.Contains(out, "alive (unverified)") {
		t.Fatalf("gossip members does not flag the impostor: %v\n%s", err, out)
	}
	if out, _ := f.ctrl.ctl(t, "rigs", "list"); strings.Contains(out, "offline (gossip: alive)") {
		t.Fatalf("rigs list shows the offline rig alive in gossip:\n%s", out)
	}

	out, err = f.ctrl.ctl(t, "fleet", "query", "version", "--timeout", "3s")
	if err != nil {
		t.Fatalf("fleet query: %v\n%s", err, out)
	}
	if strings.Contains(out, "forged") || strings.Contains(out, victim.id+" ("+victim.name+")\t{") {
		t.Fatalf("the impostor's answer was attributed to the rig:\n%s", out)
	}
	if !strings.Contains(out, "ignored unverified answers") || !strings.Contains(out, `"rig":"`+honest.id+`"`) {
		t.Fatalf("query output does not report the ignored answer or lost the honest one:\n%s", out)
	}
	if g := f.status(t, honest.name); g != "alive" {
		t.Fatalf("honest rig gossip status %q", g)
	}
}
