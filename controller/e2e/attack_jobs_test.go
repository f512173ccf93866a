package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/agent/miner"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
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
	return jobsAttackLoginToken(t, ctrl, jobsAttackToken(t, ctrl, name, role), role)
}

func jobsAttackToken(t *testing.T, ctrl *controller, name, role string) string {
	t.Helper()
	out, err := ctrl.ctl(t, "token", "admin", name, "--role", role)
	if err != nil {
		t.Fatalf("token admin: %v %s", err, out)
	}
	return strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]
}

func jobsAttackLoginToken(t *testing.T, ctrl *controller, tok, role string) func(args ...string) (string, error) {
	t.Helper()
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

type jobsAttackBearer string

func (b jobsAttackBearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (jobsAttackBearer) RequireTransportSecurity() bool { return true }

// jobsAttackClient is a hand-made FleetService client with tok, the way an
// attacker skips quarryctl's own checks.
func jobsAttackClient(t *testing.T, ctrl *controller, tok string) quarryv1.FleetServiceClient {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(ctrl.dir, "quarry-data", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conn, err := grpc.NewClient(ctrl.grpc,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})),
		grpc.WithPerRPCCredentials(jobsAttackBearer(tok)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return quarryv1.NewFleetServiceClient(conn)
}

// Attack: an operator becomes root on a rig. A flight sheet names /bin/sh
// with its true sha256 and extra_args [-c, ...], sent through quarryctl
// and raw over gRPC; another names a symlink in miners_dir that points at
// the shell; a rig job runs a command as root, through quarryctl and as a
// raw RUN_JOB command. The controller or the agent refuses each with a
// clear reason, the agent reports an event, and the command never runs.
func TestAttackOperatorRootOnRigViaFlightSheet(t *testing.T) {
	dir := t.TempDir()
	minersDir := filepath.Join(dir, "miners")
	if err := os.MkdirAll(minersDir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(minersDir, "xmrig")
	if err := os.Symlink("/bin/sh", link); err != nil {
		t.Fatal(err)
	}
	shSum, err := miner.FileSHA256("/bin/sh")
	if err != nil {
		t.Skipf("no /bin/sh: %v", err)
	}
	marker := filepath.Join(dir, "rooted")
	// shellFlag is sh's "-c"; the linked sheet spells it "-ec" (sh takes
	// combined flags), which xmrig's own flags do not cover, so that the
	// controller passes the sheet on and the agent's refusal is tested.
	sheet := func(name, path, shellFlag string) string {
		f := filepath.Join(dir, name+".yaml")
		body := fmt.Sprintf(`name: %s
coin: XMR
algorithm: randomx
miner: {name: xmrig, path: %s, sha256: %s}
pools:
  - url: stratum+tcp://pool.example.org:3333
    user: wallet.rig
extra_args: ["%s", "touch %s"]
`, name, path, shSum, shellFlag, marker)
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}

	ctrl := startController(t, dir, freePort(t), freePort(t))
	rigDir := filepath.Join(dir, "rig")
	if err := os.MkdirAll(rigDir, 0o700); err != nil {
		t.Fatal(err)
	}
	agent := startAgent(t, rigDir, ctrl.grpc, ctrl.newToken(t, "--rig-name", "victim"), "-miners-dir", minersDir)
	eventually(t, "rig online", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "victim")
		return ok && r.Online
	})
	opToken := jobsAttackToken(t, ctrl, "mallory", "operator")
	operator := jobsAttackLoginToken(t, ctrl, opToken, "operator")
	raw := jobsAttackClient(t, ctrl, opToken)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// /bin/sh by name: the controller refuses to store or send it.
	out, err := operator("flightsheet", "apply", "-f", sheet("shell", "/bin/sh", "-c"), "--rigs", "name=victim", "--wait")
	if err == nil || !strings.Contains(out, "shell or interpreter") {
		t.Fatalf("operator apply of /bin/sh: want a refusal naming the shell, got %v\n%s", err, out)
	}

	// The same sheet sent raw reaches the agent, which refuses it.
	body, _ := os.ReadFile(filepath.Join(dir, "shell.yaml"))
	resp, err := raw.SendCommand(ctx, &quarryv1.SendCommandRequest{Rig: "victim", Kind: quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, Payload: body})
	if err != nil {
		t.Fatalf("raw apply: %v", err)
	}
	var rec *quarryv1.CommandRecord
	eventually(t, "the agent's answer to the raw sheet", 30*time.Second, func() bool {
		r, err := raw.GetCommand(ctx, &quarryv1.GetCommandRequest{CommandId: resp.CommandId})
		if err != nil {
			return false
		}
		rec = r.Record
		return rec.Status == quarryv1.CommandStatus_COMMAND_STATUS_FAILED || rec.Status == quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED
	})
	if rec.Status != quarryv1.CommandStatus_COMMAND_STATUS_FAILED || !strings.Contains(rec.Error, "shell or interpreter") {
		t.Fatalf("raw /bin/sh sheet at the agent: %s %q, want a refusal naming the shell", rec.Status, rec.Error)
	}

	// A symlink in miners_dir to the shell: the controller cannot tell,
	// the agent resolves it and refuses.
	out, err = operator("flightsheet", "apply", "-f", sheet("linked", link, "-ec"), "--rigs", "name=victim", "--wait")
	if err == nil || !strings.Contains(out, "outside the miners directory") {
		t.Fatalf("apply of a symlink out of miners_dir: want the agent's refusal, got %v\n%s", err, out)
	}
	eventually(t, "the refusal events at the controller", 30*time.Second, func() bool {
		out, err := ctrl.ctl(t, "rig", "events", "victim")
		return err == nil && strings.Count(out, "flight_sheet_refused") >= 2 &&
			strings.Contains(out, "shell or interpreter") && strings.Contains(out, "outside the miners directory")
	})

	// Rig jobs need admin, through quarryctl and as a raw RUN_JOB.
	spec := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(spec, []byte("name: root\ndir: /\nbuild:\n  - touch "+marker+"\nrule_packs: []\nwhere: agent:name=victim\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = operator("job", "run", "-f", spec)
	if err == nil || !strings.Contains(out, "needs role admin") {
		t.Fatalf("operator rig job: want a refusal naming the admin role, got %v\n%s", err, out)
	}
	payload := []byte(`{"op":"run","job_id":"x","spec":{"name":"root","dir":"/","build":[{"shell":"touch ` + marker + `"}],"max_attempts":1,"where":"agent:name=victim"}}`)
	_, err = raw.SendCommand(ctx, &quarryv1.SendCommandRequest{Rig: "victim", Kind: quarryv1.CommandKind_COMMAND_KIND_RUN_JOB, Payload: payload})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("raw RUN_JOB by an operator: %v, want PermissionDenied naming admin", err)
	}

	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the attack ran a command on the rig")
	}
	if out := agent.output(); strings.Contains(out, "miner_started") {
		t.Errorf("the agent started a miner:\n%s", out)
	}
	agent.stop()
	ctrl.stop()
}
