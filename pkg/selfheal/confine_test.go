package selfheal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Attack: a build's output (or a symlinked project file) points a
// project-file remediation outside the job's directory, so that the
// controller or a root agent rewrites a file elsewhere. Every variant is
// refused and the outside file is left as it was; the same project inside
// the job directory is healed, so the rule itself does apply.
func TestAttackRemediationEscapesJobDir(t *testing.T) {
	bad, err := os.ReadFile(filepath.Join("testdata", "projects", "cs-bad-xml", "Uptime.csproj"))
	if err != nil {
		t.Fatal(err)
	}
	const msg = `: error : Uptime.csproj: The 'Reference' start tag on line 21 position 6 does not match the end tag of 'ItemGroup'. Line 23, position 5.`
	for _, tt := range []struct {
		name    string
		setup   func(t *testing.T, job, outside string)
		file    string // as the build output names it
		refused bool
	}{
		{"symlinked project file", func(t *testing.T, job, outside string) {
			if err := os.Symlink(filepath.Join(outside, "Uptime.csproj"), filepath.Join(job, "Uptime.csproj")); err != nil {
				t.Fatal(err)
			}
		}, "Uptime.csproj", true},
		{"dot-dot in the build output", func(*testing.T, string, string) {}, "../outside/Uptime.csproj", true},
		{"symlinked directory", func(t *testing.T, job, outside string) {
			if err := os.Symlink(outside, filepath.Join(job, "src")); err != nil {
				t.Fatal(err)
			}
		}, "src/Uptime.csproj", true},
		{"project inside the job dir", func(t *testing.T, job, _ string) {
			if err := os.WriteFile(filepath.Join(job, "Uptime.csproj"), bad, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "Uptime.csproj", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			job, outside := filepath.Join(root, "job"), filepath.Join(root, "outside")
			for _, d := range []string{job, outside} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			victim := filepath.Join(outside, "Uptime.csproj")
			if err := os.WriteFile(victim, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			tt.setup(t, job, outside)
			// The build fails once with the diagnostic, then passes.
			step := Step{Shell: `[ -f healed ] && exit 0; touch healed; echo "` + tt.file + msg + `"; exit 1`}
			spec := Spec{Name: "escape", Dir: job, Build: []Step{step}, RulePacks: []string{"csharp"}, MaxAttempts: 3}
			res, err := Run(t.Context(), spec, Options{Logger: quiet, StateDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			after, err := os.ReadFile(victim)
			if err != nil {
				t.Fatal(err)
			}
			if string(after) != string(bad) {
				t.Errorf("the file outside the job dir was changed:\n%s", after)
			}
			if !tt.refused {
				if res.Status != StatusHealed {
					t.Fatalf("inside the job dir: %s, want healed: %s", res.Status, res.Diagnosis)
				}
				return
			}
			if res.Status != StatusFailed || !strings.Contains(res.Diagnosis, "outside the job directory") {
				t.Fatalf("%s: %s, want failed with the remediation refused as outside the job directory", res.Status, res.Diagnosis)
			}
		})
	}
}

// Writes and snapshots are confined to the job dir, symlinks resolved.
func TestWorkspaceConfinement(t *testing.T) {
	root := t.TempDir()
	job, outside := filepath.Join(root, "job"), filepath.Join(root, "outside")
	for _, d := range []string{job, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(outside, "go.mod"), "module victim\n")
	if err := os.Symlink(filepath.Join(outside, "go.mod"), filepath.Join(job, "go.mod")); err != nil {
		t.Fatal(err)
	}
	w := newWS(t, job, "")
	for _, p := range []string{filepath.Join(job, "go.mod"), filepath.Join(job, "..", "outside", "new.txt"), filepath.Join(outside, "go.mod"), job} {
		if err := w.writeFile(p, []byte("pwned\n")); !errors.Is(err, errOutsideJobDir) {
			t.Errorf("writeFile(%s) = %v, want refused as outside the job directory", p, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "go.mod")); string(b) != "module victim\n" {
		t.Errorf("outside file changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(outside, "new.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was created outside: %v", err)
	}
	ran := false
	w.runTool = func(context.Context, []string, []string) (string, int, error) { ran = true; return "", 0, nil }
	for _, snap := range []string{"../outside/go.mod", "go.mod"} {
		_, err := w.runWhitelisted(t.Context(), map[string]string{"command": "go mod tidy", "snapshot": snap})
		if err == nil || !strings.Contains(err.Error(), "leaves the job directory") || ran {
			t.Errorf("snapshot %s: %v (tool ran: %v), want refused before running", snap, err, ran)
		}
	}
	if err := w.writeFile(filepath.Join(job, "sub", "ok.txt"), []byte("fine\n")); err == nil {
		t.Error("writeFile into a missing subdirectory succeeded")
	}
	if err := w.writeFile(filepath.Join(job, "ok.txt"), []byte("fine\n")); err != nil {
		t.Errorf("writeFile inside the job dir: %v", err)
	}
}

func TestSetEnvAllowlist(t *testing.T) {
	for _, tt := range []struct {
		name, value string
		ok          bool
	}{
		{"GOFLAGS", "-mod=mod", true},
		{"GOFLAGS", "-mod=readonly -trimpath", true},
		{"GOPROXY", "off", true},
		{"GOPROXY", "https://proxy.golang.org,direct", true},
		{"CMAKE_BUILD_PARALLEL_LEVEL", "2", true},
		{"SOURCE_DATE_EPOCH", "1700000000", true},
		{"DOTNET_CLI_TELEMETRY_OPTOUT", "1", true},
		{"LANG", "C.UTF-8", true},
		{"GOFLAGS", "-toolexec=/tmp/evil", false},
		{"GOFLAGS", "-mod=mod -exec=/tmp/evil", false},
		{"GOFLAGS", "-ldflags=-X main.x=1", false},
		{"GOPROXY", "http://attacker.example", false},
		{"GOPROXY", "file:///tmp/evil", false},
		{"GOTOOLCHAIN", "go1.99.0", false},
		{"CGO_ENABLED", "yes", false},
		{"LANG", "../../tmp/x", false},
		{"PATH", "/tmp/evil:/usr/bin", false},
		{"LD_PRELOAD", "/tmp/evil.so", false},
		{"BASH_ENV", "/tmp/evil.sh", false},
		{"MAKEFLAGS", "SHELL=/tmp/evil", false},
		{"CC", "/tmp/evil", false},
		{"FOO", "1", false},
		{"bad name", "1", false},
	} {
		w := &workspace{env: map[string]string{}}
		_, err := w.setEnv(map[string]string{"name": tt.name, "value": tt.value})
		if tt.ok != (err == nil) {
			t.Errorf("set-env %s=%q: %v, want allowed=%v", tt.name, tt.value, err, tt.ok)
		}
		if _, set := w.env[tt.name]; set != tt.ok {
			t.Errorf("set-env %s=%q: variable set=%v, want %v", tt.name, tt.value, set, tt.ok)
		}
	}
}

// Attack: after a job edited a file, the tree is changed so the edited
// path is a symlink out of the job dir; reverting must not write through it.
func TestRevertStaysInJobDir(t *testing.T) {
	root := t.TempDir()
	job, outside, state := filepath.Join(root, "job"), filepath.Join(root, "outside"), t.TempDir()
	write(t, filepath.Join(job, "app.csproj"), "original\n")
	write(t, filepath.Join(outside, "victim"), "victim\n")
	real, err := filepath.EvalSymlinks(job)
	if err != nil {
		t.Fatal(err)
	}
	j, err := openJournal(state, "job1", real)
	if err != nil {
		t.Fatal(err)
	}
	w := &workspace{dir: job, realDir: real, journal: j, env: map[string]string{}}
	if err := w.writeFile(filepath.Join(job, "app.csproj"), []byte("edited\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(job, "app.csproj")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "victim"), filepath.Join(job, "app.csproj")); err != nil {
		t.Fatal(err)
	}
	restored, err := Revert(t.Context(), state, "job1")
	if err == nil || !strings.Contains(err.Error(), "no longer resolves inside the job directory") || len(restored) != 0 {
		t.Fatalf("Revert = %v, %v; want a refusal", restored, err)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "victim\n" {
		t.Errorf("revert wrote outside the job dir: %q", b)
	}
}

// A remediation keeps an edited file's owner, so a job user's next build
// can still rewrite the project the controller (root) edited.
func TestEditKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root")
	}
	job := t.TempDir()
	p := filepath.Join(job, "app.csproj")
	write(t, p, "original\n")
	const uid, gid = 65534, 65534
	if err := os.Lchown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
	w := newWS(t, job, "")
	if err := w.writeFile(p, []byte("edited\n")); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Sys().(*syscall.Stat_t); s.Uid != uid || s.Gid != gid {
		t.Errorf("edited file owned by %d:%d, want %d:%d", s.Uid, s.Gid, uid, gid)
	}
}
