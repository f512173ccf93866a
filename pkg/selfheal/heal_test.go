package selfheal

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		testsupport.RequireTool(t, tool, "apt-get install -y mono-devel cmake, or make tools")
	}
}

func openDB(t *testing.T) *store.DB {
	t.Helper()
	return testsupport.OpenStore(t, filepath.Join(t.TempDir(), "state.db"))
}

// TestHealRealBuilds runs real xbuild/mcs, cmake and go builds on broken
// projects and checks each is healed, or stopped with an actionable diagnosis.
func TestHealRealBuilds(t *testing.T) {
	goBin := testsupport.GoToolchain(t)
	cases := []struct {
		project    string
		tools      []string
		spec       Spec
		wantStatus Status
		wantRules  []string
		wantDiff   string // must appear in the recorded diff
		wantDiag   string // must appear in Diagnosis
		wantOutput string // must appear in the final attempt's output
	}{
		{
			project: "cs-missing-compile", tools: []string{"xbuild", "mono"},
			spec:       csSpec("RigReport"),
			wantStatus: StatusHealed, wantRules: []string{"csharp/source-not-in-project"},
			wantDiff: `+    <Compile Include="HashrateFormatter.cs" />`, wantOutput: "61.50 MH/s",
		},
		{
			project: "cs-missing-reference", tools: []string{"xbuild", "mono"},
			spec:       csSpec("PoolConfig"),
			wantStatus: StatusHealed, wantRules: []string{"csharp/framework-reference-missing"},
			wantDiff: `+    <Reference Include="System.Xml.Linq" />`, wantOutput: "stratum+tcp://pool.example:3333",
		},
		{
			project: "cs-framework", tools: []string{"xbuild", "mono"},
			spec:       csSpec("FanCurve"),
			wantStatus: StatusHealed, wantRules: []string{"csharp/framework-not-installed-xbuild"},
			wantDiff: "+    <TargetFrameworkVersion>v4.8</TargetFrameworkVersion>", wantOutput: "75C -> 90%",
		},
		{
			project: "cs-stale-obj", tools: []string{"xbuild", "mono"},
			spec:       csSpec("Watchdog"),
			wantStatus: StatusHealed, wantRules: []string{"csharp/stale-generated-source"}, wantOutput: "watchdog ok",
		},
		{
			project: "cs-bad-xml", tools: []string{"xbuild", "mono"},
			spec:       csSpec("Uptime"),
			wantStatus: StatusHealed, wantRules: []string{"csharp/project-xml-malformed"},
			wantDiff: `+    <Reference Include="System" />`, wantOutput: "uptime ok",
		},
		{
			project: "cs-type-error", tools: []string{"xbuild", "mono"},
			spec:       csSpec("PayoutCalc"),
			wantStatus: StatusFailed,
			wantDiag:   "Program.cs line 10: CS0029 Cannot implicitly convert type `string' to `int'",
		},
		{
			project: "cmake-missing-dep", tools: []string{"cmake", "cc"},
			spec: Spec{Name: "poolprobe", Build: []Step{{Argv: []string{"cmake", "-S", ".", "-B", "build"}}, {Argv: []string{"cmake", "--build", "build"}}},
				RulePacks: []string{"cmake-cpp"}},
			wantStatus: StatusFailed,
			wantDiag:   "CMake could not find CURL (CMakeLists.txt:5). Install the Debian package libcurl4-openssl-dev",
		},
		{
			project: "go-missing-sum",
			spec: Spec{Name: "sharecount", Build: []Step{{Argv: []string{goBin, "build", "-mod=readonly", "-o", "sharecount", "."}}},
				Test:      []Step{{Argv: []string{"./sharecount"}}},
				RulePacks: []string{"go"},
				Env:       testsupport.OfflineGoEnv(t)},
			wantStatus: StatusHealed, wantRules: []string{"go/missing-go-sum"},
			wantDiff: "+golang.org/x/sync v0.25.0 h1:dJnifr0nMV8/SBnBvdo4eSGGnrc3O4FFx6IqvtLcmRs=", wantOutput: "[0 10 20]",
		},
	}
	db := openDB(t)
	rec, err := NewRecorder(db)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.project, func(t *testing.T) {
			needTools(t, tc.tools...)
			dir := testsupport.CopyProject(t, tc.project)
			spec := tc.spec
			spec.Dir = dir
			if spec.MaxAttempts == 0 {
				spec.MaxAttempts = 4
			}
			var events int
			start := time.Now()
			res, err := Run(t.Context(), spec, Options{Recorder: rec, StateDir: t.TempDir(), Logger: quiet, Progress: func(Event) { events++ }})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			t.Logf("%s: %s after %d attempts in %v", tc.project, res.Status, res.Attempts, time.Since(start).Round(time.Millisecond))
			if res.Status != tc.wantStatus {
				t.Fatalf("status %s, want %s; diagnosis: %s\nlast output:\n%s", res.Status, tc.wantStatus, res.Diagnosis, res.AttemptLog[len(res.AttemptLog)-1].OutputTail)
			}
			var rules []string
			var diff strings.Builder
			for _, a := range res.AttemptLog {
				if a.Remediation != nil {
					rules = append(rules, a.Remediation.Rule)
					diff.WriteString(a.Remediation.Diff)
				}
			}
			if strings.Join(rules, ",") != strings.Join(tc.wantRules, ",") {
				t.Errorf("remediations %v, want %v", rules, tc.wantRules)
			}
			if !strings.Contains(diff.String(), tc.wantDiff) {
				t.Errorf("diff lacks %q:\n%s", tc.wantDiff, diff.String())
			}
			if !strings.Contains(res.Diagnosis, tc.wantDiag) {
				t.Errorf("diagnosis %q lacks %q", res.Diagnosis, tc.wantDiag)
			}
			last := res.AttemptLog[len(res.AttemptLog)-1]
			if !strings.Contains(last.OutputTail, tc.wantOutput) {
				t.Errorf("final output lacks %q:\n%s", tc.wantOutput, last.OutputTail)
			}
			if events == 0 {
				t.Error("no progress events")
			}
			job, attempts, err := rec.Load(t.Context(), res.ID)
			if err != nil {
				t.Fatal(err)
			}
			if job.Status != tc.wantStatus || len(attempts) != res.Attempts || len(attempts) == 0 {
				t.Errorf("recorded %s with %d attempts, want %s with %d", job.Status, len(attempts), tc.wantStatus, res.Attempts)
			}
		})
	}
}

