package e2e

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// adminAttackController starts a controller with nothing enrolled and
// returns it with a helper that runs quarryctl with a given bearer token.
func adminAttackController(t *testing.T, extra ...string) (*controller, func(token string, args ...string) (string, error)) {
	t.Helper()
	dir := t.TempDir()
	ctrl := startController(t, dir, freePort(t), freePort(t), extra...)
	as := func(token string, args ...string) (string, error) {
		t.Helper()
		return ctrl.ctl(t, append([]string{"--token", token}, args...)...)
	}
	return ctrl, as
}

func adminToken(t *testing.T, ctrl *controller, name, role string, extra ...string) string {
	t.Helper()
	out, err := ctrl.ctl(t, append([]string{"token", "admin", name, "--role", role}, extra...)...)
	if err != nil {
		t.Fatalf("token admin %s: %v\n%s", name, err, out)
	}
	return strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]
}

// Attack: a viewer credential (a wall screen's, say) is used to read the
// pool passwords and miner API tokens in flight sheets, and to make rigs
// run commands by asking for their logs.
func TestAttackViewerReadsSecrets(t *testing.T) {
	ctrl, as := adminAttackController(t)
	sheet := `name: xmr
coin: XMR
algorithm: rx/0
miner:
  name: xmrig
  path: /var/lib/quarry/miners/xmrig
  sha256: 3b1f8c2e4a6d9f0b7c5e1a2d4f6b8c0e2a4c6e8f0a1b3c5d7e9f1a3b5c7d9e1f
  api: {port: 18080, token: apitok-e2e-1}
pools:
  - {url: "stratum+tcp://w.r:urlpw-e2e-2@pool.example:3333", user: WALLET.rig01, password: poolpw-e2e-3}
`
	file := filepath.Join(ctrl.dir, "xmr.yaml")
	if err := os.WriteFile(file, []byte(sheet), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := ctrl.ctl(t, "flightsheet", "put", "-f", file); err != nil {
		t.Fatalf("put: %v\n%s", err, out)
	}
	viewer := adminToken(t, ctrl, "wall", "viewer")
	secrets := []string{"apitok-e2e-1", "urlpw-e2e-2", "poolpw-e2e-3"}
	out, err := as(viewer, "flightsheet", "show", "xmr")
	if err != nil {
		t.Fatalf("viewer flightsheet show: %v\n%s", err, out)
	}
	var js struct {
		Sheet struct {
			YAML []byte `json:"yaml"`
		} `json:"sheet"`
	}
	jout, err := as(viewer, "flightsheet", "show", "xmr", "-o", "json")
	if err != nil || json.Unmarshal([]byte(jout), &js) != nil {
		t.Fatalf("viewer flightsheet show -o json: %v\n%s", err, jout)
	}
	for format, text := range map[string]string{"table": out, "json": string(js.Sheet.YAML)} {
		if !strings.Contains(text, "[redacted]") {
			t.Errorf("viewer's %s sheet shows no redaction:\n%s", format, text)
		}
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("viewer read %q through flightsheet show -o %s:\n%s", s, format, text)
			}
		}
	}
	if out, err := ctrl.ctl(t, "flightsheet", "show", "xmr"); err != nil || !strings.Contains(out, "poolpw-e2e-3") {
		t.Fatalf("admin must still read the sheet whole: %v\n%s", err, out)
	}
	out, err = as(viewer, "rig", "logs", "any-rig")
	if err == nil || !strings.Contains(out, "needs role operator") {
		t.Fatalf("viewer rig logs: want a refusal naming operator, got %v\n%s", err, out)
	}
	out, err = ctrl.ctl(t, "audit", "-o", "json")
	if err != nil {
		t.Fatalf("audit: %v\n%s", err, out)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("audit log holds %q", s)
		}
	}
}

