package selfheal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sitePacks(t *testing.T) *PackSet {
	t.Helper()
	ps, err := LoadPacks(filepath.Join("testdata", "packs"))
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestRunStops(t *testing.T) {
	cases := []struct {
		name     string
		build    string
		max      int
		status   Status
		attempts int
		diag     []string
	}{
		{"loop guard: same failure after remediation", `echo "main.go:3:1: needs FOO"; exit 1`, 5, StatusFailed, 2,
			[]string{"same failure came back after site/needs-foo", "main.go:3:1: error: needs FOO"}},
		{"healed by set-env", `[ "$SOURCE_DATE_EPOCH" = 1 ] || { echo "main.go:3:1: needs FOO"; exit 1; }`, 5, StatusHealed, 2,
			[]string{"set SOURCE_DATE_EPOCH=1"}},
		{"attempt limit", `echo "main.go:3:1: needs FOO"; exit 1`, 1, StatusFailed, 1,
			[]string{"gave up after 1 attempts", "needs FOO"}},
		{"unknown action is reported, not run", `echo "main.go:1:1: please wipe"; exit 1`, 3, StatusFailed, 1,
			[]string{`action "shell-exec", which is not in the safe set; not executed`}},
		{"command off the whitelist is refused", `echo "main.go:1:1: please curl"; exit 1`, 3, StatusFailed, 1,
			[]string{`is not on the whitelist`}},
		{"no diagnostics", `echo something went wrong; exit 3`, 3, StatusFailed, 1,
			[]string{`exited 3 without a recognised diagnostic`}},
		{"missing program", ``, 3, StatusFailed, 1, []string{"exited 127"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			step := Step{Shell: tc.build}
			if tc.build == "" {
				step = Step{Argv: []string{"/nonexistent/xbuild"}}
			}
			spec := Spec{Name: "t", Dir: t.TempDir(), Build: []Step{step}, RulePacks: []string{"site"}, MaxAttempts: tc.max}
			res, err := Run(t.Context(), spec, Options{Packs: sitePacks(t), Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tc.status || res.Attempts != tc.attempts {
				t.Fatalf("%s after %d attempts, want %s after %d: %s", res.Status, res.Attempts, tc.status, tc.attempts, res.Diagnosis)
			}
			for _, want := range tc.diag {
				if !strings.Contains(res.Diagnosis, want) {
					t.Errorf("diagnosis %q lacks %q", res.Diagnosis, want)
				}
			}
		})
	}
}

// TestRunCancelKillsProcessGroup checks that cancelling kills a grandchild
// the build started, not just the shell.
func TestRunCancelKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	spec := Spec{Name: "hang", Dir: dir, Build: []Step{{Shell: "sleep 300 & echo $! > child.pid; echo started; wait"}}, MaxAttempts: 1}
	progress := func(e Event) {
		if e.Kind == EventOutput && e.Text == "started" {
			cancel()
		}
	}
	res, err := Run(ctx, spec, Options{Progress: progress, Logger: quiet})
	if !errors.Is(err, context.Canceled) || res.Status != StatusCanceled {
		t.Fatalf("Run = %v, %s; want context.Canceled", err, res.Status)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d survived cancellation", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// A zombie is dead; it only waits to be reaped by init.
	f := strings.Fields(string(st))
	return len(f) > 2 && f[2] != "Z"
}

func TestRunRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		spec Spec
		want string
	}{
		{"invalid spec", Spec{Name: "x", Dir: dir}, "build: needs at least one step"},
		{"unknown pack", Spec{Name: "x", Dir: dir, Build: []Step{{Shell: "true"}}, RulePacks: []string{"cobol"}}, `rule pack "cobol" is not loaded`},
		{"missing dir", Spec{Name: "x", Dir: filepath.Join(dir, "nope"), Build: []Step{{Shell: "true"}}}, "is not a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(t.Context(), tc.spec, Options{Logger: quiet})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSerialStep(t *testing.T) {
	cases := []struct{ in, want Step }{
		{Step{Argv: []string{"make", "-j8", "all"}}, Step{Argv: []string{"make", "all", "-j1"}}},
		{Step{Argv: []string{"make", "-j", "8"}}, Step{Argv: []string{"make", "-j1"}}},
		{Step{Argv: []string{"cmake", "--build", "build", "--parallel", "16"}}, Step{Argv: []string{"cmake", "--build", "build", "--parallel", "1"}}},
		{Step{Argv: []string{"msbuild", "/m", "x.sln"}}, Step{Argv: []string{"msbuild", "x.sln", "/m:1"}}},
		{Step{Argv: []string{"xbuild", "x.sln"}}, Step{Argv: []string{"xbuild", "x.sln"}}},
		{Step{Shell: "make -j 16 && make install"}, Step{Shell: "make -j1 && make install"}},
		{Step{Shell: "msbuild /m:8 x.sln"}, Step{Shell: "msbuild /m:1 x.sln"}},
	}
	for _, tc := range cases {
		if got := serialStep(tc.in); got.String() != tc.want.String() {
			t.Errorf("serialStep(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestLowerParallelismAfterOOM replays a compiler OOM kill once, then checks
// the rebuild ran with one job.
func TestLowerParallelismAfterOOM(t *testing.T) {
	dir := t.TempDir()
	build := `if [ "$MAKEFLAGS" != "-j1" ]; then echo "c++: fatal error: Killed signal terminated program cc1plus"; exit 2; fi; echo "args: $*"`
	spec := Spec{Name: "oom", Dir: dir, Build: []Step{{Shell: build}}, RulePacks: []string{"cmake-cpp"}}
	res, err := Run(t.Context(), spec, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusHealed || res.AttemptLog[0].Remediation.Action != ActionLowerParallelism {
		t.Fatalf("%s: %s", res.Status, res.Diagnosis)
	}
}

// TestHealCountsOnlyWhenChecksHold: a remediation that makes the build and
// tests pass but breaks the job's own check is not a heal.
func TestHealCountsOnlyWhenChecksHold(t *testing.T) {
	build := `[ "$SOURCE_DATE_EPOCH" = 1 ] || { echo "main.go:3:1: needs FOO"; exit 1; }; echo built`
	cases := []struct {
		name   string
		check  string
		status Status
		diag   string
	}{
		{"check holds", `echo checked`, StatusHealed, "set SOURCE_DATE_EPOCH=1"},
		{"check fails", `[ "$SOURCE_DATE_EPOCH" = 2 ]`, StatusFailed, "the job's own check does not hold after site/needs-foo"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := Spec{Name: "t", Dir: t.TempDir(), Build: []Step{{Shell: build}}, Test: []Step{{Shell: "echo tested"}},
				Checks: []Step{{Shell: tc.check}}, RulePacks: []string{"site"}, MaxAttempts: 4}
			res, err := Run(t.Context(), spec, Options{Packs: sitePacks(t), Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tc.status || !strings.Contains(res.Diagnosis, tc.diag) {
				t.Fatalf("%s: %s, want %s with %q", tc.name, res.Status, tc.status, tc.diag)
			}
			if res.Attempts != 2 {
				t.Errorf("%d attempts, want 2 (a failing check is never remediated)", res.Attempts)
			}
			if !strings.Contains(res.BuildOutputBefore, "needs FOO") || !strings.Contains(res.BuildOutputAfter, "built") {
				t.Errorf("build output before %q / after %q not recorded", res.BuildOutputBefore, res.BuildOutputAfter)
			}
		})
	}
}