var quiet = slog.New(slog.DiscardHandler)

func csSpec(name string) Spec {
	return Spec{
		Name:      name,
		Build:     []Step{{Argv: []string{"xbuild", "/nologo", "/verbosity:minimal"}}},
		Test:      []Step{{Shell: "mono bin/Debug/" + name + ".exe"}},
		RulePacks: []string{"csharp"},
	}
}

// TestRevertRestoresProject heals a project for real, then reverts it.
func TestRevertRestoresProject(t *testing.T) {
	needTools(t, "xbuild", "mono")
	dir := testsupport.CopyProject(t, "cs-missing-reference")
	orig, err := os.ReadFile(filepath.Join(dir, "PoolConfig.csproj"))
	if err != nil {
		t.Fatal(err)
	}
	spec := csSpec("PoolConfig")
	spec.Dir = dir
	state := t.TempDir()
	res, err := Run(t.Context(), spec, Options{StateDir: state, Logger: quiet})
	if err != nil || res.Status != StatusHealed {
		t.Fatalf("Run: %v %s %s", err, res.Status, res.Diagnosis)
	}
	healed, _ := os.ReadFile(filepath.Join(dir, "PoolConfig.csproj"))
	if bytes.Equal(healed, orig) {
		t.Fatal("project unchanged by healing")
	}
	restored, err := Revert(context.Background(), state, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	now, _ := os.ReadFile(filepath.Join(dir, "PoolConfig.csproj"))
	if !bytes.Equal(now, orig) || len(restored) != 1 {
		t.Errorf("after revert (%v) project differs from original:\n%s", restored, UnifiedDiff("PoolConfig.csproj", string(orig), string(now)))
	}
	if _, err := Revert(context.Background(), state, "no-such-job"); err == nil {
		t.Error("Revert of unknown job succeeded")
	}
}