// Attack: a leaked or departed administrator's bearer token keeps
// working forever, and lower roles mint, list or revoke tokens.
func TestAttackAdminTokenOutlivesRevocation(t *testing.T) {
	ctrl, as := adminAttackController(t)
	viewer := adminToken(t, ctrl, "vic", "viewer")
	operator := adminToken(t, ctrl, "olga", "operator")
	departing := adminToken(t, ctrl, "dave", "admin", "--ttl", "720h")

	for role, tok := range map[string]string{"viewer": viewer, "operator": operator} {
		for _, args := range [][]string{{"token", "admin", "mallory", "--role", "admin"}, {"token", "list"}, {"token", "revoke", "dave"}} {
			out, err := as(tok, args...)
			if err == nil || !strings.Contains(out, "needs role admin") {
				t.Errorf("%s ran %v: %v\n%s", role, args, err, out)
			}
		}
	}

	out, err := ctrl.ctl(t, "token", "list")
	if err != nil {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	for _, name := range []string{"local-admin", "vic", "olga", "dave"} {
		if !strings.Contains(out, name) {
			t.Errorf("token list lacks %s:\n%s", name, out)
		}
	}
	// Neither a token nor anything that looks like its hash is shown.
	if strings.Contains(out, "qat1.") || regexp.MustCompile(`[0-9a-f]{32}`).MatchString(out) {
		t.Errorf("token list shows a secret or a hash:\n%s", out)
	}
	if !regexp.MustCompile(`dave\s+admin\s+\S+ \S+\s+local-admin\s+never\s`).MatchString(out) {
		t.Errorf("token list row for dave lacks role, creator or last use:\n%s", out)
	}
	if out, err := ctrl.ctl(t, "token", "admin", "dave", "--role", "viewer"); err == nil || !strings.Contains(out, "exists") {
		t.Errorf("a second token named dave: %v\n%s", err, out)
	}

	if out, err := as(departing, "whoami"); err != nil || !strings.Contains(out, "dave") {
		t.Fatalf("dave before revocation: %v\n%s", err, out)
	}
	if out, err := ctrl.ctl(t, "token", "revoke", "dave"); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	// Refused on the very next call: no cache to wait out.
	if out, err := as(departing, "whoami"); err == nil || !strings.Contains(out, "not valid") {
		t.Fatalf("revoked token still works: %v\n%s", err, out)
	}

	short := adminToken(t, ctrl, "temp", "operator", "--ttl", "2s")
	eventually(t, "short-lived token refused as expired", 30*time.Second, func() bool {
		out, err := as(short, "rigs", "list")
		return err != nil && strings.Contains(out, "expired")
	})

	out, err = ctrl.ctl(t, "audit")
	if err != nil {
		t.Fatalf("audit: %v\n%s", err, out)
	}
	for _, want := range []string{"admin token create", "admin token list", "admin token revoke", "denied"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, departing) || strings.Contains(out, short) {
		t.Error("audit log holds a token")
	}
}

// Attack: an enrolled rig names itself and its GPU with terminal escape
// sequences (a title change, a screen clear) so that an operator running
// quarryctl, or reading /metrics in a terminal, has their terminal driven
// by the rig.
func TestAttackTerminalEscapesFromRig(t *testing.T) {
	ctrl, _ := adminAttackController(t)
	const evil = "rig\x1b]0;pwned\x07-\x1b[2Jevil"
	dir := t.TempDir()
	// The hostname is refused outright at enrollment, before a token use
	// is spent; the rest of the rig's text is cleaned where it is shown.
	tok := ctrl.newToken(t)
	if _, err := link.Enroll(context.Background(), filepath.Join(dir, "pki"), ctrl.grpc, tok, evil); err == nil || !strings.Contains(err.Error(), "control characters") {
		t.Fatalf("enroll with hostname %q: %v, want refused", evil, err)
	}
	id, err := link.Enroll(context.Background(), filepath.Join(dir, "pki"), ctrl.grpc, tok, "rig-evil")
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	db, err := store.Open(filepath.Join(dir, "agent.db"), link.Buckets...)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	buf, err := link.OpenBuffer(db, 100, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := buf.Append(&quarryv1.Report{TimeUnixNano: time.Now().UnixNano(),
		Gpus:   []*quarryv1.GPUStats{{Index: 0, Name: "RTX \x1b]0;pwned\x07 3070\x1b[2J", BusId: "0000:01:00.0\u009b2J"}},
		Events: []*quarryv1.Event{{TimeUnixNano: time.Now().UnixNano(), Kind: "miner", Message: "crash\x1b[2J\x1b]0;pwned\x07"}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &link.Client{Addr: ctrl.grpc, ServerName: "127.0.0.1", Identity: id, Buffer: buf, Log: slog.New(slog.DiscardHandler), BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	eventually(t, "the rig's report committed", 30*time.Second, func() bool {
		rigs := ctrl.rigs(t)
		return len(rigs) == 1 && rigs[0].Online
	})
	rigID := id.RigID()
	outputs := map[string]string{}
	for _, args := range [][]string{{"rigs", "list"}, {"rig", "show", rigID}, {"rig", "events", rigID}} {
		out, err := ctrl.ctl(t, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		outputs[strings.Join(args, " ")] = out
	}
	resp, err := http.Get("http://" + ctrl.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	outputs["/metrics"] = string(body)
	for what, out := range outputs {
		if strings.ContainsAny(out, "\x1b\x07\u009b") {
			t.Errorf("%s passes a terminal control through:\n%q", what, out)
		}
	}
	if !strings.Contains(outputs["rigs list"], "rig-evil") || !strings.Contains(outputs["rig show "+rigID], "RTX  3070") || !strings.Contains(outputs["rig events "+rigID], "crash") {
		t.Errorf("the rig's text is not shown, cleaned:\n%v", outputs)
	}
	if !strings.Contains(outputs["/metrics"], `model="RTX  3070"`) {
		t.Errorf("/metrics lacks the cleaned GPU model")
	}
	// JSON stays JSON: the escape arrives escaped, never raw.
	out, err := ctrl.ctl(t, "rig", "show", rigID, "-o", "json")
	if err != nil || strings.Contains(out, "\x1b") || !strings.Contains(out, `\u001b`) {
		t.Errorf("rig show -o json: %v\n%q", err, out)
	}
}

// Attack: anyone who reaches the controller's HTTP port scrapes the
// fleet's figures from /metrics, and guesses dashboard tokens at network
// speed.
func TestAttackMetricsScrapeAndLoginGuessing(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "metrics.token")
	if err := os.WriteFile(tokFile, []byte("prometheus-only-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "controller.yaml")
	if err := os.WriteFile(cfg, []byte("web:\n  metrics_token_file: "+tokFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := freePort(t)
	startController(t, dir, freePort(t), httpAddr, "-config", cfg)
	get := func(auth string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(""); code != http.StatusUnauthorized {
		t.Errorf("anonymous scrape: %d, want 401", code)
	}
	if code := get("Bearer prometheus-only-0123456789"); code != http.StatusOK {
		t.Errorf("scrape with the token: %d, want 200", code)
	}

	codes := []int{}
	for i := range 7 {
		resp, err := http.Post("http://"+httpAddr+"/api/login", "application/json", strings.NewReader(`{"token":"qat1.guess`+string(rune('a'+i))+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	want := []int{401, 401, 401, 401, 401, 429, 429}
	for i := range want {
		if codes[i] != want[i] {
			t.Fatalf("sign-in guesses answered %v, want %v", codes, want)
		}
	}
}
