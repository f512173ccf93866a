package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/agent/miner"
)

// fakeMinerAgentConfig runs the fake miner as a "custom" miner serving
// T-Rex's API on the port the agent picks, with watchdog and restart
// timings short enough for a test.
const fakeMinerAgentConfig = `miners:
  stop_grace: 2s
  backoff_min: 1s
  backoff_max: 2s
  apply_settle: 1s
  watchdog:
    poll_interval: 100ms
    startup_grace: 500ms
    low_hashrate_for: 1s
    stats_unreachable_for: 1m
  custom:
    url: /summary
    total: hashrate
    accepted: accepted_count
    rejected: rejected_count
    uptime: uptime
    algorithm: algorithm
    version: version
    args: ["-api", "trex", "-listen", "{api_addr}", "-log-interval", "200ms"]
`

const fakeTrexHashrate = 54046200

func minerSheet(path, sum, control string) string {
	return `name: rvn-fake
coin: RVN
algorithm: kawpow
miner:
  name: custom
  path: ` + path + `
  sha256: ` + sum + `
pools:
  - url: stratum+tcp://rvn.example.org:6060
    user: RWallet.e2e
extra_args: ["-control", "` + control + `"]
expected_hashrate: 54 MH/s
`
}

// minerPIDs lists the processes running the binary at path.
func minerPIDs(t *testing.T, path string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		pid := 0
		for _, c := range e.Name() {
			if c < '0' || c > '9' {
				pid = -1
				break
			}
			pid = pid*10 + int(c-'0')
		}
		if pid <= 0 {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == path {
			out = append(out, pid)
		}
	}
	return out
}

type minerJSON struct {
	Miner    string  `json:"miner"`
	Hashrate float64 `json:"hashrate"`
	Accepted string  `json:"accepted"`
	State    string  `json:"state"`
	Error    string  `json:"error"`
}

