package agentd

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/agent/miner"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/minerapi"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// trexHashrate is the total the fake miner's recorded T-Rex reply carries.
const trexHashrate = 54046200

// fakeMinerMapping runs the fake miner as a "custom" miner serving T-Rex's
// API on the port the agent picks.
func fakeMinerMapping() minerapi.CustomMapping {
	return minerapi.CustomMapping{
		URL: "/summary", Total: "hashrate", Accepted: "accepted_count", Rejected: "rejected_count",
		Uptime: "uptime", Algorithm: "algorithm", Version: "version",
		Args: []string{"-api", "trex", "-listen", "{api_addr}", "-log-interval", "100ms"},
	}
}

// buildFakeMiner builds the fake miner into a directory of its own, the
// miners directory of the agents that run it.
func buildFakeMiner(t *testing.T) (path, sum string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "fakeminer")
	out, err := exec.Command("go", "build", "-o", path, "github.com/quarryfleet/quarry/pkg/minerapi/fakeminer").CombinedOutput()
	if err != nil {
		t.Fatalf("build fakeminer: %v\n%s", err, out)
	}
	sum, err = miner.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, sum
}

func sheetYAML(name, path, sum, control string) []byte {
	return []byte(`name: ` + name + `
coin: RVN
algorithm: kawpow
miner:
  name: custom
  path: ` + path + `
  sha256: ` + sum + `
pools:
  - url: stratum+tcp://rvn.example.org:6060
    user: RWallet.rig07
extra_args: ["-control", "` + control + `"]
expected_hashrate: 54 MH/s
`)
}

// minerAgent is an agent with miners wired in but no controller link; the
// test drives its command handlers and report hook directly.
func minerAgent(t *testing.T, dataDir, minersDir string) (*Agent, *Miners) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Insecure, cfg.RigID, cfg.MinersDir = dataDir, true, "rig-test", minersDir
	cfg.Miners = MinersConfig{StopGrace: 2 * time.Second, BackoffMin: 50 * time.Millisecond, Custom: fakeMinerMapping(),
		ApplySettle: 600 * time.Millisecond, ApplyAPIWait: 3 * time.Second}
	cfg.Miners.Watchdog.PollInterval = time.Hour // the rules are tested in package watchdog
	a, err := New(context.Background(), cfg, "test", nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	m, err := StartMiners(context.Background(), a, testLogger(t))
	if err != nil {
		a.DB().Close()
		t.Fatal(err)
	}
	return a, m
}

func closeMinerAgent(t *testing.T, a *Agent, m *Miners) {
	t.Helper()
	if err := m.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
	a.DB().Close()
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func command(t *testing.T, a *Agent, kind quarryv1.CommandKind, payload []byte) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := a.HandleCommand(ctx, &quarryv1.Command{Id: "c", Kind: kind, Payload: payload})
	return string(out), err
}

// report builds a report as the agent's report loop does: hooks, then the
// durable buffer, which adds the pending events.
func report(a *Agent) *quarryv1.Report {
	r := &quarryv1.Report{}
	for _, fn := range a.hooks {
		fn(context.Background(), r)
	}
	if _, err := a.buf.Append(r); err != nil {
		panic(err)
	}
	return r
}

