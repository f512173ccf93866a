package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/testsupport"
)

// gossipAddr finds a port free for TCP and UDP on ip (any 127.x address
// works on Linux loopback, so each agent gets an address of its own).
func gossipAddr(t *testing.T, ip string) (string, string) {
	t.Helper()
	return ip, localPorts.Port(t, ip)
}

// gossipRig is an enrolled agent with its own gossip address.
type gossipRig struct {
	dir, name, id, ip, port string
	proc                    *proc
}

func (r *gossipRig) flags(profile string) []string {
	return []string{"-gossip-bind", r.ip, "-gossip-port", r.port, "-gossip-profile", profile}
}

type gossipFleet struct {
	ctrl *controller
	rigs []*gossipRig
	// ipBase keeps each test's loopback addresses apart.
	ipBase int
}

// startGossipFleet starts a controller with gossip on a free loopback
// port and n agents, each gossiping on its own 127.0.<base>.<i> address,
// and waits until every rig is alive in gossip.
func startGossipFleet(t *testing.T, n int, profile string, ipBase int) *gossipFleet {
	t.Helper()
	dir := t.TempDir()
	_, gport := gossipAddr(t, "127.0.0.1")
	ctrl := startController(t, dir, freePort(t), freePort(t), "-gossip-port", gport, "-gossip-profile", profile)
	f := &gossipFleet{ctrl: ctrl, ipBase: ipBase}
	for i := range n {
		r := &gossipRig{dir: filepath.Join(dir, fmt.Sprintf("rig%d", i)), name: fmt.Sprintf("grig%d", i)}
		if err := os.MkdirAll(r.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		r.ip, r.port = gossipAddr(t, fmt.Sprintf("127.0.%d.%d", ipBase, i+2))
		tok := ctrl.newToken(t, "--rig-name", r.name)
		r.proc = startAgent(t, r.dir, ctrl.grpc, tok, r.flags(profile)...)
		f.rigs = append(f.rigs, r)
	}
	eventually(t, "every rig alive in gossip", time.Minute, func() bool {
		rigs := f.gossipRigs(t)
		for _, r := range f.rigs {
			g, ok := rigs[r.name]
			if !ok || g.GossipStatus != "alive" {
				return false
			}
			r.id = g.ID
		}
		return true
	})
	return f
}

// actedOn reports whether an agent's log shows it ran a fleet event.
func actedOn(log, kind string) bool {
	for line := range strings.Lines(log) {
		if strings.Contains(line, `msg="fleet event acted on"`) && strings.Contains(line, "kind="+kind+" ") && strings.Contains(line, "result=") {
			return true
		}
	}
	return false
}

type gossipRigJSON struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Online       bool   `json:"online"`
	GossipStatus string `json:"gossipStatus"`
}

