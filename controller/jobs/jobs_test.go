package jobs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/server"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

type testController struct {
	*server.Controller
	dir  string
	stop func()
}

// startController runs a real controller in the test process.
func startController(t *testing.T, mutate func(*server.Config)) *testController {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.ShutdownGrace = 2 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := server.New(cfg, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	tc := &testController{Controller: c, dir: cfg.DataDir}
	var stopped bool
	tc.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	}
	t.Cleanup(tc.stop)
	return tc
}

// client dials the controller over TLS with a bearer token of the given
// role ("" means the local admin token).
func (tc *testController) client(t *testing.T, role string) quarryv1.JobServiceClient {
	t.Helper()
	var tok string
	if role == "" {
		b, err := os.ReadFile(filepath.Join(tc.dir, server.AdminTokenFile))
		if err != nil {
			t.Fatal(err)
		}
		tok = strings.TrimSpace(string(b))
	} else {
		var err error
		if tok, err = tc.Fleet().CreateAdminToken("test-"+role, role); err != nil {
			t.Fatal(err)
		}
	}
	pem, err := os.ReadFile(filepath.Join(tc.dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conn, err := grpc.NewClient(tc.GRPCAddr(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})),
		grpc.WithPerRPCCredentials(bearer(tok)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return quarryv1.NewJobServiceClient(conn)
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// jobUser is the unprivileged user controller jobs run as in these tests.
const jobUser = "nobody"

// jobsOn turns controller jobs on, run as nobody in a fresh workspace that
// nobody can reach (t.TempDir's parents are private to root).
func jobsOn(t *testing.T) (mutate func(*server.Config), ws string) {
	t.Helper()
	ws, err := os.MkdirTemp("", "quarry-jobs-ws-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(ws) })
	u, err := user.Lookup(jobUser)
	if err != nil {
		testsupport.Missing(t, "user "+jobUser+" ("+err.Error()+")", "a Debian system has it")
	}
	uid, _ := strconv.Atoi(u.Uid)
	if os.Geteuid() != 0 || uid == os.Geteuid() {
		testsupport.Missing(t, "root, which controller jobs need to switch to another user", "run the tests as root")
	}
	if err := os.Chmod(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	return func(c *server.Config) {
		c.Jobs.ControllerJobs, c.Jobs.RunAs, c.Jobs.Workspace = true, jobUser, ws
	}, ws
}

// jobDir makes a directory in the workspace that belongs to the job user.
func jobDir(t *testing.T, ws, name string) string {
	t.Helper()
	d := filepath.Join(ws, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	giveToJobUser(t, d)
	return d
}

// giveToJobUser chowns a tree to the job user.
func giveToJobUser(t *testing.T, root string) {
	t.Helper()
	u, err := user.Lookup(jobUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// copyProject copies a broken project from pkg/selfheal's testdata into
// the workspace, owned by the job user.
func copyProject(t *testing.T, ws, name string) string {
	t.Helper()
	dst := filepath.Join(ws, name)
	testsupport.CopyTree(t, filepath.Join(testsupport.RepoRoot(t), "pkg", "selfheal", "testdata", "projects", name), dst)
	giveToJobUser(t, dst)
	return dst
}

// goSpec is a job that builds pkg/selfheal's go-missing-sum project, whose
// go.sum is missing; the go rule pack heals it from the offline module
// proxy. The job user cannot read root's files, so the proxy and the Go
// caches live in the workspace, owned by that user.
func goSpec(t *testing.T, ws, dir string) string {
	t.Helper()
	root := filepath.Join(ws, "go")
	spec := testsupport.GoJobSpecIn(t, dir, "", root)
	giveToJobUser(t, root)
	return spec
}

// watch collects a job's events until it ends.
func watch(t *testing.T, ctx context.Context, c quarryv1.JobServiceClient, id string) []*quarryv1.JobEvent {
	t.Helper()
	stream, err := c.WatchJob(ctx, &quarryv1.WatchJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	var evs []*quarryv1.JobEvent
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return evs
		}
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		evs = append(evs, resp.Event)
	}
}

func TestControllerJobHealsRealGoBuild(t *testing.T) {
	on, ws := jobsOn(t)
	dir := copyProject(t, ws, "go-missing-sum")
	spec := goSpec(t, ws, dir)
	tc := startController(t, on)
	c := tc.client(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	run, err := c.RunJob(ctx, &quarryv1.RunJobRequest{SpecYaml: []byte(spec)})
	if err != nil {
		t.Fatal(err)
	}
	id := run.Job.Id
	if len(run.Job.Runs) != 1 || run.Job.Runs[0].Target != "controller" {
		t.Fatalf("runs %v, want one on the controller", run.Job.Runs)
	}
	evs := watch(t, ctx, c, id)
	var remediation, output, last string
	for _, e := range evs {
		switch e.Kind {
		case "remediation":
			remediation = e.Text
		case "output":
			output += e.Text + "\n"
		}
		last = e.Kind
	}
	if last != "job-done" {
		t.Errorf("last event %q, want job-done", last)
	}
	if !strings.HasPrefix(remediation, "go/missing-go-sum") {
		t.Errorf("remediation event %q, want go/missing-go-sum", remediation)
	}
	if !strings.Contains(output, "missing go.sum entry") || !strings.Contains(output, "[0 10 20]") {
		t.Errorf("streamed output lacks the failure or the healed run:\n%s", output)
	}

	got, err := c.GetJob(ctx, &quarryv1.GetJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	j := got.Job
	if j.Status != "healed" || j.CreatedBy != "local-admin" || j.FinishedUnixNano == 0 {
		t.Fatalf("job %s by %q finished=%d, want healed by local-admin: %s", j.Status, j.CreatedBy, j.FinishedUnixNano, j.Diagnosis)
	}
	r := j.Runs[0]
	if r.Attempts != 2 || len(r.AttemptLog) != 2 {
		t.Fatalf("%d attempts (%d logged), want 2", r.Attempts, len(r.AttemptLog))
	}
	first := r.AttemptLog[0]
	if first.ExitCode == 0 || first.Remediation == nil || first.Remediation.Rule != "go/missing-go-sum" ||
		!strings.Contains(first.Remediation.Diff, "+golang.org/x/sync v0.25.0 h1:") || len(first.Diagnostics) == 0 {
		t.Errorf("first attempt: exit %d, remediation %+v, %d diagnostics", first.ExitCode, first.Remediation, len(first.Diagnostics))
	}
	if !strings.Contains(r.AttemptLog[1].OutputTail, "[0 10 20]") {
		t.Errorf("healed attempt output %q lacks the program's output", r.AttemptLog[1].OutputTail)
	}

	logs, err := c.JobLogs(ctx, &quarryv1.JobLogsRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.Text, ">>> remediation: go/missing-go-sum") || !strings.Contains(logs.Text, "[0 10 20]") {
		t.Errorf("logs lack the remediation or the output:\n%s", logs.Text)
	}
	short, err := c.JobLogs(ctx, &quarryv1.JobLogsRequest{JobId: id, MaxBytes: 20})
	if err != nil || !short.Truncated || len(short.Text) != 20 {
		t.Errorf("logs with max_bytes 20: %d bytes truncated=%v err=%v", len(short.Text), short.GetTruncated(), err)
	}

	list, err := tc.client(t, fleet.RoleViewer).ListJobs(ctx, &quarryv1.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Jobs) != 1 || list.Jobs[0].Id != id || list.Jobs[0].Runs[0].Attempts != 2 || len(list.Jobs[0].Runs[0].AttemptLog) != 0 {
		t.Errorf("list = %v, want the one job with 2 attempts and no attempt log", list.Jobs)
	}

	// go.sum did not exist before the job, so revert removes it.
	if _, err := os.Stat(filepath.Join(dir, "go.sum")); err != nil {
		t.Fatalf("healed project has no go.sum: %v", err)
	}
	rev, err := c.RevertJob(ctx, &quarryv1.RevertJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(rev.Runs) != 1 || rev.Runs[0].Error != "" || len(rev.Runs[0].Restored) == 0 {
		t.Errorf("revert = %v", rev.Runs)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.sum")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("go.sum still there after revert: %v", err)
	}
	// The job ended, so a late watcher gets only the outcome.
	if evs := watch(t, ctx, c, id); len(evs) != 1 || evs[0].Kind != "job-done" || !strings.HasPrefix(evs[0].Text, "healed") {
		t.Errorf("watch of a finished job = %v", evs)
	}
}

// sleepSpec is a job whose build records its shell's pid and then sleeps.
func sleepSpec(dir, name string, seconds float64) string {
	return fmt.Sprintf("name: %s\ndir: %s\nbuild:\n  - echo $$ > %s.pid; echo started; exec sleep %g\nrule_packs: []\n", name, dir, name, seconds)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func jobStatus(t *testing.T, c quarryv1.JobServiceClient, id string) *quarryv1.BuildJob {
	t.Helper()
	resp, err := c.GetJob(context.Background(), &quarryv1.GetJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Job
}

func TestCancelKillsRunningBuild(t *testing.T) {
	on, ws := jobsOn(t)
	tc := startController(t, on)
	c := tc.client(t, fleet.RoleOperator)
	dir := jobDir(t, ws, "long")
	ctx := context.Background()
	run, err := tc.client(t, "").RunJob(ctx, &quarryv1.RunJobRequest{SpecYaml: []byte(sleepSpec(dir, "long", 60))})
	if err != nil {
		t.Fatal(err)
	}
	id := run.Job.Id
	var pid int
	waitFor(t, "the build to start", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "long.pid"))
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	if st := jobStatus(t, c, id).Status; st != "running" {
		t.Fatalf("status %s while building, want running", st)
	}
	if _, err := tc.client(t, fleet.RoleViewer).CancelJob(ctx, &quarryv1.CancelJobRequest{JobId: id}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("viewer cancel: %v, want PermissionDenied", err)
	}
	if _, err := tc.client(t, "").RevertJob(ctx, &quarryv1.RevertJobRequest{JobId: id}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("revert of a running job: %v, want FailedPrecondition", err)
	}
	start := time.Now()
	resp, err := c.CancelJob(ctx, &quarryv1.CancelJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cancel returned after %v", time.Since(start).Round(time.Millisecond))
	r := resp.Job.Runs[0]
	if resp.Job.Status != "canceled" || !strings.Contains(r.Error, "canceled by test-operator") {
		t.Errorf("after cancel: %s, run error %q", resp.Job.Status, r.Error)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("build process %d still exists after cancel (kill 0: %v)", pid, err)
	}
	if _, err := c.CancelJob(ctx, &quarryv1.CancelJobRequest{JobId: id}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second cancel: %v, want FailedPrecondition", err)
	}
}

func TestConcurrencyIsBounded(t *testing.T) {
	on, ws := jobsOn(t)
	tc := startController(t, func(c *server.Config) { on(c); c.Jobs.MaxConcurrent = 1 })
	c := tc.client(t, "")
	dir := jobDir(t, ws, "work")
	ctx := context.Background()
	var ids []string
	for _, name := range []string{"first", "second"} {
		run, err := c.RunJob(ctx, &quarryv1.RunJobRequest{SpecYaml: []byte(sleepSpec(dir, name, 0.3))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, run.Job.Id)
	}
	if st := jobStatus(t, c, ids[1]).Status; st != "pending" {
		t.Errorf("second job %s while the first runs, want pending", st)
	}
	waitFor(t, "both jobs to finish", func() bool {
		return jobStatus(t, c, ids[0]).Status == "succeeded" && jobStatus(t, c, ids[1]).Status == "succeeded"
	})
	first, second := jobStatus(t, c, ids[0]).Runs[0], jobStatus(t, c, ids[1]).Runs[0]
	if second.StartedUnixNano < first.FinishedUnixNano {
		t.Errorf("second run started %v before the first finished", time.Duration(first.FinishedUnixNano-second.StartedUnixNano))
	}
}

func TestBadRequests(t *testing.T) {
	on, ws := jobsOn(t)
	tc := startController(t, on)
	c := tc.client(t, "")
	dir := jobDir(t, ws, "work")
	ctx := context.Background()
	cases := []struct {
		name string
		spec string
		code codes.Code
		want string
	}{
		{"empty", "", codes.InvalidArgument, "spec_yaml is required"},
		{"not yaml", "build: [", codes.InvalidArgument, "parse job spec"},
		{"bad fields", "name: 'bad name'\ndir: /tmp\nbuild: []\nmax_attempts: 99\n", codes.InvalidArgument, "max_attempts"},
		{"unknown field", "name: x\ndir: /tmp\nbuild: [make]\nbiuld: [make]\n", codes.InvalidArgument, "biuld"},
		{"unknown pack", fmt.Sprintf("name: x\ndir: %s\nbuild: [make]\nrule_packs: [fortran]\n", dir), codes.InvalidArgument, "fortran"},
		{"missing dir", fmt.Sprintf("name: x\ndir: %s/nope\nbuild: [make]\n", ws), codes.InvalidArgument, "not a directory"},
		{"dir outside the workspace", "name: x\ndir: /tmp\nbuild: [make]\n", codes.InvalidArgument, "outside the controller's job workspace"},
		{"dir escaping the workspace", "name: x\ndir: work/../..\nbuild: [make]\n", codes.InvalidArgument, "outside the controller's job workspace"},
		{"data dir", fmt.Sprintf("name: x\ndir: %s\nbuild: [make]\n", tc.dir), codes.InvalidArgument, "outside the controller's job workspace"},
		{"bad selector", fmt.Sprintf("name: x\ndir: %s\nbuild: [make]\nwhere: 'agent:name=['\n", dir), codes.InvalidArgument, "bad pattern"},
		{"no rigs", fmt.Sprintf("name: x\ndir: %s\nbuild: [make]\nwhere: agent:name=rig-*\n", dir), codes.FailedPrecondition, "no rig matches"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.RunJob(ctx, &quarryv1.RunJobRequest{SpecYaml: []byte(tt.spec)})
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("RunJob: %v, want %s containing %q", err, tt.code, tt.want)
			}
		})
	}
	if _, err := c.GetJob(ctx, &quarryv1.GetJobRequest{JobId: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetJob unknown: %v", err)
	}
	if _, err := c.GetJob(ctx, &quarryv1.GetJobRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("GetJob without id: %v", err)
	}
	if _, err := tc.client(t, fleet.RoleViewer).RunJob(ctx, &quarryv1.RunJobRequest{SpecYaml: []byte(sleepSpec(dir, "x", 0))}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("viewer RunJob: %v, want PermissionDenied", err)
	}
	list, err := c.ListJobs(ctx, &quarryv1.ListJobsRequest{})
	if err != nil || len(list.Jobs) != 0 {
		t.Errorf("rejected specs left jobs behind: %v %v", list.GetJobs(), err)
	}
}

func TestRestartMarksInterruptedJob(t *testing.T) {
	dataDir := t.TempDir()
	on, ws := jobsOn(t)
	dir := jobDir(t, ws, "work")
	keep := func(c *server.Config) { on(c); c.DataDir = dataDir }
	tc := startController(t, keep)
	c := tc.client(t, "")
	run, err := c.RunJob(context.Background(), &quarryv1.RunJobRequest{SpecYaml: []byte(sleepSpec(dir, "restart", 60))})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the build to start", func() bool {
		_, err := os.Stat(filepath.Join(dir, "restart.pid"))
		return err == nil
	})
	tc.stop()
	j := jobStatus(t, startController(t, keep).client(t, ""), run.Job.Id)
	if j.Status != "canceled" || !strings.Contains(j.Runs[0].Error, "shutting down") {
		t.Errorf("after a restart the job is %s (%q), want canceled by the shutdown", j.Status, j.Runs[0].Error)
	}
}

// Controller jobs are off by default, need the admin role when on, and
// refuse a configuration that would hand them the controller's secrets.
func TestControllerJobsGate(t *testing.T) {
	ctx := context.Background()
	spec := func(dir string) []byte {
		return []byte(fmt.Sprintf("name: x\ndir: %s\nbuild: [\"true\"]\nrule_packs: []\n", dir))
	}

	off := startController(t, nil)
	_, err := off.client(t, "").RunJob(ctx, &quarryv1.RunJobRequest{SpecYaml: spec(t.TempDir())})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "jobs.controller_jobs") {
		t.Errorf("admin job with controller jobs off: %v, want FailedPrecondition naming jobs.controller_jobs", err)
	}

	on, ws := jobsOn(t)
	tc := startController(t, on)
	dir := jobDir(t, ws, "gate")
	_, err = tc.client(t, fleet.RoleOperator).RunJob(ctx, &quarryv1.RunJobRequest{SpecYaml: spec(dir)})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "needs role admin") {
		t.Errorf("operator controller job: %v, want PermissionDenied naming admin", err)
	}
	if _, err := tc.client(t, "").RunJob(ctx, &quarryv1.RunJobRequest{SpecYaml: spec(dir)}); err != nil {
		t.Errorf("admin controller job: %v", err)
	}

	for _, tt := range []struct {
		name   string
		mutate func(c *server.Config)
		want   string
	}{
		{"no run_as", func(c *server.Config) { c.Jobs.RunAs = "" }, "jobs.run_as: is required"},
		{"root", func(c *server.Config) { c.Jobs.RunAs = "root" }, "is root"},
		{"uid 0", func(c *server.Config) { c.Jobs.RunAs = "0" }, "is root"},
		{"unknown user", func(c *server.Config) { c.Jobs.RunAs = "no-such-user-here" }, "no user"},
		{"workspace in the data dir", func(c *server.Config) { c.Jobs.Workspace = filepath.Join(c.DataDir, "ws") }, "overlaps the data dir"},
		{"workspace holding the data dir", func(c *server.Config) { c.Jobs.Workspace = filepath.Dir(c.DataDir) }, "overlaps the data dir"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := server.DefaultConfig()
			cfg.DataDir = t.TempDir()
			cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
			on(&cfg)
			tt.mutate(&cfg)
			c, err := server.New(cfg, "test", slog.New(slog.DiscardHandler))
			if err == nil {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- c.Serve(ctx) }()
				cancel()
				err = <-done
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("controller started with %s: %v, want an error containing %q", tt.name, err, tt.want)
			}
		})
	}
}

// A controller job runs as the configured user with only PATH, HOME, LANG
// and the spec's env, so the controller's QUARRY_* settings never reach it.
func TestControllerJobUserAndEnvironment(t *testing.T) {
	t.Setenv("QUARRY_BILLING_STRIPE_KEY", "sk_test_never_in_a_job")
	on, ws := jobsOn(t)
	tc := startController(t, on)
	dir := jobDir(t, ws, "env")
	c := tc.client(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := fmt.Sprintf("name: env\ndir: %s\nbuild:\n  - id -u; env\nrule_packs: []\nenv:\n  FROM_SPEC: yes-please\n", dir)
	run, err := c.RunJob(ctx, &quarryv1.RunJobRequest{SpecYaml: []byte(spec)})
	if err != nil {
		t.Fatal(err)
	}
	watch(t, ctx, c, run.Job.Id)
	j := jobStatus(t, c, run.Job.Id)
	if j.Status != "succeeded" || len(j.Runs[0].AttemptLog) != 1 {
		t.Fatalf("job %s: %s", j.Status, j.Diagnosis)
	}
	u, _ := user.Lookup(jobUser)
	var vars []string
	lines := strings.Split(strings.TrimSpace(j.Runs[0].AttemptLog[0].OutputTail), "\n")
	if lines[0] != u.Uid {
		t.Errorf("job ran as uid %s, want %s (%s)", lines[0], u.Uid, jobUser)
	}
	for _, l := range lines[1:] {
		k, _, _ := strings.Cut(l, "=")
		vars = append(vars, k)
		if strings.HasPrefix(k, "QUARRY_") || strings.Contains(l, "sk_test_never_in_a_job") {
			t.Errorf("controller variable in the job: %s", l)
		}
	}
	for _, want := range []string{"PATH", "HOME", "LANG", "FROM_SPEC"} {
		if !slices.Contains(vars, want) {
			t.Errorf("job environment lacks %s: %v", want, vars)
		}
	}
}
