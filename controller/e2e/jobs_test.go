package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type jobJSON struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Where     string `json:"where"`
	Diagnosis string `json:"diagnosis"`
	Runs      []struct {
		Target     string `json:"target"`
		RigID      string `json:"rigId"`
		CommandID  string `json:"commandId"`
		Status     string `json:"status"`
		Attempts   int    `json:"attempts"`
		AttemptLog []struct {
			Number      int    `json:"number"`
			ExitCode    int    `json:"exitCode"`
			OutputTail  string `json:"outputTail"`
			Diagnostics []struct {
				Tool, Code, Message string
			} `json:"diagnostics"`
			Remediation *struct {
				Rule string `json:"rule"`
				Diff string `json:"diff"`
			} `json:"remediation"`
		} `json:"attemptLog"`
	} `json:"runs"`
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if de.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A job for agent:name=... runs on the real agent binary, which heals the
// build there and reports its attempts back; quarryctl shows them.
func TestJobRunsOnAgentAndReportsAttempts(t *testing.T) {
	out, err := exec.Command("go", "env", "GOROOT", "GOMODCACHE").Output()
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	env := strings.Fields(string(out))
	goBin := filepath.Join(env[0], "bin", "go")
	if _, err := os.Stat(filepath.Join(env[1], "golang.org", "x", "sync@v0.25.0")); err != nil {
		t.Skip("golang.org/x/sync v0.25.0 is not in the module cache; the offline heal needs it")
	}

	dir := t.TempDir()
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr)
	rigDir := filepath.Join(dir, "rig")
	if err := os.MkdirAll(rigDir, 0o700); err != nil {
		t.Fatal(err)
	}
	startAgent(t, rigDir, grpcAddr, ctrl.newToken(t, "--rig-name", "builder-1"))
	eventually(t, "rig online", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "builder-1")
		return ok && r.Online
	})

	project := filepath.Join(rigDir, "src", "sharecount")
	copyTree(t, filepath.Join("..", "..", "pkg", "selfheal", "testdata", "projects", "go-missing-sum"), project)
	spec := fmt.Sprintf(`name: sharecount
dir: %s
build:
  - [%s, build, -mod=readonly, -o, sharecount, .]
test:
  - ./sharecount
rule_packs: [go]
where: agent:name=builder-*
env:
  GOPROXY: "off"
  GOSUMDB: "off"
  GOFLAGS: -mod=mod
  GOTOOLCHAIN: local
  PATH: %s:/usr/bin:/bin
`, project, goBin, filepath.Dir(goBin))
	specFile := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(specFile, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}

	// --follow streams progress and exits 0 only when every run passed.
	follow, err := ctrl.ctl(t, "job", "run", "-f", specFile, "--follow", "--timeout", "2m")
	if err != nil {
		t.Fatalf("job run --follow: %v\n%s", err, follow)
	}
	for _, want := range []string{"[builder-1] dispatched: queued as command", "[builder-1] attempt 1: build step", "remediation go/missing-go-sum", "job healed"} {
		if !strings.Contains(follow, want) {
			t.Errorf("--follow output lacks %q:\n%s", want, follow)
		}
	}
	id := strings.Fields(strings.TrimPrefix(strings.SplitN(follow, "\n", 2)[0], "job "))[0]

	showJSON, err := ctrl.ctl(t, "job", "show", id, "-o", "json")
	if err != nil {
		t.Fatalf("job show: %v\n%s", err, showJSON)
	}
	var j jobJSON
	if err := json.Unmarshal([]byte(showJSON), &j); err != nil {
		t.Fatalf("job show json: %v\n%s", err, showJSON)
	}
	if j.ID != id || j.Status != "healed" || len(j.Runs) != 1 {
		t.Fatalf("job %s %s with %d runs, want %s healed with 1 run:\n%s", j.ID, j.Status, len(j.Runs), id, showJSON)
	}
	r := j.Runs[0]
	if r.Target != "builder-1" || r.Status != "healed" || r.Attempts != 2 || len(r.AttemptLog) != 2 || r.CommandID == "" {
		t.Fatalf("run = %+v", r)
	}
	first := r.AttemptLog[0]
	if first.ExitCode == 0 || first.Remediation == nil || first.Remediation.Rule != "go/missing-go-sum" ||
		!strings.Contains(first.Remediation.Diff, "+golang.org/x/sync v0.25.0 h1:") || len(first.Diagnostics) == 0 {
		t.Errorf("first attempt on the rig = %+v", first)
	}
	if !strings.Contains(r.AttemptLog[1].OutputTail, "[0 10 20]") {
		t.Errorf("healed attempt output %q", r.AttemptLog[1].OutputTail)
	}

	table, err := ctrl.ctl(t, "job", "show", id)
	if err != nil || !strings.Contains(table, "Remediation go/missing-go-sum") || !strings.Contains(table, "Run on builder-1") {
		t.Errorf("job show: %v\n%s", err, table)
	}
	list, err := ctrl.ctl(t, "job", "list")
	if err != nil || !strings.Contains(list, id) || !strings.Contains(list, "healed") {
		t.Errorf("job list: %v\n%s", err, list)
	}
	logs, err := ctrl.ctl(t, "job", "logs", id)
	if err != nil || !strings.Contains(logs, "=== rig builder-1") || !strings.Contains(logs, "missing go.sum entry") {
		t.Errorf("job logs: %v\n%s", err, logs)
	}

	// Revert runs on the rig too: go.mod is restored and go.sum, which did
	// not exist, is removed.
	rev, err := ctrl.ctl(t, "job", "revert", id)
	if err != nil || !strings.Contains(rev, "builder-1: restored 2 file(s)") || !strings.Contains(rev, "go.sum") {
		t.Errorf("job revert: %v\n%s", err, rev)
	}
	if _, err := os.Stat(filepath.Join(project, "go.sum")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("go.sum still on the rig after revert: %v", err)
	}
	if out, err := ctrl.ctl(t, "job", "cancel", id); err == nil || !strings.Contains(out, "already ended") {
		t.Errorf("cancel of a finished job: %v\n%s", err, out)
	}
}

