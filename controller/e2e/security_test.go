package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A viewer credential stored with 'quarryctl login' can read but not
// command, is told which role it needs, and the refusal is audited.
func TestRolesThroughQuarryctl(t *testing.T) {
	dir := t.TempDir()
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr)
	agent := startAgent(t, dir, grpcAddr, ctrl.newToken(t, "--rig-name", "r"))
	eventually(t, "rig online", time.Minute, func() bool {
		r, _ := rigByName(t, ctrl.rigs(t), "r")
		return r.Online
	})
	out, err := ctrl.ctl(t, "token", "admin", "alice", "--role", "viewer")
	if err != nil {
		t.Fatalf("token admin: %v %s", err, out)
	}
	viewerToken := strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]

	// A separate working dir with no local credentials: only login's file.
	home := t.TempDir()
	cfg := filepath.Join(home, "quarryctl.yaml")
	quarryctl := func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(bins(t), "quarryctl"), append([]string{"--config", cfg, "--data-dir", filepath.Join(home, "none")}, args...)...)
		cmd.Dir = home
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := quarryctl("login", "--controller", grpcAddr, "--token", viewerToken, "--ca", filepath.Join(dir, "quarry-data", "ca.crt")); err != nil || !strings.Contains(out, "role viewer") {
		t.Fatalf("login: %v %s", err, out)
	}
	if st, err := os.Stat(cfg); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credential file: %v mode %v", err, st.Mode())
	}
	if out, err := quarryctl("rigs", "list"); err != nil || !strings.Contains(out, "online") {
		t.Fatalf("viewer rigs list: %v %s", err, out)
	}
	out, err = quarryctl("rig", "command", "r", "ping")
	if err == nil || !strings.Contains(out, "needs role operator") {
		t.Fatalf("viewer command: want refusal naming operator, got %v %s", err, out)
	}
	out, err = quarryctl("token", "create")
	if err == nil || !strings.Contains(out, "needs role admin") {
		t.Fatalf("viewer token create: %v %s", err, out)
	}
	out, err = ctrl.ctl(t, "audit")
	if err != nil || !strings.Contains(out, "alice") || !strings.Contains(out, "denied") {
		t.Fatalf("audit lacks the refused call: %v\n%s", err, out)
	}
	agent.stop()
	ctrl.stop()
}
