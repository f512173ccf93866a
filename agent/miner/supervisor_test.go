package miner

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
)

func TestStartStop(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	if err := h.s.Start(ctx, sheetFor(testMiner)); err != nil {
		t.Fatal(err)
	}
	st := h.s.Status()
	if st.State != StateRunning || st.PID == 0 || st.Pool != "stratum+tcp://pool-a.example:3333" {
		t.Fatalf("status after start = %+v", st)
	}
	if err := syscall.Kill(-st.PID, 0); err != nil {
		t.Fatalf("miner group %d not there: %v", st.PID, err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "miner.pid")); err != nil {
		t.Fatalf("pidfile missing while running: %v", err)
	}
	waitTail(t, h.s, "testminer")
	if err := h.s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	assertGroupGone(t, st.PID)
	h.ev.waitFor(t, EventStopped)
	if h.ev.count(EventKilled) != 0 {
		t.Error("a miner that honours SIGTERM was SIGKILLed")
	}
	if _, err := os.Stat(filepath.Join(h.dir, "miner.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pidfile left after stop: %v", err)
	}
	waitTail(t, h.s, "got terminated")
	if st := h.s.Status(); st.State != StateIdle || st.LastExit != "exited with code 0" {
		t.Errorf("status after stop = %+v", st)
	}
	// Stopping twice is harmless.
	if err := h.s.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestCrashRestartsWithCappedBackoff(t *testing.T) {
	h := newHarness(t, Config{
		Launcher:   argsFrom("-crash-after", "20ms"),
		BackoffMin: 30 * time.Millisecond, BackoffMax: 120 * time.Millisecond,
		StableAfter: time.Hour,
	})
	if err := h.s.Start(context.Background(), sheetFor(testMiner)); err != nil {
		t.Fatal(err)
	}
	var delays []string
	var pids []string
	for range 5 {
		e := h.ev.waitFor(t, EventExited)
		if e.Fields["exit"] != "exited with code 3" {
			t.Errorf("exit = %q", e.Fields["exit"])
		}
		delays = append(delays, e.Fields["restart_in"])
		pids = append(pids, e.Fields["pid"])
	}
	want := []string{"30ms", "60ms", "120ms", "120ms", "120ms"}
	if strings.Join(delays, " ") != strings.Join(want, " ") {
		t.Errorf("backoff delays = %v, want %v", delays, want)
	}
	for _, p := range pids {
		pid, _ := strconv.Atoi(p)
		assertGroupGone(t, pid)
	}
	if pids[0] == pids[1] {
		t.Error("restart reused the same process")
	}
	if got := h.s.Status().Restarts; got < 5 {
		t.Errorf("Restarts = %d, want >= 5", got)
	}
}

func TestBackoffResetsAfterStableRun(t *testing.T) {
	h := newHarness(t, Config{
		Launcher:   argsFrom("-crash-after", "150ms"),
		BackoffMin: 10 * time.Millisecond, BackoffMax: time.Second,
		StableAfter: 100 * time.Millisecond,
	})
	if err := h.s.Start(context.Background(), sheetFor(testMiner)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if e := h.ev.waitFor(t, EventExited); e.Fields["restart_in"] != "10ms" {
			t.Errorf("after a stable run the delay is %s, want the minimum 10ms", e.Fields["restart_in"])
		}
	}
}

func TestIgnoredSIGTERMGetsSIGKILL(t *testing.T) {
	h := newHarness(t, Config{Launcher: argsFrom("-ignore-term"), StopGrace: 200 * time.Millisecond})
	if err := h.s.Start(context.Background(), sheetFor(testMiner)); err != nil {
		t.Fatal(err)
	}
	pid := h.s.Status().PID
	waitTail(t, h.s, "testminer")
	if err := h.s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := h.ev.waitFor(t, EventKilled)
	if e.Fields["grace"] != "200ms" {
		t.Errorf("killed event fields = %v", e.Fields)
	}
	assertGroupGone(t, pid)
	if got := h.s.Status().LastExit; got != "killed by SIGKILL" {
		t.Errorf("LastExit = %q", got)
	}
}

// A miner killed from outside is reported by signal name, once:
// "miner killed by SIGKILL after 1.2s", not "killed by killed".
func TestExitBySignalWording(t *testing.T) {
	h := newHarness(t, Config{Launcher: argsFrom()})
	if err := h.s.Start(context.Background(), sheetFor(testMiner)); err != nil {
		t.Fatal(err)
	}
	waitTail(t, h.s, "testminer")
	if err := syscall.Kill(h.s.Status().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e := h.ev.waitFor(t, EventExited)
	if !regexp.MustCompile(`^miner killed by SIGKILL after [0-9.]+m?s$`).MatchString(e.Message) || e.Fields["exit"] != "killed by SIGKILL" {
		t.Errorf("exit event %q %v", e.Message, e.Fields)
	}
}

func TestSignalName(t *testing.T) {
	for sig, want := range map[syscall.Signal]string{
		syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM",
		syscall.SIGSEGV: "SIGSEGV (segmentation fault)", syscall.Signal(40): "signal 40 (signal 40)",
	} {
		if got := signalName(sig); got != want {
			t.Errorf("signalName(%d) = %q, want %q", int(sig), got, want)
		}
	}
}

func TestForkedChildrenDoNotSurvive(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		stop bool
	}{
		{"stop", []string{"-fork"}, true},
		{"crash", []string{"-fork", "-crash-after", "100ms"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pids")
			h := newHarness(t, Config{
				Launcher:  argsFrom(append(tc.args, "-pid-file", pidFile)...),
				StopGrace: 200 * time.Millisecond, BackoffMin: time.Hour, BackoffMax: time.Hour,
			})
			if err := h.s.Start(context.Background(), sheetFor(testMiner)); err != nil {
				t.Fatal(err)
			}
			pids := readPids(t, pidFile, 2)
			if tc.stop {
				if err := h.s.Stop(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				h.ev.waitFor(t, EventExited)
			}
			// The child ignores SIGTERM and was reparented when its
			// parent died; only a group-wide signal reaches it.
			assertPidGone(t, pids[1])
			assertGroupGone(t, pids[0])
		})
	}
}

func TestChecksumMismatchRefused(t *testing.T) {
	h := newHarness(t, Config{})
	bad := sheetFor(testMiner)
	bad.Miner.SHA256 = strings.Repeat("ab", 32)
	err := h.s.Start(context.Background(), bad)
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("Start = %v, want *ChecksumError", err)
	}
	if !strings.Contains(err.Error(), "refusing to run") || ce.Want != bad.Miner.SHA256 {
		t.Errorf("error = %v", err)
	}
	e := h.ev.waitFor(t, EventChecksumMismatch)
	if e.Fields["path"] != testMiner {
		t.Errorf("event fields = %v", e.Fields)
	}
	if st := h.s.Status(); st.State != StateFailed || st.PID != 0 {
		t.Errorf("status = %+v", st)
	}
	if h.ev.count(EventStarted) != 0 {
		t.Error("a mismatched binary was started")
	}
	if _, err := os.Stat(filepath.Join(h.dir, "miner.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Error("pidfile written for a refused binary")
	}
	// A corrected sheet recovers without a new supervisor.
	if err := h.s.Start(context.Background(), sheetFor(testMiner)); err != nil {
		t.Fatalf("Start with the right sha: %v", err)
	}
	if st := h.s.Status(); st.State != StateRunning {
		t.Errorf("status = %+v", st)
	}
}

func TestMissingBinary(t *testing.T) {
	h := newHarness(t, Config{})
	sheet := sheetFor(testMiner)
	sheet.Miner.Path = filepath.Join(t.TempDir(), "nope")
	if err := h.s.Start(context.Background(), sheet); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("Start = %v", err)
	}
	h.ev.waitFor(t, EventStartFailed)
}

func TestNextPoolRotates(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	if err := h.s.Start(ctx, sheetFor(testMiner)); err != nil {
		t.Fatal(err)
	}
	waitTail(t, h.s, "pool=stratum+tcp://pool-a.example:3333")
	first := h.s.Status().PID
	if err := h.s.NextPool(ctx, "no shares for 10m"); err != nil {
		t.Fatal(err)
	}
	e := h.ev.waitFor(t, EventPoolSwitched)
	if e.Fields["to"] != "stratum+tcp://pool-b.example:3333" || e.Fields["reason"] != "no shares for 10m" {
		t.Errorf("pool switched event = %v", e.Fields)
	}
	st := h.s.Status()
	if st.Pool != "stratum+tcp://pool-b.example:3333" || st.PoolIndex != 1 || st.PID == first {
		t.Errorf("status after NextPool = %+v", st)
	}
	assertGroupGone(t, first)
	waitTail(t, h.s, "pool=stratum+tcp://pool-b.example:3333")
	if err := h.s.NextPool(ctx, "again"); err != nil {
		t.Fatal(err)
	}
	if st := h.s.Status(); st.Pool != "stratum+tcp://pool-a.example:3333" || st.PoolIndex != 0 {
		t.Errorf("NextPool did not wrap around: %+v", st)
	}
}

func TestRestartAndRestartAfterStop(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	if err := h.s.Restart(ctx, "x"); err == nil {
		t.Error("Restart with no sheet succeeded")
	}
	if err := h.s.Start(ctx, sheetFor(testMiner)); err != nil {
		t.Fatal(err)
	}
	first := h.s.Status().PID
	if err := h.s.Restart(ctx, "hashrate low"); err != nil {
		t.Fatal(err)
	}
	if e := h.ev.waitFor(t, EventRestarting); e.Fields["reason"] != "hashrate low" {
		t.Errorf("restarting event = %v", e.Fields)
	}
	second := h.s.Status().PID
	if second == first {
		t.Fatal("Restart kept the same process")
	}
	assertGroupGone(t, first)
	if err := h.s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Restart(ctx, "cooled down"); err != nil {
		t.Fatal(err)
	}
	if st := h.s.Status(); st.State != StateRunning || st.PID == second {
		t.Errorf("Restart after Stop: %+v", st)
	}
}

func TestLeftoverFromEarlierAgentIsKilled(t *testing.T) {
	dataDir := t.TempDir()
	agent := exec.Command(os.Args[0], "-test.run=^$")
	agent.Env = append(os.Environ(), "QUARRY_TEST_AGENT="+dataDir, "QUARRY_TEST_MINER="+testMiner)
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		agent.Process.Kill()
		agent.Wait()
		t.Fatalf("fake agent said %q, %v", line, err)
	}
	pgid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "ready ")))
	// The agent dies without stopping its miner.
	agent.Process.Kill()
	agent.Wait()
	if err := syscall.Kill(-pgid, 0); err != nil {
		t.Fatalf("orphaned miner group %d should still run: %v", pgid, err)
	}

	h := newHarness(t, Config{DataDir: dataDir, StopGrace: 200 * time.Millisecond})
	e := h.ev.waitFor(t, EventLeftoverKilled)
	if e.Fields["pgid"] != strconv.Itoa(pgid) {
		t.Errorf("leftover event = %v", e.Fields)
	}
	assertGroupGone(t, pgid)
	if _, err := os.Stat(filepath.Join(dataDir, "miner.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Error("stale pidfile kept")
	}
}