// A controller killed while a rig builds follows the job again after its
// restart, so the job ends with the rig's answer instead of staying
// "running" forever.
func TestRigJobSurvivesControllerKill(t *testing.T) {
	dir := t.TempDir()
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr)
	rigDir := filepath.Join(dir, "rig")
	if err := os.MkdirAll(filepath.Join(rigDir, "src"), 0o700); err != nil {
		t.Fatal(err)
	}
	startAgent(t, rigDir, grpcAddr, ctrl.newToken(t, "--rig-name", "builder-1"))
	eventually(t, "rig online", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "builder-1")
		return ok && r.Online
	})
	spec := fmt.Sprintf("name: slow\ndir: %s\nbuild:\n  - touch started; sleep 2; echo built\nrule_packs: []\nwhere: agent:name=builder-1\n", filepath.Join(rigDir, "src"))
	specFile := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(specFile, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := ctrl.ctl(t, "job", "run", "-f", specFile, "-o", "json")
	if err != nil {
		t.Fatalf("job run: %v\n%s", err, out)
	}
	var j jobJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the rig to start building", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(rigDir, "src", "started"))
		return err == nil
	})
	ctrl.kill()
	ctrl = startController(t, dir, grpcAddr, httpAddr)
	var final jobJSON
	eventually(t, "the job to end after the restart", time.Minute, func() bool {
		out, err := ctrl.ctl(t, "job", "show", j.ID, "-o", "json")
		if err != nil {
			return false
		}
		final = jobJSON{}
		return json.Unmarshal([]byte(out), &final) == nil && final.Status != "running" && final.Status != "pending"
	})
	// The rig's stream ended with the controller, which stops the build
	// there; what matters is that the rig's answer is recorded.
	if len(final.Runs) != 1 || final.Runs[0].Target != "builder-1" || (final.Status != "canceled" && final.Status != "succeeded") {
		t.Errorf("job after the restart = %+v", final)
	}
	t.Logf("job ended %s: %s", final.Status, final.Diagnosis)
}