func waitMiner(t *testing.T, a *Agent, what string, ok func(*quarryv1.MinerStats) bool) *quarryv1.MinerStats {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last *quarryv1.MinerStats
	for time.Now().Before(deadline) {
		r := report(a)
		if len(r.Miners) == 1 {
			last = r.Miners[0]
			if ok(last) {
				return last
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last miner stats %v", what, last)
	return nil
}

func gone(pid int) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// An apply succeeds only once the miner has stayed up for the settling
// time and its API answered; a miner that exits at once, or never opens
// its API, fails the apply with how it ended and its last output.
func TestApplyWaitsForMinerToSettle(t *testing.T) {
	path, sum := buildFakeMiner(t)
	dir := t.TempDir()
	a, m := minerAgent(t, filepath.Join(dir, "agent"), filepath.Dir(path))
	defer closeMinerAgent(t, a, m)
	withArgs := func(name string, args ...string) []byte {
		s := string(sheetYAML(name, path, sum, filepath.Join(dir, "control")))
		return []byte(strings.Replace(s, `extra_args: ["-control", "`+filepath.Join(dir, "control")+`"]`,
			`extra_args: ["`+strings.Join(args, `", "`)+`"]`, 1))
	}
	tests := []struct {
		name    string
		sheet   []byte
		want    []string // all in the error; nil: success
		wantOut string   // in the output: the miner's last lines
	}{
		{"exits at once", withArgs("crash", "-crash-after", "40ms", "-exit-code", "2"),
			[]string{"exited with code 2", "keeps restarting"}, "simulated crash after 40ms"},
		{"API never opens", withArgs("deaf", "-startup-delay", "1h"),
			[]string{"is running (pid", "did not answer within 3s"}, ""},
		{"settles", withArgs("ok"), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := command(t, a, quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, tt.sheet)
			if tt.want == nil {
				if err != nil || !strings.Contains(out, "stats API answering") {
					t.Fatalf("apply = %q, %v; want success", out, err)
				}
				if st := m.sup.Status(); st.State != miner.StateRunning || time.Since(st.Since) < 600*time.Millisecond {
					t.Fatalf("success reported for a miner %+v that has not settled", st)
				}
				return
			}
			if err == nil {
				t.Fatalf("apply succeeded: %q", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("apply error does not mention %q:\n%v", w, err)
				}
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("apply output lacks %q:\n%s", tt.wantOut, out)
			}
			// Viewers read command errors; the miner's output is not in it.
			if strings.Contains(err.Error(), "fakeminer") {
				t.Errorf("miner output in the error: %v", err)
			}
		})
	}
}

func TestMinersLifecycle(t *testing.T) {
	path, sum := buildFakeMiner(t)
	dir := t.TempDir()
	control := filepath.Join(dir, "control")
	a, m := minerAgent(t, filepath.Join(dir, "agent"), filepath.Dir(path))

	// A sheet whose binary does not match is refused; nothing runs.
	wrong := strings.Repeat("0", 64)
	if _, err := command(t, a, quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, sheetYAML("bad", path, wrong, control)); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("wrong sha256 apply = %v, want a checksum refusal", err)
	}
	if st := m.sup.Status(); st.State != miner.StateIdle || st.PID != 0 {
		t.Fatalf("after refusal the supervisor is %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "agent", MinerStateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused sheet was recorded: %v", err)
	}
	if r := report(a); len(r.Miners) != 0 || !hasEvent(r, "flight_sheet_refused") {
		t.Fatalf("report after refusal: miners %v events %v", r.Miners, r.Events)
	}

	// Bad input is an error, never a panic.
	for _, p := range []string{"", "name: [", "name: x\n"} {
		if _, err := command(t, a, quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, []byte(p)); err == nil {
			t.Errorf("apply %q succeeded", p)
		}
	}

	out, err := command(t, a, quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, sheetYAML("rvn", path, sum, control))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "mining rvn") {
		t.Errorf("apply output %q", out)
	}
	ms := waitMiner(t, a, "hashrate", func(ms *quarryv1.MinerStats) bool { return ms.State == "running" })
	if ms.Hashrate != trexHashrate || ms.Algorithm != "kawpow" || ms.Coin != "RVN" || ms.Miner != "custom" {
		t.Errorf("miner stats %v", ms)
	}

	logs, err := command(t, a, quarryv1.CommandKind_COMMAND_KIND_MINER_LOGS, []byte("5"))
	if err != nil || !strings.Contains(logs, "fakeminer trex") || strings.Count(logs, "\n") > 4 {
		t.Errorf("logs = %q, %v", logs, err)
	}
	if _, err := command(t, a, quarryv1.CommandKind_COMMAND_KIND_MINER_LOGS, []byte("-3")); err == nil {
		t.Error("negative line count accepted")
	}

	// An API that answers garbage is a bad reply: neither unreachable
	// (it answered) nor zero hashrate.
	os.WriteFile(control, []byte("garbage\n"), 0o600)
	ms = waitMiner(t, a, "bad reply", func(ms *quarryv1.MinerStats) bool { return ms.State == quarryv1.MinerBadReply })
	if ms.Hashrate != 0 || ms.Error == "" || ms.HashrateKnown() {
		t.Errorf("bad-reply stats %v", ms)
	}
	os.WriteFile(control, nil, 0o600)
	waitMiner(t, a, "recovery", func(ms *quarryv1.MinerStats) bool { return ms.State == "running" })

	// An API that answers without a reading yet is warming, not
	// unreachable, and has no hashrate.
	os.WriteFile(control, []byte("warming\n"), 0o600)
	ms = waitMiner(t, a, "warming", func(ms *quarryv1.MinerStats) bool { return ms.State == quarryv1.MinerWarming })
	if ms.Hashrate != 0 || ms.HashrateKnown() || !strings.Contains(ms.Error, "warming up") {
		t.Errorf("warming stats %v", ms)
	}
	os.WriteFile(control, nil, 0o600)
	waitMiner(t, a, "readings after warm-up", func(ms *quarryv1.MinerStats) bool { return ms.State == "running" })

	// A benchmark measures the sheet, then the miner runs the old sheet again.
	bp, _ := json.Marshal(flightsheet.BenchmarkPayload{DurationSeconds: 1, Runs: []flightsheet.BenchmarkRun{{Algorithm: "kawpow", Sheet: string(sheetYAML("bench", path, sum, control))}}})
	out, err = command(t, a, quarryv1.CommandKind_COMMAND_KIND_BENCHMARK, bp)
	if err != nil {
		t.Fatalf("benchmark: %v (%s)", err, out)
	}
	var res []flightsheet.BenchmarkResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		t.Fatalf("benchmark output %q: %v", out, err)
	}
	if res[0].HashrateHs != trexHashrate || res[0].Samples < 2 || res[0].Sheet != "bench" || res[0].PowerW != nil {
		t.Errorf("benchmark result %+v", res[0])
	}
	if s, _ := m.active(); s == nil || s.Name != "rvn" || m.sup.Status().State != miner.StateRunning {
		t.Errorf("after benchmark the miner runs %v in %s", s, m.sup.Status().State)
	}
	if _, err := command(t, a, quarryv1.CommandKind_COMMAND_KIND_BENCHMARK, []byte(`{"duration_seconds":0}`)); err == nil {
		t.Error("zero-duration benchmark accepted")
	}

	// The next agent run resumes the sheet; the old process is gone.
	pid := m.sup.Status().PID
	closeMinerAgent(t, a, m)
	if !gone(pid) {
		t.Fatalf("miner %d outlived the agent", pid)
	}
	a, m = minerAgent(t, filepath.Join(dir, "agent"), filepath.Dir(path))
	defer closeMinerAgent(t, a, m)
	waitMiner(t, a, "resumed miner", func(ms *quarryv1.MinerStats) bool { return ms.State == "running" && ms.Hashrate > 0 })
	if m.sup.Status().PID == pid {
		t.Error("resumed miner has the old pid")
	}

	// Stopped stays stopped across restarts of the agent.
	if _, err := command(t, a, quarryv1.CommandKind_COMMAND_KIND_STOP_MINER, nil); err != nil {
		t.Fatal(err)
	}
	if ms := waitMiner(t, a, "stopped", func(ms *quarryv1.MinerStats) bool { return ms.State == "stopped" }); ms.Hashrate != 0 {
		t.Errorf("stopped miner reports %v", ms)
	}
	if _, err := command(t, a, quarryv1.CommandKind_COMMAND_KIND_REBOOT, nil); err == nil {
		t.Error("reboot ran without a reboot command")
	}
}

