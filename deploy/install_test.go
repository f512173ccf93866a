package deploy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/agent/agentd"
	"github.com/quarryfleet/quarry/pkg/config"
)

const secret = "qjt1.0123abcd.s3cr3t-join-value"

// install runs scripts/install-agent.sh under root and returns its output.
func install(t *testing.T, root string, args ...string) (string, error) {
	t.Helper()
	return installEnv(t, root, nil, args...)
}

// installEnv is install with extra environment variables.
func installEnv(t *testing.T, root string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join("..", "scripts", "install-agent.sh"), "--root", root}, args...)...)
	cmd.Env = append(append(os.Environ(), "QUARRY_JOIN_TOKEN="), env...)
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "s3cr3t") {
		t.Errorf("the join token appears in the script's output:\n%s", out)
	}
	return string(out), err
}

func fakeBinary(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "quarry-agent-build")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho "+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInstallAgentTwiceThenUpgrade(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	root, work := t.TempDir(), t.TempDir()
	tokFile := filepath.Join(work, "join.token")
	if err := os.WriteFile(tokFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := fakeBinary(t, work, "v1")
	args := []string{"--controller", "ctl.example.net:7443", "--server-name", "ctl.example.net", "--token-file", tokFile, "--binary", bin}
	out, err := install(t, root, args...)
	if err != nil {
		t.Fatalf("first install: %v\n%s", err, out)
	}

	files := []struct {
		path string
		mode os.FileMode
	}{
		{"usr/local/bin/quarry-agent", 0o755},
		{"etc/systemd/system/quarry-agent.service", 0o644},
		{"etc/quarry/agent.yaml", 0o640},
		{"etc/quarry/agent.token", 0o600},
		{"var/lib/quarry-agent", 0o700},
	}
	snapshot := map[string]string{}
	for _, f := range files {
		p := filepath.Join(root, f.path)
		if m := mode(t, p); m != f.mode {
			t.Errorf("%s: mode %o, want %o", f.path, m, f.mode)
		}
		if f.mode != 0o700 {
			snapshot[f.path] = read(t, p)
		}
	}
	if got := snapshot["etc/quarry/agent.token"]; got != secret+"\n" {
		t.Errorf("token file holds %q", got)
	}
	if unit := read(t, filepath.Join("quarry-agent.service")); snapshot["etc/systemd/system/quarry-agent.service"] != unit {
		t.Error("the script's unit differs from deploy/quarry-agent.service")
	}
	// The written config is one the agent accepts, pointing at the token.
	cfg := agentd.DefaultConfig()
	if err := config.DecodeYAML([]byte(snapshot["etc/quarry/agent.yaml"]), &cfg); err != nil {
		t.Fatalf("agent.yaml: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("agent.yaml: %v", err)
	}
	if cfg.Controller != "ctl.example.net:7443" || cfg.ServerName != "ctl.example.net" || cfg.TokenFile != "/etc/quarry/agent.token" || cfg.DataDir != "/var/lib/quarry-agent/agent-data" || cfg.Token != "" {
		t.Errorf("agent.yaml decodes to %+v", cfg)
	}
	// The agent's default miners_dir exists, so a flight sheet has somewhere
	// to put its binaries.
	if fi, err := os.Stat(filepath.Join(root, strings.TrimPrefix(cfg.MinersDir, "/"))); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Errorf("miners_dir %s under the root: %v %v", cfg.MinersDir, fi, err)
	}
	if _, err := exec.LookPath("systemctl"); err == nil {
		if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/quarry-agent.service")); err != nil {
			t.Errorf("unit not enabled under the root: %v\n%s", err, out)
		}
	}

	// The same command again changes nothing.
	out, err = install(t, root, args...)
	if err != nil {
		t.Fatalf("second install: %v\n%s", err, out)
	}
	if strings.Count(out, "unchanged") != 4 {
		t.Errorf("second run should leave all four files unchanged:\n%s", out)
	}
	for p, want := range snapshot {
		if got := read(t, filepath.Join(root, p)); got != want {
			t.Errorf("%s changed on the second run", p)
		}
	}

	// An upgrade from a URL needs neither the token nor the controller
	// again, and checks the download's sha256.
	v2 := []byte("#!/bin/sh\necho v2\n")
	srv, env := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(v2) }))
	if out, err := installEnv(t, root, env, "--url", srv.URL+"/quarry-agent", "--sha256", strings.Repeat("0", 64)); err == nil {
		t.Errorf("a binary with the wrong sha256 was accepted:\n%s", out)
	}
	if got := read(t, filepath.Join(root, "usr/local/bin/quarry-agent")); got != snapshot["usr/local/bin/quarry-agent"] {
		t.Error("a refused download replaced the binary")
	}
	sum := sha256.Sum256(v2)
	out, err = installEnv(t, root, env, "--url", srv.URL+"/quarry-agent", "--sha256", strings.ToUpper(hex.EncodeToString(sum[:])))
	if err != nil {
		t.Fatalf("upgrade: %v\n%s", err, out)
	}
	if got := read(t, filepath.Join(root, "usr/local/bin/quarry-agent")); got != string(v2) {
		t.Errorf("binary after upgrade: %q", got)
	}
	if got := read(t, filepath.Join(root, "etc/quarry/agent.token")); got != secret+"\n" {
		t.Error("the upgrade lost the join token")
	}
	if got := read(t, filepath.Join(root, "etc/quarry/agent.yaml")); got != snapshot["etc/quarry/agent.yaml"] {
		t.Errorf("the upgrade changed agent.yaml:\n%s", got)
	}
}

