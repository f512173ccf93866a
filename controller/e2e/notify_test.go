package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quarryfleet/quarry/controller/notify"
	"github.com/quarryfleet/quarry/controller/notify/notifytest"
)

// hookReceiver is a webhook endpoint that keeps the messages whose
// signature checks out.
type hookReceiver struct {
	mu     sync.Mutex
	msgs   []notify.Message
	badSig int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Header.Get(notify.SignatureHeader) != notify.Sign([]byte(e2eHookSecret), r.Header.Get(notify.TimestampHeader), body) {
		h.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var m notify.Message
	_ = json.Unmarshal(body, &m)
	h.msgs = append(h.msgs, m)
}

func (h *hookReceiver) count(kind string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if m.Kind == kind {
			n++
		}
	}
	return n
}

func mailCount(s *notifytest.SMTPServer, word string) int {
	n := 0
	for _, m := range s.Mails() {
		if strings.Contains(m.Data, "Subject: [quarry] "+word) {
			n++
		}
	}
	return n
}

const e2eHookSecret = "e2e-webhook-signing-secret"

type alertsJSON struct {
	Alerts []struct {
		Key        string `json:"key"`
		Rule       string `json:"rule"`
		RigName    string `json:"rigName"`
		State      string `json:"state"`
		SinceMs    string `json:"sinceUnixMs"`
		Deliveries []struct {
			Channel string `json:"channel"`
			Kind    string `json:"kind"`
			State   string `json:"state"`
		} `json:"deliveries"`
	} `json:"alerts"`
	Channels []string `json:"channels"`
}

// The real controller and agent: a rig that goes offline gives exactly
// one firing message at a local webhook receiver and one mail at a Go
// SMTP server; a controller restart while it is firing sends nothing
// again; the rig's return gives exactly one resolved message on each.
// quarryctl lists the alert with its delivery, and only an admin may send
// a test message.
func TestAlertReachesWebhookAndMailOnce(t *testing.T) {
	dir := t.TempDir()
	hook := &hookReceiver{}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()
	mail := notifytest.NewSMTPServer(t, nil, "")
	secretFile := filepath.Join(dir, "hook.secret")
	if err := os.WriteFile(secretFile, []byte(e2eHookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`gossip:
  enabled: false
notify:
  interval: 200ms
  hold_down: 1s
  max_backoff: 500ms
  rules:
    offline:
      after: 2s
  webhooks:
    - url: %s/hooks/quarry
      secret_file: %s
  smtp:
    addr: %s
    from: quarry@example.org
    to: [ops@example.org]
    starttls: false
`, hookSrv.URL, secretFile, mail.Addr)
	cfgPath := filepath.Join(dir, "controller.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr, "-config", cfgPath)
	agent := startAgent(t, dir, grpcAddr, ctrl.newToken(t, "--rig-name", "alerted"))
	eventually(t, "rig online", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "alerted")
		return ok && r.Online
	})

	alerts := func() alertsJSON {
		t.Helper()
		out, err := ctrl.ctl(t, "alerts", "--resolved", "10", "-o", "json")
		if err != nil {
			t.Fatalf("alerts: %v\n%s", err, out)
		}
		var a alertsJSON
		if err := json.Unmarshal([]byte(out), &a); err != nil {
			t.Fatalf("alerts json: %v\n%s", err, out)
		}
		return a
	}

	agent.stop()
	eventually(t, "one firing message on the webhook and by mail", time.Minute, func() bool {
		return hook.count(notify.KindFiring) == 1 && mailCount(mail, "FIRING") == 1
	})
	eventually(t, "quarryctl shows the alert delivered on both channels", 30*time.Second, func() bool {
		a := alerts()
		if len(a.Alerts) != 1 || a.Alerts[0].State != "firing" || a.Alerts[0].RigName != "alerted" || len(a.Alerts[0].Deliveries) != 2 {
			return false
		}
		for _, d := range a.Alerts[0].Deliveries {
			if d.State != "delivered" || d.Kind != "firing" {
				return false
			}
		}
		return true
	})
	since := alerts().Alerts[0].SinceMs
	if out, _ := ctrl.ctl(t, "alerts"); !strings.Contains(out, "alerted") || !strings.Contains(out, "offline") || !strings.Contains(out, "webhook "+hookSrv.URL+": firing delivered") || strings.Contains(out, "/hooks/quarry") {
		t.Errorf("quarryctl alerts:\n%s", out)
	}

	// Restart while firing: the alert is the same one, not sent again.
	ctrl.stop()
	ctrl = startController(t, dir, grpcAddr, httpAddr, "-config", cfgPath)
	if a := alerts(); len(a.Alerts) != 1 || a.Alerts[0].State != "firing" || a.Alerts[0].SinceMs != since {
		t.Fatalf("after restart: %+v (since was %s)", a, since)
	}

	startAgent(t, dir, grpcAddr, "")
	eventually(t, "one resolved message on the webhook and by mail", time.Minute, func() bool {
		return hook.count(notify.KindResolved) == 1 && mailCount(mail, "RESOLVED") == 1
	})
	if f, m := hook.count(notify.KindFiring), mailCount(mail, "FIRING"); f != 1 || m != 1 || hook.badSig != 0 {
		t.Errorf("firing messages: %d webhook, %d mail, %d bad signatures; want exactly one each", f, m, hook.badSig)
	}

	// Only an admin sends a test message.
	for _, role := range []string{"viewer", "operator"} {
		tok := adminToken(t, ctrl, "notify-"+role, role)
		if out, err := ctrl.ctl(t, "--token", tok, "alerts", "test"); err == nil || !strings.Contains(out, "needs role admin") {
			t.Errorf("alerts test as %s: %v\n%s", role, err, out)
		}
		if out, err := ctrl.ctl(t, "--token", tok, "alerts"); err != nil {
			t.Errorf("alerts as %s: %v\n%s", role, err, out)
		}
	}
	if hook.count(notify.KindTest) != 0 {
		t.Fatal("a refused test call sent a message")
	}
	out, err := ctrl.ctl(t, "alerts", "test")
	if err != nil || !strings.Contains(out, "webhook "+hookSrv.URL) || !strings.Contains(out, "smtp "+mail.Addr) || strings.Contains(out, "failed") {
		t.Fatalf("alerts test: %v\n%s", err, out)
	}
	if hook.count(notify.KindTest) != 1 || mailCount(mail, "TEST") != 1 {
		t.Errorf("test messages: %d webhook, %d mail", hook.count(notify.KindTest), mailCount(mail, "TEST"))
	}
	if strings.Contains(ctrl.output(), e2eHookSecret) || strings.Contains(ctrl.output(), "/hooks/quarry") {
		t.Error("the controller log shows the webhook secret or path")
	}
}

