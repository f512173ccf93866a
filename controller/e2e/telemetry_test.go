package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// 'quarry-agent inspect' prints one sample and exits, with no controller
// and no enrollment.
func TestAgentInspect(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(bins(t), "quarry-agent")
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, out []byte)
	}{
		{"table", []string{"inspect"}, func(t *testing.T, out []byte) {
			for _, want := range []string{"HOST", "CPU", "MEM", "busy"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		}},
		{"json", []string{"inspect", "-o", "json", "--interval", "200ms"}, func(t *testing.T, out []byte) {
			var s struct {
				Host *struct {
					CPUModel   string   `json:"cpu_model"`
					CPUCores   int      `json:"cpu_cores"`
					CPUPercent *float64 `json:"cpu_percent"`
					Memory     *struct {
						Total uint64 `json:"total"`
					} `json:"memory"`
				} `json:"host"`
				GPUs []struct {
					Vendor string `json:"vendor"`
					Name   string `json:"name"`
				} `json:"gpus"`
			}
			if err := json.Unmarshal(out, &s); err != nil {
				t.Fatalf("json: %v\n%s", err, out)
			}
			if s.Host == nil || s.Host.CPUCores == 0 || s.Host.Memory == nil || s.Host.Memory.Total == 0 || s.Host.CPUPercent == nil {
				t.Errorf("host figures missing:\n%s", out)
			}
			for _, g := range s.GPUs {
				t.Logf("GPU: %s %s", g.Vendor, g.Name)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(agent, tt.args...)
			cmd.Dir = dir
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("inspect: %v\n%s", err, stderr.String())
			}
			tt.check(t, out)
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "quarry-agent-data")); !os.IsNotExist(err) {
		t.Errorf("inspect created the agent's data dir: %v", err)
	}
}

// 'quarryctl rig oc' carries a profile to a real agent and comes back with
// its verdict: a power limit no card accepts is refused with a reason
// (out of range where NVML is present, no overclocking where it is not),
// and a misspelt profile never leaves quarryctl.
func TestRigOCRefused(t *testing.T) {
	dir := t.TempDir()
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr)
	rigDir := filepath.Join(dir, "rig")
	if err := os.MkdirAll(rigDir, 0o700); err != nil {
		t.Fatal(err)
	}
	agent := startAgent(t, rigDir, grpcAddr, ctrl.newToken(t, "--rig-name", "ocrig"))
	eventually(t, "rig online", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "ocrig")
		return ok && r.Online && u(r.Reports) > 0
	})

	tooHigh := filepath.Join(dir, "too-high.yaml")
	writeFile(t, tooHigh, "profiles:\n  - name: too-hot\n    match: {index: [0, 1, 2, 3, 4, 5, 6, 7]}\n    power_limit_w: 5000\n")
	out, err := ctrl.ctl(t, "rig", "oc", "ocrig", "--profile", tooHigh, "--timeout", "30s")
	if err == nil {
		t.Fatalf("5000 W accepted:\n%s", out)
	}
	if !strings.Contains(out, "failed") ||
		!(strings.Contains(out, "power_limit_w 5000 outside the card's limits") || strings.Contains(out, "this rig cannot overclock")) {
		t.Errorf("refusal does not say why:\n%s", out)
	}
	t.Logf("refusal: %s", strings.TrimSpace(out))

	typo := filepath.Join(dir, "typo.yaml")
	writeFile(t, typo, "profiles:\n  - name: eco\n    match: {index: [0]}\n    power_limt_w: 200\n")
	out, err = ctrl.ctl(t, "rig", "oc", "ocrig", "--profile", typo)
	if err == nil || !strings.Contains(out, "power_limt_w") {
		t.Errorf("misspelt key: %v\n%s", err, out)
	}
	out, err = ctrl.ctl(t, "rig", "oc", "ocrig")
	if err == nil || !strings.Contains(out, "profile") || !strings.Contains(out, "clear") {
		t.Errorf("neither --profile nor --clear: %v\n%s", err, out)
	}

	out, err = ctrl.ctl(t, "rig", "oc", "ocrig", "--clear", "--timeout", "30s")
	if err != nil || !strings.Contains(out, "succeeded") {
		t.Errorf("clear: %v\n%s", err, out)
	}

	// GPU rows reach 'rig show' when the rig has GPUs.
	out, err = ctrl.ctl(t, "rig", "show", "ocrig")
	if err != nil {
		t.Fatalf("rig show: %v\n%s", err, out)
	}
	if strings.Contains(agent.output(), "NVML unavailable") {
		if strings.Contains(out, "GPUs:") {
			t.Errorf("GPU rows on a rig without GPUs:\n%s", out)
		}
	} else if !strings.Contains(out, "GPUs:") {
		t.Errorf("NVML present but no GPU rows:\n%s\nagent:\n%s", out, agent.output())
	}
	t.Logf("rig show:\n%s", out)
	agent.stop()
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAgentIdleRSS runs the real agent against a real controller,
// reporting every 10s, for QUARRY_RSS_WAIT (e.g. 1m; the test is skipped
// when unset) and logs its resident memory from /proc/PID/status. VmRSS
// includes the clean, shared pages of the mapped binary and libc; the
// 15 MiB idle budget is checked against the agent's own memory (RssAnon:
// heap, stacks, runtime), which is what grows with its work.
func TestAgentIdleRSS(t *testing.T) {
	v := os.Getenv("QUARRY_RSS_WAIT")
	if v == "" {
		t.Skip("QUARRY_RSS_WAIT not set")
	}
	wait, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("QUARRY_RSS_WAIT: %v", err)
	}
	const budgetMiB = 15
	dir := t.TempDir()
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr)
	agent := startAgent(t, dir, grpcAddr, ctrl.newToken(t, "--rig-name", "idle"), "-report-interval", "10s")
	eventually(t, "rig online", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "idle")
		return ok && r.Online
	})
	pid := agent.cmd.Process.Pid
	start := time.Now()
	for time.Since(start) < wait {
		time.Sleep(10 * time.Second)
		t.Logf("after %s: VmRSS %.1f MiB", time.Since(start).Round(time.Second), vmKiB(t, pid, "VmRSS")/1024)
	}
	rss, hwm := vmKiB(t, pid, "VmRSS")/1024, vmKiB(t, pid, "VmHWM")/1024
	anon, file := vmKiB(t, pid, "RssAnon")/1024, vmKiB(t, pid, "RssFile")/1024
	r, _ := rigByName(t, ctrl.rigs(t), "idle")
	t.Logf("quarry-agent idle after %s (%s reports): VmRSS %.1f MiB (RssAnon %.1f, RssFile %.1f), VmHWM %.1f MiB", wait, r.Reports, rss, anon, file, hwm)
	if anon > budgetMiB {
		t.Errorf("RssAnon %.1f MiB over the %d MiB budget", anon, budgetMiB)
	}
	agent.stop()
}

func vmKiB(t *testing.T, pid int, field string) float64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("%s not in /proc/%d/status", field, pid)
	return 0
}