func (c *controller) rigMiners(t *testing.T, rig string) []minerJSON {
	t.Helper()
	out, err := c.ctl(t, "rig", "show", rig, "-o", "json")
	if err != nil {
		t.Fatalf("rig show: %v\n%s", err, out)
	}
	var r struct {
		Miners []minerJSON `json:"miners"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("rig show json: %v\n%s", err, out)
	}
	return r.Miners
}

func (c *controller) hasEvent(t *testing.T, rig, kind string) bool {
	t.Helper()
	out, err := c.ctl(t, "rig", "events", rig)
	if err != nil {
		t.Fatalf("rig events: %v\n%s", err, out)
	}
	return strings.Contains(out, kind)
}

func onePID(t *testing.T, path string) int {
	t.Helper()
	var pids []int
	eventually(t, "one miner process", 10*time.Second, func() bool {
		pids = minerPIDs(t, path)
		return len(pids) == 1
	})
	return pids[0]
}

func gonePID(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// A flight sheet applied with quarryctl makes the real agent run the
// (fake) miner; its stats reach 'rig show'; a crash is restarted by the
// supervisor and a slow miner by the watchdog, both visible as events at
// the controller; logs come back from the rig; a sheet with the wrong
// sha256 is refused; and stopping the agent leaves no miner behind.
func TestMinersEndToEnd(t *testing.T) {
	dir := t.TempDir()
	// The agent runs miners only from its miners_dir.
	minersDir := filepath.Join(dir, "miners")
	fake := filepath.Join(minersDir, "fakeminer")
	if out, err := exec.Command("go", "build", "-o", fake, "github.com/quarryfleet/quarry/pkg/minerapi/fakeminer").CombinedOutput(); err != nil {
		t.Fatalf("build fakeminer: %v\n%s", err, out)
	}
	sum, err := miner.FileSHA256(fake)
	if err != nil {
		t.Fatal(err)
	}
	control := filepath.Join(dir, "control")
	cfgFile := filepath.Join(dir, "agent.yaml")
	good, bad := filepath.Join(dir, "rvn.yaml"), filepath.Join(dir, "bad.yaml")
	for name, body := range map[string]string{
		cfgFile: fakeMinerAgentConfig,
		good:    minerSheet(fake, sum, control),
		bad:     minerSheet(fake, strings.Repeat("0", 64), control),
	} {
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	ctrl := startController(t, dir, freePort(t), freePort(t))
	agent := startAgent(t, dir, ctrl.grpc, ctrl.newToken(t, "--rig-name", "miner-rig"), "-config", cfgFile, "-miners-dir", minersDir)
	eventually(t, "rig online", 30*time.Second, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "miner-rig")
		return ok && r.Online
	})

	// Wrong sha256: refused, nothing runs.
	out, err := ctrl.ctl(t, "flightsheet", "apply", "-f", bad, "--rigs", "name=miner-rig", "--wait")
	if err == nil || !strings.Contains(out, "miner-rig") || !strings.Contains(out, "sha256") {
		t.Fatalf("apply with a wrong sha256: %v\n%s", err, out)
	}
	if pids := minerPIDs(t, fake); len(pids) != 0 {
		t.Fatalf("a refused miner runs: %v", pids)
	}

	// A miner that exits at once fails the apply, with its exit code and
	// its last output, instead of reporting success with a dead pid.
	crashing := filepath.Join(dir, "crash.yaml")
	if err := os.WriteFile(crashing, []byte(strings.Replace(minerSheet(fake, sum, control), `extra_args: ["-control", "`+control+`"]`,
		`extra_args: ["-crash-after", "40ms", "-exit-code", "2"]`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = ctrl.ctl(t, "flightsheet", "apply", "-f", crashing, "--rigs", "name=miner-rig", "--wait")
	if err == nil || !strings.Contains(out, "FAILED") || !strings.Contains(out, "exited with code 2") || !strings.Contains(out, "simulated crash after 40ms") {
		t.Fatalf("apply of a miner that exits at once: %v\n%s", err, out)
	}

	// A bare word picks the rig by name, as 'rig show' does.
	out, err = ctrl.ctl(t, "flightsheet", "apply", "-f", good, "--rigs", "miner-rig", "--wait")
	if err != nil || !strings.Contains(out, "flight sheet rvn-fake sent to 1 rig(s)") || !strings.Contains(out, "mining rvn-fake") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	first := onePID(t, fake)
	eventually(t, "miner stats at the controller", 15*time.Second, func() bool {
		ms := ctrl.rigMiners(t, "miner-rig")
		return len(ms) == 1 && ms[0].State == "running" && ms[0].Hashrate == fakeTrexHashrate && u(ms[0].Accepted) > 0
	})
	// The miner's version and uptime are those of the recorded T-Rex
	// answer the fake miner serves; the pool is the sheet's.
	out, _ = ctrl.ctl(t, "rig", "show", "miner-rig")
	for _, want := range []string{"54.05 MH/s", "kawpow", "0.26.8", "stratum+tcp://rvn.example.org:6060", "50m21s"} {
		if !strings.Contains(out, want) {
			t.Errorf("rig show lacks %q:\n%s", want, out)
		}
	}
	if out, _ := ctrl.ctl(t, "flightsheet", "list"); !strings.Contains(out, "rvn-fake") {
		t.Errorf("flightsheet list:\n%s", out)
	}
	out, err = ctrl.ctl(t, "rig", "logs", "miner-rig", "-n", "20")
	if err != nil || !strings.Contains(out, "fakeminer trex") {
		t.Errorf("rig logs: %v\n%s", err, out)
	}

	// An API that answers garbage: the hashrate is unknown, not zero, in
	// rig show and in /metrics.
	if err := os.WriteFile(control, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "unknown hashrate shown as such", 15*time.Second, func() bool {
		out, _ := ctrl.ctl(t, "rig", "show", "miner-rig")
		return strings.Contains(out, "— (bad-reply)") && !strings.Contains(out, "0.00 H/s")
	})
	resp, err := http.Get("http://" + ctrl.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	prom, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(prom), `quarry_miner_up{algorithm="kawpow",coin="RVN",miner="custom",name="miner-rig"`) ||
		strings.Contains(string(prom), "quarry_miner_hashrate_hashes_per_second{") {
		t.Errorf("/metrics for an unreachable miner:\n%s", grepLines(string(prom), "quarry_miner_"))
	}
	for _, l := range strings.Split(string(prom), "\n") {
		if strings.HasPrefix(l, "quarry_miner_up{") && !strings.HasSuffix(l, " 0") {
			t.Errorf("unreachable miner: %s, want 0", l)
		}
	}
	os.WriteFile(control, nil, 0o600)
	eventually(t, "readings again", 15*time.Second, func() bool {
		ms := ctrl.rigMiners(t, "miner-rig")
		return len(ms) == 1 && ms[0].State == "running"
	})

	// Crash: the supervisor restarts the miner.
	if err := os.WriteFile(control, []byte("crash\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "crashed miner gone", 10*time.Second, func() bool { return gonePID(first) })
	os.WriteFile(control, nil, 0o600) // the restarted miner runs normally
	second := onePID(t, fake)
	if second == first {
		t.Fatal("miner was not restarted")
	}
	eventually(t, "crash event at the controller", 10*time.Second, func() bool {
		return ctrl.hasEvent(t, "miner-rig", "miner_exited")
	})

	// Low hashrate: the watchdog restarts the miner.
	eventually(t, "restarted miner at full speed", 10*time.Second, func() bool {
		ms := ctrl.rigMiners(t, "miner-rig")
		return len(ms) == 1 && ms[0].Hashrate == fakeTrexHashrate
	})
	if err := os.WriteFile(control, []byte("hashrate 0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "watchdog restarts the slow miner", 15*time.Second, func() bool { return gonePID(second) })
	os.WriteFile(control, nil, 0o600)
	eventually(t, "watchdog event at the controller", 10*time.Second, func() bool {
		return ctrl.hasEvent(t, "miner-rig", "watchdog_restart_miner")
	})

	// A benchmark measures the rig and stores its figure for the profit
	// engine; the rig then mines its sheet again.
	out, err = ctrl.ctl(t, "rig", "benchmark", "miner-rig", "--algos", "kawpow", "--duration", "2s")
	if err != nil || !strings.Contains(out, "54.05 MH/s") {
		t.Fatalf("rig benchmark: %v\n%s", err, out)
	}
	out, err = ctrl.ctl(t, "rig", "benchmarks", "miner-rig")
	if err != nil || !strings.Contains(out, "kawpow") || !strings.Contains(out, "54.05 MH/s") {
		t.Errorf("rig benchmarks: %v\n%s", err, out)
	}
	eventually(t, "sheet resumed after the benchmark", 10*time.Second, func() bool {
		ms := ctrl.rigMiners(t, "miner-rig")
		return len(ms) == 1 && ms[0].State == "running" && ms[0].Hashrate == fakeTrexHashrate
	})
	last := onePID(t, fake)

	// Each watchdog action is logged once, by the watchdog.
	for _, l := range strings.Split(agent.output(), "\n") {
		if strings.Contains(l, "watchdog_") && strings.Contains(l, "kind=watchdog_") {
			t.Errorf("watchdog action logged a second time: %s", l)
		}
	}
	stoppedBefore := strings.Count(eventsText(t, ctrl, "miner-rig"), "miner_stopped")

	// The agent stops its miner on the way out, and the miner_stopped
	// event of that clean stop reaches the controller, once.
	agent.stop()
	if !gonePID(last) {
		t.Errorf("miner %d outlived the agent", last)
	}
	if n := strings.Count(eventsText(t, ctrl, "miner-rig"), "miner_stopped"); n != stoppedBefore+1 {
		t.Errorf("miner_stopped events at the controller: %d before the agent stopped, %d after; want one more", stoppedBefore, n)
	}
	if pids := minerPIDs(t, fake); len(pids) != 0 {
		t.Errorf("miner processes left behind: %v", pids)
	}

	out, err = ctrl.ctl(t, "audit")
	if err != nil || !strings.Contains(out, "flightsheet apply") {
		t.Errorf("audit lacks the apply: %v\n%s", err, out)
	}
}

// grepLines keeps the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// eventsText is 'rig events RIG' output.
func eventsText(t *testing.T, c *controller, rig string) string {
	t.Helper()
	out, err := c.ctl(t, "rig", "events", rig)
	if err != nil {
		t.Fatalf("rig events: %v\n%s", err, out)
	}
	return out
}