// In the browser: the overview lists the firing alert with when it fired
// and its delivery, an admin's "Send test notification" reaches the
// webhook and shows each channel's result, and a viewer gets no button
// while the server refuses the call.
func TestNotificationsInBrowser(t *testing.T) {
	chrome := chromium(t)
	dir := t.TempDir()
	hook := &hookReceiver{}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()
	secretFile := filepath.Join(dir, "hook.secret")
	if err := os.WriteFile(secretFile, []byte(e2eHookSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("gossip:\n  enabled: false\nnotify:\n  interval: 200ms\n  rules:\n    offline:\n      after: 1s\n  webhooks:\n    - url: %s/hook\n      secret_file: %s\n", hookSrv.URL, secretFile)
	cfgPath := filepath.Join(dir, "controller.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr, "-config", cfgPath)
	adminTok, err := os.ReadFile(filepath.Join(dir, "quarry-data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	viewer := adminToken(t, ctrl, "wall-screen", "viewer")
	agent := startAgent(t, dir, grpcAddr, ctrl.newToken(t, "--rig-name", "lonely"))
	eventually(t, "rig online", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "lonely")
		return ok && r.Online
	})
	agent.stop()
	eventually(t, "firing message delivered", time.Minute, func() bool { return hook.count(notify.KindFiring) == 1 })

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(filepath.Join(dir, "chrome")))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	defer cancelCtx()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		for i, st := range steps {
			if _, err := chromedp.Run(ctx, st); err != nil {
				page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
				t.Fatalf("%s, step %d: %v\npage:\n%s", what, i+1, err, page)
			}
		}
	}
	base := "http://" + httpAddr + "/"
	do("admin sees the alert",
		chromedp.Navigate(base),
		chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), strings.TrimSpace(string(adminTok))),
		click(`#login-form button[type="submit"]`),
		waitText("#who", "local-admin · admin"),
		waitText("#ov-alerts", "lonely — offline"),
		waitText("#ov-alerts", "fired"),
		waitText("#ov-alerts", "webhook "+hookSrv.URL+": firing delivered"),
		chromedp.WaitVisible(css("#notify-test")),
		click("#notify-test"),
		waitText("#notify-test-result", "webhook "+hookSrv.URL+": ok"),
	)
	if hook.count(notify.KindTest) != 1 {
		t.Errorf("the button sent %d test messages, want 1", hook.count(notify.KindTest))
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	writePNG(t, screenshotDir(t), "dashboard-alerts.png", png)

	do("viewer",
		click("#logout"),
		chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), viewer),
		click(`#login-form button[type="submit"]`),
		waitText("#who", "wall-screen · viewer"),
		waitText("#ov-alerts", "lonely — offline"),
		chromedp.WaitNotVisible(css("#notify-test-bar")),
	)
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(async () => {
		const s = await (await fetch("/api/session")).json();
		const r = await fetch("/api/rpc/quarry.v1.NotifyService/TestNotification", {method: "POST", headers: {"X-Quarry-CSRF": s.csrf, "Content-Type": "application/json"}, body: "{}"});
		return r.status; })()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if status != 403 || hook.count(notify.KindTest) != 1 {
		t.Errorf("viewer's test call: HTTP %d, %d test messages; want 403 and still 1", status, hook.count(notify.KindTest))
	}
}
