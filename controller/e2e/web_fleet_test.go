package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quarryfleet/quarry/agent/miner"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/store"
)

// adminTokens adds dashboard credentials of the given roles to a
// controller's database before the controller starts, name → role in,
// name → token out.
func adminTokens(t *testing.T, dir string, roles map[string]string) map[string]string {
	t.Helper()
	dataDir := filepath.Join(dir, "quarry-data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dataDir, "quarry.db"), fleet.Buckets...)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f, err := fleet.Open(db, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	for name, role := range roles {
		tok, err := f.CreateAdminToken(name, role)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = tok
	}
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// browser is one headless Chromium driven by a test, with helpers that
// fail the test with the page's text when a step fails.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
}

func newBrowser(t *testing.T, dir, httpAddr string, timeout time.Duration) *browser {
	t.Helper()
	chrome := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(filepath.Join(dir, "chrome")))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelCtx)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	t.Cleanup(cancel)
	return &browser{t: t, ctx: ctx, base: "http://" + httpAddr + "/"}
}

func (b *browser) must(what string, err error) {
	b.t.Helper()
	if err != nil {
		page, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
		b.t.Fatalf("%s: %v\npage:\n%s", what, err, page)
	}
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	for i, st := range steps {
		_, err := chromedp.Run(b.ctx, st)
		b.must(fmt.Sprintf("%s, step %d", what, i+1), err)
	}
}

func (b *browser) eval(what, expr string) any {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](expr, chromedp.EvalAwaitPromise))
	b.must(what, err)
	return v
}

func (b *browser) signIn(token, who string) {
	b.t.Helper()
	b.do("sign in as "+who,
		chromedp.Navigate(b.base),
		chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), token),
		chromedp.Click(css(`#login-form button[type="submit"]`)),
		waitText("#who", who))
}

func (b *browser) signOut() {
	b.t.Helper()
	b.do("sign out", chromedp.Click(css("#logout")), chromedp.WaitVisible(css("#token")))
}

