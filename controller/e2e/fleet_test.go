package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func u(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

func rigByName(t *testing.T, rigs []rigJSON, name string) (rigJSON, bool) {
	t.Helper()
	for _, r := range rigs {
		if r.Name == name {
			return r, true
		}
	}
	return rigJSON{}, false
}

// Every report sequence number from every agent arrives exactly once,
// even when the controller is killed mid-stream and restarted.
func TestExactlyOnceAcrossControllerKill(t *testing.T) {
	dir := t.TempDir()
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr)

	const n = 3
	agentDirs := make([]string, n)
	agents := make([]*proc, n)
	for i := range n {
		agentDirs[i] = filepath.Join(dir, fmt.Sprintf("rig%d", i))
		if err := os.MkdirAll(agentDirs[i], 0o700); err != nil {
			t.Fatal(err)
		}
		tok := ctrl.newToken(t, "--rig-name", fmt.Sprintf("rig%d", i))
		agents[i] = startAgent(t, agentDirs[i], grpcAddr, tok)
	}
	eventually(t, "all rigs reporting", time.Minute, func() bool {
		rigs := ctrl.rigs(t)
		for i := range n {
			r, ok := rigByName(t, rigs, fmt.Sprintf("rig%d", i))
			if !ok || !r.Online || u(r.Reports) < 5 {
				return false
			}
		}
		return true
	})

	// SIGKILL: no chance to flush anything. Agents keep reporting into
	// their buffers meanwhile.
	ctrl.kill()
	committed := make([]uint64, n)
	for i := range n {
		committed[i] = lastSeqOnDisk(t, dir, fmt.Sprintf("rig%d", i))
	}
	eventually(t, "every agent buffering while the controller is gone", time.Minute, func() bool {
		for _, a := range agents {
			if linkDownBuffered(a) < 3 {
				return false
			}
		}
		return true
	})
	ctrl = startController(t, dir, grpcAddr, httpAddr)
	eventually(t, "rigs back online", time.Minute, func() bool {
		rigs := ctrl.rigs(t)
		online := 0
		for _, r := range rigs {
			if r.Online {
				online++
			}
		}
		return online == n
	})
	eventually(t, "every backlog replayed", time.Minute, func() bool {
		rigs := ctrl.rigs(t)
		for i := range n {
			r, _ := rigByName(t, rigs, fmt.Sprintf("rig%d", i))
			if u(r.LastSeq) < committed[i]+3 {
				return false
			}
		}
		return true
	})
	for _, a := range agents {
		a.stop()
	}

	// Each agent's own count of reports made is the truth to compare with.
	made := make([]uint64, n)
	for i := range n {
		made[i], _ = agentCounts(t, agentDirs[i])
		// A restarted agent reports once at start, then not for an hour:
		// its backlog drains and the total is known exactly.
		agents[i] = startAgent(t, agentDirs[i], grpcAddr, "", "-report-interval", "1h")
		made[i]++
	}
	eventually(t, "every report committed", time.Minute, func() bool {
		rigs := ctrl.rigs(t)
		for i := range n {
			r, _ := rigByName(t, rigs, fmt.Sprintf("rig%d", i))
			if u(r.LastSeq) < made[i] {
				return false
			}
		}
		return true
	})
	for _, a := range agents {
		a.stop()
	}
	rigs := ctrl.rigs(t)
	for i := range n {
		r, _ := rigByName(t, rigs, fmt.Sprintf("rig%d", i))
		checkNothingLost(t, fmt.Sprintf("rig%d", i), agentDirs[i], r)
	}
	ctrl.stop()
}

// An agent kept away from the controller buffers its reports and replays
// the whole backlog, in order, when the controller returns.
func TestBacklogReplayedInOrder(t *testing.T) {
	dir := t.TempDir()
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr)
	agent := startAgent(t, dir, grpcAddr, ctrl.newToken(t, "--rig-name", "away"))
	eventually(t, "rig reporting", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "away")
		return ok && u(r.Reports) >= 3
	})
	ctrl.stop()
	// The controller's state on disk says what it had before going away.
	committedBefore := lastSeqOnDisk(t, dir, "away")
	// Reports every 100 ms pile up in the agent's buffer; it says how many
	// each time it fails to reach the controller.
	const backlog = 10
	eventually(t, "a backlog buffered while the controller is away", time.Minute, func() bool {
		return linkDownBuffered(agent) >= backlog
	})
	ctrl = startController(t, dir, grpcAddr, httpAddr)
	eventually(t, "backlog replayed", time.Minute, func() bool {
		r, _ := rigByName(t, ctrl.rigs(t), "away")
		return r.Online && u(r.LastSeq) >= committedBefore+backlog
	})
	agent.stop()
	made, _ := agentCounts(t, dir)
	r, _ := rigByName(t, ctrl.rigs(t), "away")
	// Out-of-order delivery would leave gaps and drop the late reports as
	// duplicates, so reports == last_seq with no gaps means in order.
	checkNothingLost(t, "away", dir, r)
	// A backlog was built while away and replayed, not just new reports.
	if made < committedBefore+5 {
		t.Fatalf("agent made %d reports, controller had %d before going away: no backlog to replay", made, committedBefore)
	}
	ctrl.stop()
}

