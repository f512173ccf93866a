package e2e

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// jobsAttackUser is the unprivileged user controller jobs run as here.
const jobsAttackUser = "nobody"

// jobsAttackWorkspace makes a controller job workspace nobody can reach and
// a job directory in it that belongs to nobody, or skips when this machine
// cannot switch users.
func jobsAttackWorkspace(t *testing.T, job string) (ws, dir string) {
	t.Helper()
	u, err := user.Lookup(jobsAttackUser)
	if err != nil {
		t.Skipf("no user %s: %v", jobsAttackUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if os.Geteuid() != 0 || uid == os.Geteuid() {
		t.Skip("controller jobs switch to another user, which needs root")
	}
	ws, err = os.MkdirTemp("", "quarry-e2e-jobs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(ws) })
	dir = filepath.Join(ws, job)
	for _, d := range []string{ws, dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return ws, dir
}

// jobsAttackLogin issues an admin-API token of the given role and returns
// a quarryctl that uses only that credential (no local admin token).
func jobsAttackLogin(t *testing.T, ctrl *controller, name, role string) func(args ...string) (string, error) {
	t.Helper()
	out, err := ctrl.ctl(t, "token", "admin", name, "--role", role)
	if err != nil {
		t.Fatalf("token admin: %v %s", err, out)
	}
	tok := strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]
	home := t.TempDir()
	cfg := filepath.Join(home, "quarryctl.yaml")
	run := func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(bins(t), "quarryctl"), append([]string{"--config", cfg, "--data-dir", filepath.Join(home, "none")}, args...)...)
		cmd.Dir = home
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := run("login", "--controller", ctrl.grpc, "--token", tok, "--ca", filepath.Join(ctrl.dir, "quarry-data", "ca.crt")); err != nil || !strings.Contains(out, "role "+role) {
		t.Fatalf("login as %s: %v %s", role, err, out)
	}
	return run
}

// Attack: an operator runs a build job on the controller that prints the
// environment and cats the data dir (admin token, CA key) to become admin.
// Refused for the operator; even an admin's job runs as an unprivileged
// user with a clean environment and sees no controller secret.
func TestAttackOperatorControllerJobReadsSecrets(t *testing.T) {
	const stripeKey = "sk_test_e2e_never_in_a_job_0123456789"
	t.Setenv("QUARRY_BILLING_STRIPE_KEY", stripeKey)
	ws, jobDir := jobsAttackWorkspace(t, "steal")
	dir := t.TempDir()
	ctrl := startController(t, dir, freePort(t), freePort(t),
		"-jobs-controller-jobs", "-jobs-run-as", jobsAttackUser, "-jobs-workspace", ws)
	dataDir := filepath.Join(dir, "quarry-data")

	// The secrets the job goes for, to look for them in everything it shows.
	secrets := map[string]string{"Stripe key": stripeKey}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	secrets["admin token"] = strings.TrimSpace(string(tok))
	var keyFiles []string
	_ = filepath.WalkDir(dataDir, func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() && strings.HasSuffix(p, ".key") {
			keyFiles = append(keyFiles, p)
			b, _ := os.ReadFile(p)
			secrets[p] = strings.TrimSpace(string(b))
		}
		return nil
	})
	if len(keyFiles) == 0 {
		t.Fatal("no CA key file in the data dir to aim at")
	}

	spec := filepath.Join(dir, "steal.yaml")
	body := "name: steal\ndir: " + jobDir + "\nbuild:\n" +
		"  - id -u; env; cat " + filepath.Join(dataDir, "admin.token") + " " + strings.Join(keyFiles, " ") +
		"; cat /proc/" + strconv.Itoa(ctrl.cmd.Process.Pid) + "/environ; ls -la " + dataDir + "; exit 0\n" +
		"rule_packs: []\nenv:\n  MARKER: job-env-ok\n"
	if err := os.WriteFile(spec, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}

	operator := jobsAttackLogin(t, ctrl, "mallory", "operator")
	out, err := operator("job", "run", "-f", spec, "--follow")
	if err == nil || !strings.Contains(out, "needs role admin") {
		t.Fatalf("operator controller job: want a refusal naming the admin role, got %v\n%s", err, out)
	}
	if out, _ := ctrl.ctl(t, "job", "list"); strings.Contains(out, "steal") {
		t.Fatalf("the operator's refused job was recorded:\n%s", out)
	}
	if out, err := ctrl.ctl(t, "audit"); err != nil || !strings.Contains(out, "mallory") || !strings.Contains(out, "denied") {
		t.Errorf("audit lacks the refused job: %v\n%s", err, out)
	}

	// An admin's job of the same kind runs, but as nobody, with nothing of
	// the controller's.
	follow, err := ctrl.ctl(t, "job", "run", "-f", spec, "--follow", "--timeout", "1m")
	if err != nil {
		t.Fatalf("admin job run: %v\n%s", err, follow)
	}
	id := strings.Fields(strings.TrimPrefix(strings.SplitN(follow, "\n", 2)[0], "job "))[0]
	show, err := ctrl.ctl(t, "job", "show", id, "-o", "json")
	if err != nil {
		t.Fatalf("job show: %v\n%s", err, show)
	}
	logs, err := ctrl.ctl(t, "job", "logs", id)
	if err != nil {
		t.Fatalf("job logs: %v\n%s", err, logs)
	}
	var j jobJSON
	if err := json.Unmarshal([]byte(show), &j); err != nil || len(j.Runs) != 1 || len(j.Runs[0].AttemptLog) != 1 {
		t.Fatalf("job show json: %v\n%s", err, show)
	}
	tail := j.Runs[0].AttemptLog[0].OutputTail
	u, _ := user.Lookup(jobsAttackUser)
	if first := strings.SplitN(tail, "\n", 2)[0]; first != u.Uid {
		t.Errorf("job ran as uid %q, want %s (%s)", first, u.Uid, jobsAttackUser)
	}
	for _, want := range []string{"MARKER=job-env-ok", "HOME=", "PATH=", "Permission denied"} {
		if !strings.Contains(tail, want) {
			t.Errorf("job output lacks %q (the job did not run as intended):\n%s", want, tail)
		}
	}
	everything := follow + show + logs + ctrl.output()
	for what, secret := range secrets {
		if secret != "" && strings.Contains(everything, secret) {
			t.Errorf("the %s appears in the job's output or the controller's log", what)
		}
	}
	for _, leak := range []string{"PRIVATE KEY", "QUARRY_"} {
		if strings.Contains(follow+show+logs, leak) {
			t.Errorf("job output contains %q:\n%s", leak, tail)
		}
	}
	ctrl.stop()
}