func TestInstallAgentRefusesBadInput(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	work := t.TempDir()
	bin := fakeBinary(t, work, "v1")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no controller", []string{"--token", secret, "--binary", bin}, "--controller HOST:PORT is required"},
		{"controller without port", []string{"--controller", "ctl.example.net", "--token", secret, "--binary", bin}, "is not host:port"},
		{"shell in controller", []string{"--controller", "ctl$(reboot):7443", "--token", secret, "--binary", bin}, "characters a host:port cannot have"},
		{"no token", []string{"--controller", "ctl:7443", "--binary", bin}, "a join token is needed"},
		{"shell in token", []string{"--controller", "ctl:7443", "--token", "qjt1.s3cr3t`id`", "--binary", bin}, "unexpected characters"},
		{"no binary", []string{"--controller", "ctl:7443", "--token", secret}, "give --binary FILE or --url URL"},
		{"both sources", []string{"--controller", "ctl:7443", "--token", secret, "--binary", bin, "--url", "http://x/y"}, "not both"},
		{"missing binary", []string{"--controller", "ctl:7443", "--token", secret, "--binary", filepath.Join(work, "nope")}, "does not exist"},
		{"unknown option", []string{"--frobnicate"}, "unknown option --frobnicate"},
		{"url without sha256", []string{"--controller", "ctl:7443", "--token", secret, "--url", "https://example.net/quarry-agent"}, "--url needs --sha256"},
		{"plain http url", []string{"--controller", "ctl:7443", "--token", secret, "--url", "http://example.net/quarry-agent", "--sha256", strings.Repeat("a", 64)}, "must be an https:// URL"},
		{"short sha256", []string{"--controller", "ctl:7443", "--token", secret, "--binary", bin, "--sha256", "abc"}, "64 hex digits"},
		{"bad log level", []string{"--controller", "ctl:7443", "--token", secret, "--binary", bin, "--log-level", "loud"}, "--log-level must be"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			out, err := install(t, root, tc.args...)
			if err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
			if _, err := os.Stat(filepath.Join(root, "etc", "quarry", "agent.yaml")); err == nil {
				t.Error("a refused install wrote agent.yaml")
			}
		})
	}
}

// tlsServer serves h over https and returns the curl environment that
// trusts it.
func tlsServer(t *testing.T, h http.Handler) (*httptest.Server, []string) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, []string{"CURL_CA_BUNDLE=" + ca}
}

// Attack: a download URL that redirects from https to plain http, where
// anyone on the path could swap the binary that will run as root. The
// redirect is refused even with the right checksum, and nothing is
// installed.
func TestAttackInstallDowngradeRedirect(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	payload := []byte("#!/bin/sh\necho swapped\n")
	fetched := make(chan struct{}, 8)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetched <- struct{}{}
		_, _ = w.Write(payload)
	}))
	defer plain.Close()
	secure, env := tlsServer(t, http.RedirectHandler(plain.URL+"/quarry-agent", http.StatusFound))
	sum := sha256.Sum256(payload)
	root := t.TempDir()
	out, err := installEnv(t, root, env, "--controller", "ctl:7443", "--token", secret, "--url", secure.URL+"/quarry-agent", "--sha256", hex.EncodeToString(sum[:]))
	if err == nil || !strings.Contains(out, "download failed") {
		t.Fatalf("a redirect to http was followed: %v\n%s", err, out)
	}
	if len(fetched) != 0 {
		t.Fatal("curl fetched from the plain-http server")
	}
	if _, err := os.Stat(filepath.Join(root, "usr/local/bin/quarry-agent")); err == nil {
		t.Fatal("a binary was installed")
	}
}