// screenshot saves the page; phone also checks that a 390 px wide screen
// needs no sideways scrolling.
func (b *browser) screenshot(dir, name string, phone bool) {
	b.t.Helper()
	if phone {
		overflow := b.eval("measure", `document.documentElement.scrollWidth > window.innerWidth + 1`)
		if overflow != false {
			wide := b.eval("widest", `[...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".scroll")).slice(0, 5).map((e) => e.tagName + "#" + e.id + "." + e.className).join(", ")`)
			b.t.Errorf("%s: on a 390px screen the page scrolls sideways (%v)", name, wide)
		}
		png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
		b.must("screenshot", err)
		writePNG(b.t, dir, name, png)
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	b.must("screenshot", err)
	writePNG(b.t, dir, name, png)
}

// rpcStatus posts to the dashboard's service gateway from the page, with
// the session's CSRF header, and returns the HTTP status.
func (b *browser) rpcStatus(method, body string) int {
	b.t.Helper()
	v := b.eval("fetch "+method, `(async () => {
		const s = await (await fetch("/api/session")).json();
		const r = await fetch("/api/rpc/quarry.v1.`+method+`", {method: "POST", headers: {"X-Quarry-CSRF": s.csrf, "Content-Type": "application/json"}, body: `+"`"+body+"`"+`});
		return r.status; })()`)
	f, _ := v.(float64)
	return int(f)
}

// fakeMinerRigs starts n real agents that may run the fake miner from
// minersDir, enrolled under the given names, and waits until they are
// online. It returns the fake miner's path and sha256.
func fakeMinerRigs(t *testing.T, dir string, ctrl *controller, names ...string) (path, sum string) {
	t.Helper()
	minersDir := filepath.Join(dir, "miners")
	path = filepath.Join(minersDir, "fakeminer")
	if out, err := exec.Command("go", "build", "-o", path, "github.com/quarryfleet/quarry/pkg/minerapi/fakeminer").CombinedOutput(); err != nil {
		t.Fatalf("build fakeminer: %v\n%s", err, out)
	}
	sum, err := miner.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfgFile, []byte(fakeMinerAgentConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		adir := filepath.Join(dir, name)
		if err := os.MkdirAll(adir, 0o700); err != nil {
			t.Fatal(err)
		}
		startAgent(t, adir, ctrl.grpc, ctrl.newToken(t, "--rig-name", name), "-config", cfgFile, "-miners-dir", minersDir, "-report-interval", "500ms")
	}
	eventually(t, "rigs online", time.Minute, func() bool {
		rigs := ctrl.rigs(t)
		for _, n := range names {
			if r, ok := rigByName(t, rigs, n); !ok || !r.Online {
				return false
			}
		}
		return true
	})
	return path, sum
}

// An operator writes a flight sheet in the browser (a pool URL without a
// port is refused at its field), applies it to two ticked rigs of three,
// and sees each rig's result and its miner running; the third rig runs
// nothing. A viewer sees the sheet but no edit controls, and the server
// refuses a viewer's calls made directly.
func TestFlightSheetsInBrowser(t *testing.T) {
	dir := t.TempDir()
	toks := adminTokens(t, dir, map[string]string{"ops": fleet.RoleOperator, "wall": fleet.RoleViewer})
	ctrl := startController(t, dir, freePort(t), freePort(t))
	fake, sum := fakeMinerRigs(t, dir, ctrl, "rig-a", "rig-b", "rig-c")
	b := newBrowser(t, dir, ctrl.http, 3*time.Minute)
	shots := screenshotDir(t)

	b.signIn(toks["ops"], "ops · operator")
	b.do("open the page",
		chromedp.Navigate(b.base+"#/flightsheets"),
		chromedp.WaitVisible(css("#fs-new")),
		chromedp.Click(css("#fs-new")),
		chromedp.WaitVisible(css("#fs-form")))
	set := func(name, value string) chromedp.Action[chromedp.Void] {
		return chromedp.SendKeys(css(`#fs-form [name="`+name+`"]`), value)
	}
	// Saving with required fields empty is refused here, nothing sent.
	b.do("empty form",
		chromedp.Click(css("#fs-save")),
		waitText(`[data-field="coin"] .field-error`, "is required"),
		waitText(`[data-field="pools[0].url"] .field-error`, "is required"))
	b.do("fill the form",
		set("name", "rvn-web"), set("coin", "RVN"), set("algorithm", "kawpow"), set("miner.name", "custom"),
		set("miner.path", fake), set("miner.sha256", sum),
		set("extra_args", "-log-interval\n200ms"), set("expected_hashrate", "54 MH/s"),
		set("pools[0].url", "stratum+tcp://rvn.example.org"), set("pools[0].user", "RWallet.web"),
		chromedp.Click(css("#fs-save")),
		// The server's refusal lands at the field it names.
		waitText(`[data-field="pools[0].url"] .field-error`, "needs a port"),
		chromedp.WaitVisible(css(`[data-field="pools[0].url"].invalid`)))
	if n := b.eval("rows", `document.querySelectorAll("#fs-table tbody tr").length`); n != float64(0) {
		t.Fatalf("a refused sheet is listed (%v rows)", n)
	}
	b.do("fix and save",
		set("pools[0].url", ":6060"),
		chromedp.Click(css("#fs-save")),
		chromedp.WaitNotVisible(css("#fs-editor")),
		waitText(`#fs-table tr[data-sheet="rvn-web"]`, "kawpow"))
	b.screenshot(shots, "dashboard-flightsheets.png", false)

	// Editing reads the stored sheet back into the form.
	b.do("edit",
		chromedp.Click(css(`#fs-table tr[data-sheet="rvn-web"] button[data-act="edit"]`)),
		chromedp.WaitVisible(css("#fs-form")),
		waitJS(`document.querySelector('#fs-form [name="pools[0].url"]').value === "stratum+tcp://rvn.example.org:6060"`),
		waitJS(`document.querySelector('#fs-form [name="expected_hashrate"]').value === "54 MH/s"`),
		chromedp.Click(css("#fs-cancel")))

	// Apply to the two ticked rigs.
	b.do("apply",
		chromedp.Click(css(`#fs-table tr[data-sheet="rvn-web"] button[data-act="apply"]`)),
		chromedp.WaitVisible(css("#fs-apply")),
		waitJS(`document.querySelectorAll("#fs-rigs tbody tr").length === 3`),
		chromedp.Click(css(`#fs-rigs tr[data-name="rig-a"] input[type=checkbox]`)),
		chromedp.Click(css(`#fs-rigs tr[data-name="rig-b"] input[type=checkbox]`)),
		waitText("#fs-ticked", "2 rigs ticked"),
		chromedp.Click(css("#fs-apply-go")),
		waitJS(`document.querySelectorAll("#fs-results tbody tr").length === 2`))
	for _, rig := range []string{"rig-a", "rig-b"} {
		row := `#fs-results tbody tr:nth-child(` + map[string]string{"rig-a": "1", "rig-b": "2"}[rig] + `)`
		b.do("result of "+rig,
			waitText(row+" td:first-child", rig),
			waitText(row+" td.res", "succeeded"),
			waitText(row+" td.miner", "running"))
	}
	for _, rig := range []string{"rig-a", "rig-b"} {
		eventually(t, rig+" mines the sheet", 30*time.Second, func() bool {
			ms := ctrl.rigMiners(t, rig)
			return len(ms) == 1 && ms[0].State == "running" && ms[0].Hashrate == fakeTrexHashrate
		})
	}
	if ms := ctrl.rigMiners(t, "rig-c"); len(ms) != 0 {
		t.Errorf("rig-c was not ticked but reports miners %+v", ms)
	}
	if n := len(minerPIDs(t, fake)); n != 2 {
		t.Errorf("%d fake miners run, want 2 (one per ticked rig)", n)
	}
	b.screenshot(shots, "dashboard-flightsheets-apply.png", false)
	audit, _ := ctrl.ctl(t, "audit")
	for _, want := range []string{"flightsheet put", "flightsheet apply", "ops"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %q:\n%s", want, audit)
		}
	}

	b.do("phone",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(b.base+"#/flightsheets"),
		waitText(`#fs-table tr[data-sheet="rvn-web"]`, "kawpow"),
		chromedp.Click(css(`#fs-table tr[data-sheet="rvn-web"] button[data-act="edit"]`)),
		chromedp.WaitVisible(css("#fs-form")))
	b.screenshot(shots, "dashboard-flightsheets-phone.png", true)
	b.do("desktop", chromedp.EmulateViewport(1280, 900))

	// A viewer sees the list but nothing that changes it, and the server
	// refuses the calls anyway.
	b.signOut()
	b.signIn(toks["wall"], "wall · viewer")
	b.do("viewer page",
		chromedp.Navigate(b.base+"#/flightsheets"),
		waitText(`#fs-table tr[data-sheet="rvn-web"]`, "kawpow"))
	controls := b.eval("controls", `[...document.querySelectorAll("#page-flightsheets button")].filter((x) => x.offsetParent !== null && /^(New flight sheet|Edit|Apply|Delete)$/.test(x.textContent)).length`)
	if controls != float64(0) {
		t.Errorf("a viewer sees %v edit controls", controls)
	}
	sheet := "name: x\ncoin: RVN\nalgorithm: kawpow\nminer: {name: custom, path: " + fake + ", sha256: " + sum + "}\npools: [{url: \"stratum+tcp://a.example:1\", user: w}]\n"
	for method, body := range map[string]string{
		"MinerService/PutFlightSheet":    `{"yaml": "` + b64(sheet) + `"}`,
		"MinerService/ApplyFlightSheet":  `{"name": "rvn-web", "selector": "rig-c"}`,
		"MinerService/DeleteFlightSheet": `{"name": "rvn-web"}`,
	} {
		if code := b.rpcStatus(method, body); code != 403 {
			t.Errorf("viewer's %s: HTTP %d, want 403", method, code)
		}
	}
	if ms := ctrl.rigMiners(t, "rig-c"); len(ms) != 0 {
		t.Errorf("a viewer's apply reached rig-c: %+v", ms)
	}
}