func TestLeftoverWithReusedPidIsLeftAlone(t *testing.T) {
	// A live process whose start time differs from the record stands for
	// a pid that was reused after our miner ended.
	other := exec.Command("sleep", "30")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	ticks, err := procStartTicks(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec := pidRecord{PID: other.Process.Pid, PGID: other.Process.Pid, StartTicks: ticks + 1, Path: "/x"}
	if err := writePidRecord(filepath.Join(dir, "miner.pid"), rec); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{DataDir: dir})
	if h.ev.count(EventLeftoverKilled) != 0 {
		t.Error("killed a process that only shares the pid")
	}
	if err := syscall.Kill(other.Process.Pid, 0); err != nil {
		t.Errorf("unrelated process gone: %v", err)
	}
}

func TestCorruptPidfileIgnored(t *testing.T) {
	for _, content := range []string{"{not json", `{"pid":1,"pgid":1}`, `{"pid":0}`} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "miner.pid"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, Config{DataDir: dir})
		if err := h.s.Start(context.Background(), sheetFor(testMiner)); err != nil {
			t.Fatalf("pidfile %q blocked start: %v", content, err)
		}
	}
}

func TestLogRotationBounded(t *testing.T) {
	const maxBytes, files = 4096, 3
	h := newHarness(t, Config{Launcher: argsFrom("-spam", "2000"), LogMaxBytes: maxBytes, LogFiles: files})
	if err := h.s.Start(context.Background(), sheetFor(testMiner)); err != nil {
		t.Fatal(err)
	}
	waitTail(t, h.s, "pool=") // printed after the spam
	got := h.s.LogFiles()
	if len(got) != files {
		t.Errorf("log files = %v, want %d", got, files)
	}
	entries, _ := os.ReadDir(filepath.Join(h.dir, "logs"))
	if len(entries) != files {
		t.Errorf("log dir holds %d entries", len(entries))
	}
	for _, p := range got {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > maxBytes {
			t.Errorf("%s is %d bytes, over %d", p, st.Size(), maxBytes)
		}
	}
	tail, err := h.s.Tail(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(tail) != 3 || tail[0] != strings.Repeat("x", 99) || !strings.HasPrefix(tail[2], "pool=") {
		t.Errorf("Tail(3) = %q", tail)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Launcher: argsFrom()}, "DataDir"},
		{Config{DataDir: "/tmp"}, "Launcher"},
		{Config{DataDir: "/tmp", Launcher: argsFrom(), BackoffMin: time.Minute, BackoffMax: time.Second}, "BackoffMax"},
		{Config{DataDir: "/tmp", Launcher: argsFrom(), LogFiles: -1}, "LogFiles"},
		{Config{DataDir: "/tmp", Launcher: argsFrom(), StopGrace: -1}, "negative"},
	} {
		if _, err := New(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// The leader of a leftover group is gone but a child it forked lives on in
// the group: the kernel keeps the group id reserved, so it is still ours.
func TestLeftoverGroupWithoutLeaderIsKilled(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	leader := exec.Command(testMiner, "-fork", "-pid-file", pidFile)
	leader.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	pids := readPids(t, pidFile, 2)
	ticks, err := procStartTicks(pids[0])
	if err != nil {
		t.Fatal(err)
	}
	leader.Process.Kill()
	leader.Wait()
	if err := writePidRecord(filepath.Join(dir, "miner.pid"), pidRecord{PID: pids[0], PGID: pids[0], StartTicks: ticks}); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{DataDir: dir, StopGrace: 100 * time.Millisecond})
	h.ev.waitFor(t, EventLeftoverKilled)
	assertPidGone(t, pids[1])
	assertGroupGone(t, pids[0])
}

// The supervisor itself refuses a binary outside MinersDir (here a copy of
// the test miner with the right sha256), whatever the agent checked
// before: it fails without retrying and runs nothing.
func TestBinaryOutsideMinersDirRefused(t *testing.T) {
	h := newHarness(t, Config{})
	b, err := os.ReadFile(testMiner)
	if err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "testminer")
	if err := os.WriteFile(outside, b, 0o755); err != nil {
		t.Fatal(err)
	}
	sheet := sheetFor(outside)
	err = h.s.Start(context.Background(), sheet)
	if !errors.Is(err, flightsheet.ErrMinerPath) || !strings.Contains(err.Error(), "outside the miners directory") {
		t.Fatalf("Start = %v, want a miners_dir refusal", err)
	}
	h.ev.waitFor(t, EventBinaryRefused)
	if st := h.s.Status(); st.State != StateFailed || st.PID != 0 {
		t.Errorf("status after refusal = %+v, want failed with no process", st)
	}
}
