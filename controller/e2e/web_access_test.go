package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// An admin creates a join token in the browser, a real agent enrolls with
// it, the admin revokes it in the browser and a second agent is refused;
// admin tokens are made and revoked the same way; a viewer and an
// operator get neither the controls nor the calls.
func TestAccessPageInBrowser(t *testing.T) {
	dir := t.TempDir()
	viewer := viewerToken(t, dir)
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr)
	admin := readAdminToken(t, dir)
	operator := adminToken(t, ctrl, "night-shift", "operator")
	b := openBrowser(t, dir, httpAddr, 3*time.Minute)
	shots := screenshotDir(t)

	b.signIn(admin, "local-admin · admin")
	b.do("join token",
		chromedp.Navigate(b.base+"#/access"),
		chromedp.WaitVisible(css("#join-form")),
		chromedp.SetValue(css("#join-name"), "web-rig"),
		chromedp.SetValue(css("#join-uses"), "2"),
		click(`#join-form button[type="submit"]`),
		waitJS(`(document.querySelector("#join-secret-value") || {}).value?.startsWith("qjt1.")`),
	)
	token := evalIn[string](b, "read token", `document.querySelector("#join-secret-value").value`)
	id := strings.Split(token, ".")[1]
	b.do("token listed", waitJS(`!!document.querySelector('#join-table tbody tr[data-token="`+id+`"]')`))
	row := evalIn[string](b, "token row", `document.querySelector('#join-table tbody tr[data-token="`+id+`"]').innerText`)
	if !strings.Contains(row, id) || !strings.Contains(row, "web-rig") || !strings.Contains(row, "2") {
		t.Errorf("token row %q lacks its id, rig name or uses", row)
	}
	secret := strings.Split(token, ".")[2]
	if list := evalIn[string](b, "list", `document.querySelector("#join-table").innerText`); strings.Contains(list, secret) {
		t.Fatal("the token list shows the token's secret")
	}

	// A real agent enrolls with the token from the page.
	first := filepath.Join(dir, "first")
	if err := os.MkdirAll(first, 0o700); err != nil {
		t.Fatal(err)
	}
	startAgent(t, first, grpcAddr, token)
	eventually(t, "the rig enrolled with the browser's token is online", time.Minute, func() bool {
		for _, r := range ctrl.rigs(t) {
			if r.Name == "web-rig" && r.Online {
				return true
			}
		}
		return false
	})

	// Revoked in the browser (two clicks: arm, confirm), one use left.
	rowSel := `#join-table tbody tr[data-token="` + id + `"] button`
	b.do("revoke join token",
		click(rowSel),
		waitText(rowSel, "Confirm"),
		click(rowSel),
		waitText("#join-result", "revoked"),
		waitJS(`!document.querySelector('#join-table tbody tr[data-token="`+id+`"]')`),
	)
	if out, err := ctrl.ctl(t, "token", "joins"); err != nil || strings.Contains(out, id) || !strings.Contains(out, "controller") {
		t.Errorf("quarryctl token joins after the revocation: %v\n%s", err, out)
	}
	if out, err := ctrl.ctl(t, "token", "revoke-join", id); err == nil || !strings.Contains(out, "no join token with that id") {
		t.Errorf("revoking the same join token again: %v\n%s", err, out)
	}
	second := filepath.Join(dir, "second")
	if err := os.MkdirAll(second, 0o700); err != nil {
		t.Fatal(err)
	}
	refused := startAgent(t, second, grpcAddr, token)
	eventually(t, "the second enrolment is refused", time.Minute, func() bool {
		return strings.Contains(refused.output(), "join token is unknown")
	})
	if n := len(ctrl.rigs(t)); n != 1 {
		t.Fatalf("%d rigs enrolled after the revoked token was used again, want 1", n)
	}

	// Admin tokens: created (shown once), listed, revoked.
	b.do("admin token",
		chromedp.SetValue(css("#admin-name"), "wall-two"),
		chromedp.SetValue(css("#admin-role"), "viewer"),
		chromedp.SetValue(css("#admin-ttl"), "2d"),
		click(`#admin-form button[type="submit"]`),
		waitJS(`(document.querySelector("#admin-secret-value") || {}).value?.startsWith("qat1.")`),
		waitText(`#admin-table tbody tr[data-name="wall-two"]`, "viewer"),
	)
	wallTwo := evalIn[string](b, "read admin token", `document.querySelector("#admin-secret-value").value`)
	if out, err := ctrl.ctl(t, "--token", wallTwo, "whoami"); err != nil || !strings.Contains(out, "wall-two (role viewer)") {
		t.Fatalf("the browser's admin token does not work: %v\n%s", err, out)
	}
	if page := evalIn[string](b, "admin list", `document.querySelector("#admin-table").innerText`); strings.Contains(page, wallTwo) {
		t.Fatal("the admin token list shows a token")
	}
	adminRow := `#admin-table tbody tr[data-name="wall-two"] button`
	b.do("revoke admin token",
		click(adminRow),
		click(adminRow),
		waitText("#admin-result", "wall-two revoked"),
		waitJS(`!document.querySelector('#admin-table tbody tr[data-name="wall-two"]')`),
	)
	if out, err := ctrl.ctl(t, "--token", wallTwo, "whoami"); err == nil {
		t.Fatalf("a revoked admin token still works: %s", out)
	}

	// Revoke the rig from the page.
	b.do("revoke rig",
		chromedp.SetValue(css("#revoke-rig"), "web-rig"),
		click(`#revoke-rig-form button`),
		click(`#revoke-rig-form button`),
		waitText("#revoke-rig-result", "Rig web-rig revoked"),
	)
	eventually(t, "the rig is revoked", 30*time.Second, func() bool {
		rs := ctrl.rigs(t)
		return len(rs) == 1 && rs[0].Revoked
	})

	// The audit log, filtered in the page: each change above is there
	// with the browser's user.
	b.do("audit filter",
		chromedp.SetValue(css("#audit-action"), "revoke"),
		click(`#audit-form button[type="submit"]`),
		waitText("#audit-table", "token revoke"),
		waitText("#audit-table", "admin token revoke"),
		waitText("#audit-table", "rig revoke"),
	)
	audit := evalIn[string](b, "audit", `document.querySelector("#audit-table tbody").innerText`)
	if strings.Contains(audit, "token create") || !strings.Contains(audit, "local-admin") || !strings.Contains(audit, id) {
		t.Errorf("filtered audit log in the page:\n%s", audit)
	}
	if out, err := ctrl.ctl(t, "audit", "--action", "token revoke", "--who", "local-admin"); err != nil || !strings.Contains(out, id) {
		t.Errorf("quarryctl audit lacks the browser's revocation: %v\n%s", err, out)
	}
	b.do("audit unfiltered",
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#audit-action").value = ""`),
		click(`#audit-form button[type="submit"]`),
		waitText("#audit-table", "token create"))
	b.screenshots(shots, "dashboard-access", "#/access", waitText("#audit-table", "token create"))

	// Lower roles: no controls, and the server refuses the calls.
	for _, who := range []struct{ token, name string }{{viewer, "wall-screen · viewer"}, {operator, "night-shift · operator"}} {
		b.signIn(who.token, who.name)
		b.do("access page as "+who.name,
			chromedp.Navigate(b.base+"#/access"),
			waitText("#access-denied", "admin role"))
		if n := evalIn[int](b, "controls", `document.querySelectorAll("#page-access form, #page-access button").length`); n != 0 {
			t.Errorf("%s sees %d access controls", who.name, n)
		}
		for method, body := range map[string]string{
			"FleetService/CreateToken":      `{"ttl_seconds": "3600"}`,
			"FleetService/ListTokens":       `{}`,
			"FleetService/RevokeToken":      `{"id": "` + id + `"}`,
			"FleetService/CreateAdminToken": `{"name": "sneaky", "role": "admin"}`,
			"FleetService/ListAudit":        `{}`,
			"FleetService/RevokeRig":        `{"rig": "web-rig"}`,
		} {
			if got := b.rpcStatus(method, body); got != 403 {
				t.Errorf("%s calling %s: HTTP %d, want 403", who.name, method, got)
			}
		}
	}
	out, err := ctrl.ctl(t, "audit", "--who", "night-shift", "--action", "authorize", "--target", "CreateToken")
	if err != nil || !strings.Contains(out, "denied") || !strings.Contains(out, "needs role admin") {
		t.Errorf("the operator's refused token creation is not audited: %v\n%s", err, out)
	}
}
