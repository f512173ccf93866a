package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// An operator follows a real agent's rig on the profit page, makes power
// at its site dear with a time-of-use rule, and the running controller
// stops the rig at its next decision; a change made from a stale version
// is refused with a message and the page reloads; an earlier version is
// restored from the page. The server's validation shows at the field it
// names. A viewer reads everything but gets no controls, and the server
// refuses and audits a change sent with the viewer's session.
func TestProfitPageInBrowser(t *testing.T) {
	dir := t.TempDir()
	_, cfgPath := profitSetup(t, dir)
	viewer := viewerToken(t, dir)
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr, "-config", cfgPath)
	operator := adminToken(t, ctrl, "ops", "operator")
	rigDir := filepath.Join(dir, "rig0")
	if err := os.MkdirAll(rigDir, 0o700); err != nil {
		t.Fatal(err)
	}
	startAgent(t, rigDir, grpcAddr, ctrl.newToken(t, "--rig-name", "rig0"))
	mining := func(prefix string) func() bool {
		return func() bool {
			p := ctrl.profit(t)
			return len(p.Rows) == 1 && strings.HasPrefix(p.Rows[0].Current, prefix)
		}
	}
	eventually(t, "rig0 mines etc on free power", time.Minute, mining("etc@"))
	settings := func(want ...string) {
		t.Helper()
		out, err := ctrl.ctl(t, "profit", "settings")
		for _, w := range want {
			if err != nil || !strings.Contains(out, w) {
				t.Fatalf("profit settings lack %q: %v\n%s", w, err, out)
			}
		}
	}

	b := openBrowser(t, dir, httpAddr, 4*time.Minute)
	shots := screenshotDir(t)
	b.signIn(operator, "ops · operator")
	b.do("page",
		chromedp.Navigate(b.base+"#/profit/rig0"),
		waitText("#profit-reason", "etc@2miners"),
		waitText("#profit-options", "rvn@2miners"),
		waitText("#profit-price", "$0/kWh"),
		waitText("#profit-switch-table", "resume"),
		waitText(`#profit-market [data-k="state"]`, "fresh"),
		waitText(`#profit-market [data-k="switching"]`, "active"),
		waitText("#profit-version", "Version 1 by config file (seed)"),
		waitJS(`document.querySelector("#profit-site-0-name") && document.querySelector("#profit-site-0-name").value === "default"`),
	)

	// The server's validation lands at the field it names, and nothing
	// is stored.
	b.do("bad time zone",
		setValue("#profit-site-0-timezone", "Mars/Olympus"),
		clickIn("#profit-save"),
		waitText(`[data-field="profit-site-0-timezone"] .field-error`, "Mars/Olympus"),
	)
	// A bad number is refused at its field before anything is sent.
	b.do("bad fee",
		setValue("#profit-opt-0-pool_fee", "lots"),
		clickIn("#profit-save"),
		waitText(`[data-field="profit-opt-0-pool_fee"] .field-error`, "a number"),
		setValue("#profit-opt-0-pool_fee", "1"),
	)
	settings("version 1 by config file (seed)")

	// Power costs $0.50/kWh all day: 7.2 kWh a day costs more than either
	// coin earns, so the switcher stops the rig at its next decision.
	b.do("tariff",
		setValue("#profit-site-0-timezone", "UTC"),
		clickIn("#profit-site-0-add-rule"),
		waitJS(`!!document.querySelector("#profit-site-0-rule-0-price")`),
		setValue("#profit-site-0-rule-0-days", ""),
		setValue("#profit-site-0-rule-0-from", "0"),
		setValue("#profit-site-0-rule-0-to", "24"),
		setValue("#profit-site-0-rule-0-price", "0.5"),
		clickIn("#profit-save"),
		waitText("#profit-settings-result", "Stored version 2"),
		waitText("#profit-version", "Version 2 by ops"),
	)
	settings("version 2 by ops")
	eventually(t, "rig0 stopped for the dear power", time.Minute, mining("off"))
	out, err := ctrl.ctl(t, "profit", "sites", "list")
	if err != nil || !strings.Contains(out, "0-24=0.5") {
		t.Fatalf("the tariff from the page is not stored: %v\n%s", err, out)
	}
	// The page follows the switcher by itself.
	b.do("curtailed", waitText("#profit-price", "$0.5/kWh"), waitText("#profit-switch-table", "curtail"), waitText("#profit-reason", "off"))

	// Someone stores a version between the page's load and its save: the
	// save is refused, said so, and the page shows what is in force.
	b.do("reload", chromedp.Navigate(b.base+"#/"), chromedp.Navigate(b.base+"#/profit/rig0"),
		waitText("#profit-version", "Version 2"), chromedp.WaitVisible(css("#profit-policy-relative")))
	out, err = ctrl.ctl(t, "profit", "policy", "set", "--min-dwell", "1s")
	if err != nil || !strings.Contains(out, "stored version 3") {
		t.Fatalf("policy set: %v\n%s", err, out)
	}
	b.do("conflict",
		setValue("#profit-policy-relative", "7"),
		clickIn("#profit-save"),
		waitText("#profit-settings-result", "someone else changed the settings"),
		waitText("#profit-version", "Version 3 by local-admin"),
		waitJS(`document.querySelector("#profit-policy-min_dwell").value === "1" && document.querySelector("#profit-policy-relative").value === "5"`),
	)
	settings("version 3 by local-admin", "2 edits since")

	// Version 1 back from the page: free power again, and the rig mines.
	b.do("restore",
		clickIn(`#profit-version-table tr[data-version="1"] button[data-restore]`),
		waitText("#profit-versions-result", "Stored version 4"),
		waitText("#profit-version", "Version 4 by ops"),
		waitJS(`document.querySelectorAll("[id^=profit-site-0-rule-]").length === 0`),
	)
	settings("version 4 by ops")
	eventually(t, "rig0 mines again after the restore", time.Minute, mining("etc@"))
	out, err = ctrl.ctl(t, "audit", "--action", "profit.settings-", "--who", "ops")
	if err != nil || !strings.Contains(out, "profit.settings-update") || !strings.Contains(out, "profit.settings-restore") {
		t.Errorf("the page's save and restore are not audited: %v\n%s", err, out)
	}
	shown := waitJS(`(() => { const r = document.querySelector("#profit-reason"); return !!r && r.innerText.includes("etc@2miners") &&
		!!document.querySelector("#profit-save") && !!document.querySelector('#profit-version-table tr[data-version="4"]'); })()`)
	b.screenshots(shots, "dashboard-profit", "#/profit/rig0", shown)
	// The whole form fits a narrow phone too, a tariff rule included.
	b.do("narrow phone",
		chromedp.EmulateViewport(360, 740, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(b.base+"#/"), chromedp.Navigate(b.base+"#/profit/rig0"), shown,
		clickIn("#profit-site-0-add-rule"), waitJS(`!!document.querySelector("#profit-site-0-rule-0-price")`))
	if evalIn[bool](b, "measure", `document.documentElement.scrollWidth > window.innerWidth + 1`) {
		t.Error("on a 360px screen the profit page scrolls sideways")
	}
	b.do("desktop", chromedp.EmulateViewport(1280, 900))

	// A viewer reads the decision and the settings, with no controls.
	b.signIn(viewer, "wall-screen · viewer")
	b.do("viewer",
		chromedp.Navigate(b.base+"#/profit/rig0"),
		waitText("#profit-reason", "etc@2miners"),
		waitText("#profit-view-sites", "default"),
		waitText("#profit-version-table", "ops"),
	)
	if n := evalIn[int](b, "controls", `document.querySelectorAll("#page-profit form, #page-profit button, #page-profit input, #page-profit textarea").length`); n != 0 {
		t.Errorf("a viewer sees %d profit settings controls", n)
	}
	for method, body := range map[string]string{
		"ProfitService/UpdateProfitSettings":  `{"base_version": "4", "settings": {"default_site": "default", "policy": {"relative_threshold": 0.05, "smoothing": 1}}}`,
		"ProfitService/RestoreProfitSettings": `{"version": "2", "base_version": "4"}`,
	} {
		if got := b.rpcStatus(method, body); got != 403 {
			t.Errorf("viewer calling %s: HTTP %d, want 403", method, got)
		}
	}
	out, err = ctrl.ctl(t, "audit", "--who", "wall-screen", "--action", "authorize")
	if err != nil || !strings.Contains(out, "UpdateProfitSettings") || !strings.Contains(out, "RestoreProfitSettings") || !strings.Contains(out, "denied") {
		t.Errorf("the viewer's refused changes are not audited: %v\n%s", err, out)
	}
	settings("version 4 by ops")
}