func (f *gossipFleet) gossipRigs(t *testing.T) map[string]gossipRigJSON {
	t.Helper()
	out, err := f.ctrl.ctl(t, "rigs", "list", "-o", "json")
	if err != nil {
		t.Fatalf("rigs list: %v\n%s", err, out)
	}
	var resp struct {
		Rigs []gossipRigJSON `json:"rigs"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("rigs list json: %v\n%s", err, out)
	}
	m := map[string]gossipRigJSON{}
	for _, r := range resp.Rigs {
		m[r.Name] = r
	}
	return m
}

func (f *gossipFleet) status(t *testing.T, name string) string {
	t.Helper()
	return f.gossipRigs(t)[name].GossipStatus
}

// A killed agent shows as failed in gossip within seconds with the tuned
// profile and alive again when it returns; a frozen one (its TCP stream
// still open, so gRPC still calls it online) is flagged in 'rigs list'.
func TestGossipDetectsKilledAndFrozenAgents(t *testing.T) {
	f := startGossipFleet(t, 2, "tuned", 11)
	killed, frozen := f.rigs[0], f.rigs[1]

	start := time.Now()
	killed.proc.kill()
	eventually(t, "killed rig failed in gossip", 15*time.Second, func() bool { return f.status(t, killed.name) == "failed" })
	took := time.Since(start)
	// Only gossip sets this status (the stream has not timed out yet), so
	// seeing it proves serf detected the kill; speed is benchmarked, not
	// asserted.
	t.Logf("SIGKILL to gossip status failed: %s", took.Round(10*time.Millisecond))

	killed.proc = startAgent(t, killed.dir, f.ctrl.grpc, "", killed.flags("tuned")...)
	eventually(t, "restarted rig alive again", 30*time.Second, func() bool { return f.status(t, killed.name) == "alive" })

	if err := frozen.proc.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer frozen.proc.cmd.Process.Signal(syscall.SIGCONT) //nolint:errcheck // best effort if the test fails early
	eventually(t, "frozen rig failed in gossip", 15*time.Second, func() bool { return f.status(t, frozen.name) == "failed" })
	if r := f.gossipRigs(t)[frozen.name]; r.Online {
		out, _ := f.ctrl.ctl(t, "rigs", "list")
		if !strings.Contains(out, "online (gossip: failed)") {
			t.Errorf("rigs list does not flag the disagreement:\n%s", out)
		}
		out, _ = f.ctrl.ctl(t, "rig", "show", frozen.name)
		if !strings.Contains(out, "online (gossip: failed)") {
			t.Errorf("rig show does not flag the disagreement:\n%s", out)
		}
	} else {
		t.Log("the frozen rig's stream was already gone; disagreement not shown")
	}
	if err := frozen.proc.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	eventually(t, "thawed rig alive again", 30*time.Second, func() bool { return f.status(t, frozen.name) == "alive" })
}

// fleet pause reaches an agent whose gRPC link cannot connect: after
// enrollment it is restarted against a dead controller address, so only
// gossip joins it to the fleet.
func TestFleetPauseReachesAgentWithoutGRPC(t *testing.T) {
	f := startGossipFleet(t, 1, "tuned", 12)
	r := f.rigs[0]
	r.proc.stop()
	eventually(t, "stopped rig left", 15*time.Second, func() bool { return f.status(t, r.name) == "left" })

	dead := freePort(t) // nothing listens there
	r.proc = startAgent(t, r.dir, dead, "", r.flags("tuned")...)
	eventually(t, "rig alive over gossip only", 30*time.Second, func() bool {
		g := f.gossipRigs(t)[r.name]
		return g.GossipStatus == "alive" && !g.Online
	})
	out, err := f.ctrl.ctl(t, "gossip", "members")
	if err != nil || !strings.Contains(out, r.id) || !strings.Contains(out, "disconnected") {
		t.Fatalf("gossip members: %v\n%s", err, out)
	}
	if out, _ := f.ctrl.ctl(t, "rigs", "list"); !strings.Contains(out, "offline (gossip: alive)") {
		t.Errorf("rigs list does not show the rig reachable by gossip only:\n%s", out)
	}

	out, err = f.ctrl.ctl(t, "fleet", "pause", "--selector", "name="+r.id)
	if err != nil || !strings.Contains(out, "1 alive agents selected: "+r.id) {
		t.Fatalf("fleet pause: %v\n%s", err, out)
	}
	// Broadcast, or a later push/pull exchange if the broadcast missed.
	eventually(t, "agent acted on the pause", 60*time.Second, func() bool {
		return actedOn(r.proc.output(), "pause")
	})
	out, err = f.ctrl.ctl(t, "fleet", "resume")
	if err != nil {
		t.Fatalf("fleet resume: %v\n%s", err, out)
	}
	eventually(t, "agent acted on the resume", 60*time.Second, func() bool {
		return actedOn(r.proc.output(), "resume")
	})
	audit, err := f.ctrl.ctl(t, "audit", "-o", "json")
	if err != nil || !strings.Contains(audit, "gossip.event.pause") || !strings.Contains(audit, "gossip.event.resume") {
		t.Errorf("audit: %v\n%s", err, audit)
	}
}

// fleet query version prints every answer, then names the rig that was
// stopped as not answering.
func TestFleetQueryVersionNamesSilentRigs(t *testing.T) {
	f := startGossipFleet(t, 3, "tuned", 13)
	gone := f.rigs[2]
	gone.proc.stop()
	eventually(t, "stopped rig left", 15*time.Second, func() bool { return f.status(t, gone.name) == "left" })

	out, err := f.ctrl.ctl(t, "fleet", "query", "version", "--timeout", "3s")
	if err != nil {
		t.Fatalf("fleet query: %v\n%s", err, out)
	}
	for _, r := range f.rigs[:2] {
		if !strings.Contains(out, r.id+" ("+r.name+")\t{") || !strings.Contains(out, `"rig":"`+r.id+`"`) {
			t.Errorf("no answer from %s:\n%s", r.name, out)
		}
	}
	if !strings.Contains(out, "2 of 2 alive selected rigs answered") || !strings.Contains(out, "did not answer: "+gone.id+" ("+gone.name+") (gossip: left)") {
		t.Errorf("summary does not name the stopped rig:\n%s", out)
	}

	out, err = f.ctrl.ctl(t, "fleet", "query", "temps", "--selector", "name="+f.rigs[0].id, "-o", "json")
	// protojson varies its spacing on purpose, so match loosely.
	from := regexp.MustCompile(`"from":\s*"` + regexp.QuoteMeta(f.rigs[0].id) + `"`)
	if err != nil || !from.MatchString(out) || strings.Contains(out, f.rigs[1].id) {
		t.Errorf("selected temps query: %v\n%s", err, out)
	}
}

// A stock serf agent holding the key joins, sees the Quarry members with
// their tags, and cannot command the rigs: its unsigned event is refused.
func TestStockSerfJoinsAndCannotCommand(t *testing.T) {
	serfBin, err := filepath.Abs(filepath.Join("..", "..", "bin", "serf"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(serfBin); err != nil {
		if p, lerr := exec.LookPath("serf"); lerr == nil {
			serfBin = p
		} else {
			testsupport.Missing(t, "stock serf binary", "make tools installs bin/serf")
		}
	}
	f := startGossipFleet(t, 1, "lan", 14)
	r := f.rigs[0]

	var keys []string
	b, err := os.ReadFile(filepath.Join(f.ctrl.dir, "quarry-data", "gossip-keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &keys); err != nil || len(keys) == 0 {
		t.Fatalf("keyring: %v %s", err, b)
	}
	members, err := f.ctrl.ctl(t, "gossip", "members", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var ml struct {
		Members []struct{ Name, Addr string }
		Local   string
	}
	if err := json.Unmarshal([]byte(members), &ml); err != nil {
		t.Fatal(err)
	}
	var ctrlAddr string
	for _, m := range ml.Members {
		if m.Name == ml.Local {
			ctrlAddr = m.Addr
		}
	}
	ip, port := gossipAddr(t, "127.0.14.100")
	_, rpcPort := gossipAddr(t, "127.0.0.1")
	rpc := "127.0.0.1:" + rpcPort
	ctx, cancel := context.WithCancel(context.Background())
	agent := exec.CommandContext(ctx, serfBin, "agent", "-node", "stock", "-bind", net.JoinHostPort(ip, port),
		"-rpc-addr", rpc, "-encrypt", keys[0], "-join", ctrlAddr, "-tag", "role=observer", "-log-level", "warn")
	var agentOut strings.Builder
	agent.Stdout, agent.Stderr = &agentOut, &agentOut
	if err := agent.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = agent.Wait()
		if t.Failed() {
			t.Logf("serf agent output:\n%s", agentOut.String())
		}
	})

	var out []byte
	eventually(t, "serf members lists the Quarry members", 30*time.Second, func() bool {
		out, err = exec.Command(serfBin, "members", "-rpc-addr", rpc).CombinedOutput()
		s := string(out)
		return err == nil && strings.Contains(s, ml.Local) && strings.Contains(s, "role=controller") &&
			strings.Contains(s, r.id) && strings.Contains(s, "role=agent") && strings.Contains(s, "rig="+r.id) && strings.Contains(s, "grpc=connected")
	})
	t.Logf("serf members:\n%s", out)
	eventually(t, "the controller lists the stock agent", 15*time.Second, func() bool {
		o, _ := f.ctrl.ctl(t, "gossip", "members")
		return strings.Contains(o, "stock") && strings.Contains(o, "observer")
	})

	// Holding the gossip key is not enough to command the fleet.
	if out, err := exec.Command(serfBin, "event", "-rpc-addr", rpc, "quarry-event", "pause everything").CombinedOutput(); err != nil {
		t.Fatalf("serf event: %v\n%s", err, out)
	}
	eventually(t, "the agent refuses the unsigned event", 15*time.Second, func() bool {
		return strings.Contains(r.proc.output(), `msg="ignoring event"`)
	})
	if actedOn(r.proc.output(), "pause") {
		t.Fatal("the agent acted on an event that was not signed by the controller")
	}
}