func hasEvent(r *quarryv1.Report, kind string) bool {
	for _, e := range r.Events {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

func TestMinersConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  MinersConfig
		want string
	}{
		{"defaults", MinersConfig{}, ""},
		{"negative grace", MinersConfig{StopGrace: -time.Second}, "miners.stop_grace"},
		{"negative log size", MinersConfig{LogMaxBytes: -1}, "miners.log_max_bytes"},
		{"bad overheat action", MinersConfig{Watchdog: WatchdogSettings{OnOverheat: "explode"}}, "miners.watchdog"},
		{"custom without total", MinersConfig{Custom: minerapi.CustomMapping{URL: "/summary"}}, "miners.custom"},
		{"custom mapping", MinersConfig{Custom: fakeMinerMapping()}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want mention of %s", err, tc.want)
			}
		})
	}
}

// Attack: a flight sheet makes the root agent run a shell (with its true
// sha256 and extra_args "-c ..."), a binary outside miners_dir, or one
// reached through a symlink in miners_dir that points outside. Each is
// refused with an event for the controller, and nothing runs.
func TestAttackFlightSheetRunsBinaryOutsideMinersDir(t *testing.T) {
	path, sum := buildFakeMiner(t)
	minersDir := filepath.Dir(path)
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	outside := filepath.Join(dir, "elsewhere", "fakeminer")
	if err := os.MkdirAll(filepath.Dir(outside), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(outside, b, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(minersDir, "linked-miner")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	shSum, err := miner.FileSHA256("/bin/sh")
	if err != nil {
		t.Skipf("no /bin/sh: %v", err)
	}
	a, m := minerAgent(t, filepath.Join(dir, "agent"), minersDir)
	defer closeMinerAgent(t, a, m)

	shell := strings.Replace(string(sheetYAML("shell", "/bin/sh", shSum, marker)),
		`extra_args: ["-control", "`+marker+`"]`, `extra_args: ["-c", "touch `+marker+`"]`, 1)
	for _, tt := range []struct {
		name, sheet, want string
	}{
		{"shell", shell, "shell or interpreter"},
		{"outside miners_dir", string(sheetYAML("outside", outside, sum, marker)), "outside the miners directory"},
		{"symlink out of miners_dir", string(sheetYAML("linked", link, sum, marker)), "outside the miners directory"},
		{"dot-dot out of miners_dir", string(sheetYAML("dotdot", filepath.Join(minersDir, "..", filepath.Base(dir), "elsewhere", "fakeminer"), sum, marker)), "outside the miners directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := command(t, a, quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, []byte(tt.sheet))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("apply = %v, want a refusal containing %q", err, tt.want)
			}
			r := report(a)
			var ev *quarryv1.Event
			for _, e := range r.Events {
				if e.Kind == "flight_sheet_refused" {
					ev = e
				}
			}
			if ev == nil || !strings.Contains(ev.Message, tt.want) {
				t.Fatalf("no flight_sheet_refused event naming the reason: %v", r.Events)
			}
			if st := m.sup.Status(); st.State != miner.StateIdle || st.PID != 0 {
				t.Fatalf("after refusal the supervisor is %+v", st)
			}
			if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the refused sheet ran a command: %v", err)
			}
		})
	}
}