// A command for an offline rig waits for it; one that outlives its ttl
// is marked expired instead of running late.
func TestCommandsQueuedForOfflineRig(t *testing.T) {
	dir := t.TempDir()
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr)
	agent := startAgent(t, dir, grpcAddr, ctrl.newToken(t, "--rig-name", "later"))
	eventually(t, "rig online", time.Minute, func() bool {
		r, _ := rigByName(t, ctrl.rigs(t), "later")
		return r.Online
	})
	agent.stop()
	eventually(t, "rig offline", time.Minute, func() bool {
		r, _ := rigByName(t, ctrl.rigs(t), "later")
		return !r.Online
	})
	out, err := ctrl.ctl(t, "rig", "command", "later", "ping", "--wait=false")
	if err != nil || !strings.Contains(out, "queued") {
		t.Fatalf("queue ping: %v %s", err, out)
	}
	pingID := strings.Fields(out)[0]
	shortTTLFrom := time.Now()
	out, err = ctrl.ctl(t, "rig", "command", "later", "ping", "--wait=false", "--ttl", "1s")
	if err != nil {
		t.Fatalf("queue short ping: %v %s", err, out)
	}
	shortID := strings.Fields(out)[0]
	// The ttl runs on the controller's clock, so the rig may return only
	// once that much wall time has passed.
	eventually(t, "short ping's ttl over", time.Minute, func() bool {
		return time.Since(shortTTLFrom) > 1100*time.Millisecond
	})

	agent = startAgent(t, dir, grpcAddr, "")
	// The queued command runs once the rig is back.
	out, err = ctrl.ctl(t, "rig", "command", "later", "ping", "--timeout", "30s")
	if err != nil || !strings.Contains(out, "succeeded: pong") {
		t.Fatalf("ping after return: %v %s", err, out)
	}
	eventually(t, "queued command done", 30*time.Second, func() bool {
		return strings.Contains(agent.output(), pingID)
	})
	if strings.Contains(agent.output(), shortID) {
		t.Fatalf("expired command %s reached the agent:\n%s", shortID, agent.output())
	}
	agent.stop()
	ctrl.stop()
}

func TestBadConfigurationIsNamed(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	cases := []struct {
		bin, yaml, want string
	}{
		{"quarry-controller", "report_interval: often\n", `setting "report_interval": want a duration`},
		{"quarry-controller", "max_batch: lots\n", `setting "max_batch": want a whole number`},
		{"quarry-controller", "grpc_adr: 1\n", `unknown setting "grpc_adr"`},
		{"quarry-agent", "buffer_size: [1]\n", `setting "buffer_size"`},
		{"quarry-agent", "controller: nohost\n", "controller: \"nohost\" is not host:port"},
	}
	for _, c := range cases {
		if err := os.WriteFile(cfg, []byte(c.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		p := start(t, dir, c.bin, "-config", cfg, "-data-dir", filepath.Join(dir, "d"))
		<-p.done
		if p.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(p.output(), c.want) {
			t.Errorf("%s with %q: exit %d, output %q; want an error containing %q", c.bin, c.yaml, p.cmd.ProcessState.ExitCode(), p.output(), c.want)
		}
	}
}

func TestQuarryctlExplainsUnreachableController(t *testing.T) {
	dir := t.TempDir()
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr)
	ctrl.stop()
	out, err := ctrl.ctl(t, "rigs", "list", "--timeout", "3s")
	if err == nil || !strings.Contains(out, "cannot reach the controller at "+grpcAddr) {
		t.Fatalf("want a clear unreachable error, got %v: %s", err, out)
	}
}
