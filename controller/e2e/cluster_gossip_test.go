package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// startGossipMember is startMember with the members' gossip nodes named
// apart (all three run on this one host, whose name is the default) and
// on the tuned profile.
func startGossipMember(t *testing.T, m *groupMember, expect int, join string) {
	t.Helper()
	base := groupConfig(t, m, expect, join)
	cfg := strings.Replace(base, "gossip: {", "gossip: {node_name: controller-"+m.id+", profile: tuned, ", 1)
	if cfg == base {
		t.Fatalf("no gossip section in the member's configuration:\n%s", base)
	}
	path := filepath.Join(m.dir, "controller.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	m.proc = start(t, m.dir, "quarry-controller", "-grpc-addr", m.grpc, "-http-addr", m.http, "-report-interval", "1s", "-config", path)
	eventually(t, m.id+" up", 60*time.Second, func() bool {
		select {
		case <-m.done:
			t.Fatalf("%s exited at start:\n%s", m.id, m.output())
		default:
		}
		resp, err := http.Get("http://" + m.http + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// groupGossipMembers is `quarryctl gossip members` as the serving member
// answers it.
func groupGossipMembers(t *testing.T, ms []*groupMember) (*quarryv1.ListMembersResponse, error) {
	t.Helper()
	out, err := groupCtl(t, ms, "gossip", "members", "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	resp := &quarryv1.ListMembersResponse{}
	if err := protojson.Unmarshal([]byte(out), resp); err != nil {
		return nil, fmt.Errorf("gossip members json: %v\n%s", err, out)
	}
	return resp, nil
}

// TestControllerGroupGossip: a rig gossips with the leader; after the
// leader's SIGKILL the new leader's fresh gossip node knows nobody, and
// the rig, told the new node's address in its Welcome, joins it: the new
// leader lists the rig alive and a fleet pause over gossip reaches it.
func TestControllerGroupGossip(t *testing.T) {
	root := t.TempDir()
	ms := groupMembers(t, root, "")
	alone := startController(t, ms[0].dir, ms[0].grpc, ms[0].http, "-gossip-port", portOf(net.JoinHostPort(gossipAddr(t, "127.0.0.1"))))
	token := alone.newToken(t, "--rig-name", "grig")
	alone.stop()
	// The members share the CA, the gossip keyring and the key that signs
	// fleet events.
	shareGroupSecrets(t, ms)
	startGossipMember(t, ms[0], 1, "")
	eventually(t, "the first member leads", 30*time.Second, ms[0].ready)
	startGossipMember(t, ms[1], 0, ms[0].serf)
	startGossipMember(t, ms[2], 0, ms[0].serf)
	waitGroupAlive(t, ms)

	addrs := ms[0].grpc + "," + ms[1].grpc + "," + ms[2].grpc
	rig := &gossipRig{dir: filepath.Join(root, "rig"), name: "grig"}
	if err := os.MkdirAll(rig.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	rig.ip, rig.port = gossipAddr(t, "127.0.31.2")
	rig.proc = startAgent(t, rig.dir, addrs, token, rig.flags("tuned")...)
	testsupport.Poll(t, "the rig online", 60*time.Second, func() (bool, string) {
		rigs, err := groupRigs(t, ms)
		if err != nil {
			return false, err.Error()
		}
		rig.id = rigs[rig.name].ID
		return rigs[rig.name].Online, fmt.Sprint(rigs)
	})
	// rigAlive waits until the serving member's gossip node lists the rig
	// alive, and itself as the local member.
	rigAlive := func(what, local string, timeout time.Duration) {
		t.Helper()
		testsupport.Poll(t, what, timeout, func() (bool, string) {
			resp, err := groupGossipMembers(t, ms)
			if err != nil {
				return false, err.Error()
			}
			if resp.Local != local {
				return false, "local member " + resp.Local
			}
			for _, m := range resp.Members {
				if m.Name == rig.id {
					return m.Status == "alive" && m.Verified, fmt.Sprint(resp.Members)
				}
			}
			return false, fmt.Sprint(resp.Members)
		})
	}
	rigAlive("the rig alive in the first leader's gossip", "controller-"+ms[0].id, 60*time.Second)

	killed := time.Now()
	if err := ms[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-ms[0].done
	leader := groupLeader(t, ms[1:])
	t.Logf("leader killed → %s serving in %v", leader.id, time.Since(killed).Round(time.Millisecond))
	rigAlive("the rig alive in the new leader's gossip", "controller-"+leader.id, 90*time.Second)
	t.Logf("leader killed → the rig alive in %s's gossip in %v", leader.id, time.Since(killed).Round(time.Millisecond))

	out, err := groupCtl(t, ms, "fleet", "pause", "--selector", "name="+rig.id)
	if err != nil || !strings.Contains(out, "1 alive agents selected: "+rig.id) {
		t.Fatalf("fleet pause: %v\n%s", err, out)
	}
	eventually(t, "the rig acted on the new leader's pause", 60*time.Second, func() bool {
		return actedOn(rig.proc.output(), "pause")
	})
}
