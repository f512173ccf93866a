package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/agent/miner"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/ocprofile"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
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
	f, err := fleet.Open(store.NewDB(db), fleet.Options{})
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

// waitIn waits until the element is shown and its text contains want,
// looking it up afresh each time: the fleet pages re-render their tables.
func waitIn(sel, want string) chromedp.Action[chromedp.Void] {
	return waitJS(fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.getClientRects().length > 0 && e.innerText.includes(%q); })()`, sel, want))
}

// clickIn clicks the element once it is shown, looking it up afresh: a
// node kept from an earlier lookup may have been replaced by a re-render.
func clickIn(sel string) chromedp.Action[chromedp.Void] {
	return waitJS(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e || e.getClientRects().length === 0) return false; e.click(); return true; })()`, sel))
}

// setValue sets a field's value and tells the page, as typing would.
func setValue(sel, v string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %q; e.dispatchEvent(new Event("input", {bubbles: true})); e.dispatchEvent(new Event("change", {bubbles: true})); })()`, sel, v))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

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
// nothing. On the overview the operator searches, labels two rigs, filters
// by the label and applies the sheet to, pauses and resumes the third
// rig, each with its result. A viewer sees the sheet but no edit
// controls, and the server refuses a viewer's calls made directly.
func TestFlightSheetsInBrowser(t *testing.T) {
	dir := t.TempDir()
	toks := adminTokens(t, dir, map[string]string{"ops": fleet.RoleOperator, "wall": fleet.RoleViewer})
	ctrl := startController(t, dir, freePort(t), freePort(t))
	fake, sum := fakeMinerRigs(t, dir, ctrl, "rig-a", "rig-b", "rig-c")
	b := openBrowser(t, dir, ctrl.http, 3*time.Minute)
	shots := screenshotDir(t)

	b.signIn(toks["ops"], "ops · operator")
	b.do("open the page",
		chromedp.Navigate(b.base+"#/flightsheets"),
		chromedp.WaitVisible(css("#fs-new")),
		clickIn("#fs-new"),
		chromedp.WaitVisible(css("#fs-form")))
	set := func(name, value string) chromedp.Action[chromedp.Void] {
		return chromedp.SendKeys(css(`#fs-form [name="`+name+`"]`), value)
	}
	// Saving with required fields empty is refused here, nothing sent.
	b.do("empty form",
		clickIn("#fs-save"),
		waitIn(`[data-field="coin"] .field-error`, "is required"),
		waitIn(`[data-field="pools[0].url"] .field-error`, "is required"))
	b.do("fill the form",
		set("name", "rvn-web"), set("coin", "RVN"), set("algorithm", "kawpow"), set("miner.name", "custom"),
		set("miner.path", fake), set("miner.sha256", sum),
		set("extra_args", "-log-interval\n200ms"), set("expected_hashrate", "54 MH/s"),
		set("pools[0].url", "stratum+tcp://rvn.example.org"), set("pools[0].user", "RWallet.web"),
		clickIn("#fs-save"),
		// The server's refusal lands at the field it names.
		waitIn(`[data-field="pools[0].url"] .field-error`, "needs a port"),
		chromedp.WaitVisible(css(`[data-field="pools[0].url"].invalid`)))
	if n := b.eval("rows", `document.querySelectorAll("#fs-table tbody tr").length`); n != float64(0) {
		t.Fatalf("a refused sheet is listed (%v rows)", n)
	}
	b.do("fix and save",
		set("pools[0].url", ":6060"),
		clickIn("#fs-save"),
		chromedp.WaitNotVisible(css("#fs-editor")),
		waitIn(`#fs-table tr[data-sheet="rvn-web"]`, "kawpow"))
	b.screenshot(shots, "dashboard-flightsheets.png", false)

	// Editing reads the stored sheet back into the form.
	b.do("edit",
		clickIn(`#fs-table tr[data-sheet="rvn-web"] button[data-act="edit"]`),
		chromedp.WaitVisible(css("#fs-form")),
		waitJS(`document.querySelector('#fs-form [name="pools[0].url"]').value === "stratum+tcp://rvn.example.org:6060"`),
		waitJS(`document.querySelector('#fs-form [name="expected_hashrate"]').value === "54 MH/s"`),
		clickIn("#fs-cancel"))

	// Apply to the two ticked rigs.
	b.do("apply",
		clickIn(`#fs-table tr[data-sheet="rvn-web"] button[data-act="apply"]`),
		chromedp.WaitVisible(css("#fs-apply")),
		waitJS(`document.querySelectorAll("#fs-rigs tbody tr").length === 3`),
		clickIn(`#fs-rigs tr[data-name="rig-a"] input[type=checkbox]`),
		clickIn(`#fs-rigs tr[data-name="rig-b"] input[type=checkbox]`),
		waitIn("#fs-ticked", "2 rigs ticked"),
		clickIn("#fs-apply-go"),
		waitJS(`document.querySelectorAll("#fs-results tbody tr").length === 2`))
	for _, rig := range []string{"rig-a", "rig-b"} {
		row := `#fs-results tbody tr:nth-child(` + map[string]string{"rig-a": "1", "rig-b": "2"}[rig] + `)`
		b.do("result of "+rig,
			waitIn(row+" td:first-child", rig),
			waitIn(row+" td.res", "succeeded"),
			waitIn(row+" td.miner", "running"))
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

	// The overview: search and filters run on the server; bulk actions on
	// the ticked rows report each rig's result.
	rows := func(n int) chromedp.Action[chromedp.Void] {
		return waitJS(fmt.Sprintf(`document.querySelectorAll("#rig-table tbody tr").length === %d`, n))
	}
	tickRig := func(name string) chromedp.Action[chromedp.Void] {
		return clickIn(`#rig-table tbody td.col-pick input[data-name="` + name + `"]`)
	}
	b.do("search",
		chromedp.Navigate(b.base+"#/"),
		rows(3),
		chromedp.SendKeys(css("#rig-q"), "g-c"), // part of rig-c's name, never the start of an id ("rig-" and hex)
		rows(1),
		waitIn("#rig-range", "1 matching"),
		setValue("#rig-q", ""), chromedp.SendKeys(css("#rig-q"), "rig-"),
		rows(3))
	b.do("label two rigs",
		tickRig("rig-b"), tickRig("rig-c"),
		waitIn("#rig-picked", "2 rigs selected"),
		chromedp.SendKeys(css("#bulk-labels"), "site=eu"),
		clickIn("#bulk-labels-go"),
		waitJS(`document.querySelectorAll("#bulk-results tbody tr").length === 2`),
		waitIn("#bulk-results tbody tr:nth-child(1) td.res", "labels now site=eu"),
		waitIn("#bulk-results tbody tr:nth-child(2) td.res", "labels now site=eu"))
	b.do("filter by label",
		chromedp.SendKeys(css("#rig-selector"), "tag=site=eu"),
		rows(2),
		waitIn("#rig-range", "2 matching"))
	if got := b.eval("rows", `[...document.querySelectorAll("#rig-table tbody tr td:first-child")].map((td) => td.textContent.trim()).join(",")`); got != "rig-b,rig-c" {
		t.Errorf("rigs labelled site=eu: %v", got)
	}
	b.do("apply to rig-c from the overview",
		clickIn("#bulk-none"),
		tickRig("rig-c"),
		waitIn("#rig-picked", "1 rig selected"),
		waitJS(`[...document.querySelectorAll("#bulk-sheet option")].some((o) => o.value === "rvn-web")`),
		setValue("#bulk-sheet", "rvn-web"),
		clickIn("#bulk-apply"),
		waitIn("#bulk-results tbody tr:nth-child(1) td:first-child", "rig-c"),
		waitIn("#bulk-results tbody tr:nth-child(1) td.res", "succeeded"))
	eventually(t, "rig-c mines too", 30*time.Second, func() bool {
		ms := ctrl.rigMiners(t, "rig-c")
		return len(ms) == 1 && ms[0].State == "running" && len(minerPIDs(t, fake)) == 3
	})
	b.screenshot(shots, "dashboard-rigs-bulk.png", false)
	b.do("pause rig-c", clickIn(`#rig-bulk button[data-kind="COMMAND_KIND_PAUSE"]`),
		waitIn("#bulk-results tbody tr:nth-child(1) td:nth-child(2)", "pause"),
		waitIn("#bulk-results tbody tr:nth-child(1) td.res", "succeeded"))
	eventually(t, "rig-c's miner stopped", 30*time.Second, func() bool { return len(minerPIDs(t, fake)) == 2 })
	b.do("resume rig-c", clickIn(`#rig-bulk button[data-kind="COMMAND_KIND_RESUME"]`),
		waitIn("#bulk-results tbody tr:nth-child(1) td:nth-child(2)", "resume"),
		waitIn("#bulk-results tbody tr:nth-child(1) td.res", "succeeded"))
	eventually(t, "rig-c's miner back", 30*time.Second, func() bool { return len(minerPIDs(t, fake)) == 3 })
	audit, _ = ctrl.ctl(t, "audit")
	for _, want := range []string{"rig label", "COMMAND_KIND_PAUSE", "COMMAND_KIND_RESUME"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %q:\n%s", want, audit)
		}
	}
	b.do("bulk on a phone",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		rows(2),
		chromedp.WaitVisible(css("#bulk-apply")))
	b.screenshot(shots, "dashboard-rigs-bulk-phone.png", true)

	b.do("phone",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(b.base+"#/flightsheets"),
		waitIn(`#fs-table tr[data-sheet="rvn-web"]`, "kawpow"),
		clickIn(`#fs-table tr[data-sheet="rvn-web"] button[data-act="edit"]`),
		chromedp.WaitVisible(css("#fs-form")))
	b.screenshot(shots, "dashboard-flightsheets-phone.png", true)
	b.do("desktop", chromedp.EmulateViewport(1280, 900))

	// A viewer sees the list but nothing that changes it, and the server
	// refuses the calls anyway.
	b.signOut()
	b.signIn(toks["wall"], "wall · viewer")
	b.do("viewer page",
		chromedp.Navigate(b.base+"#/flightsheets"),
		waitIn(`#fs-table tr[data-sheet="rvn-web"]`, "kawpow"))
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
	if n := b.eval("sheets", `(async () => (await (await fetch("/api/rpc/quarry.v1.MinerService/ListFlightSheets", {method: "POST", headers: {"X-Quarry-CSRF": (await (await fetch("/api/session")).json()).csrf}, body: "{}"})).json()).sheets.length)()`); n != float64(1) {
		t.Errorf("after a viewer's refused put and delete there are %v sheets, want 1", n)
	}
}

// ocRig is an in-process rig: the real link client, enrollment and report
// buffer over mutual TLS, with two cards that report their limits (the
// test machine has none to overclock). It records every overclock file it
// is sent and reports the profile each card then runs.
type ocRig struct {
	t   *testing.T
	buf *link.Buffer
	mu  sync.Mutex
	got [][]byte
}

func (o *ocRig) report(applied map[uint32]string) {
	o.t.Helper()
	f := func(v float64) *float64 { return &v }
	u := func(v uint32) *uint32 { return &v }
	r := &quarryv1.Report{TimeUnixNano: time.Now().UnixNano()}
	for i, name := range []string{"NVIDIA GeForce RTX 3070", "NVIDIA GeForce RTX 3080"} {
		idx := uint32(i)
		r.Gpus = append(r.Gpus, &quarryv1.GPUStats{Index: idx, Vendor: "nvidia", Name: name, Uuid: fmt.Sprintf("GPU-%d", i), BusId: fmt.Sprintf("00000000:0%d:00.0", i+1),
			TemperatureC: f(60), FanPercent: []float64{50}, PowerW: f(120), PowerLimitW: f(150 + 50*float64(i)), PowerLimitDefaultW: f(220 + 100*float64(i)),
			PowerLimitMinW: f(100 + 50*float64(i)), PowerLimitMaxW: f(220 + 100*float64(i)), SmClockMaxMhz: u(2100), MemoryClockMaxMhz: u(7001 + 2500*uint32(i)),
			AppliedProfile: applied[idx]})
	}
	if _, err := o.buf.Append(r); err != nil {
		o.t.Error(err)
	}
}

func (o *ocRig) HandleCommand(_ context.Context, cmd *quarryv1.Command) ([]byte, error) {
	if cmd.Kind != quarryv1.CommandKind_COMMAND_KIND_SET_OVERCLOCK {
		return nil, fmt.Errorf("unsupported %s", cmd.Kind)
	}
	o.mu.Lock()
	o.got = append(o.got, cmd.Payload)
	o.mu.Unlock()
	f := &ocprofile.File{}
	if len(cmd.Payload) > 0 {
		var err error
		if f, err = ocprofile.Parse(bytes.NewReader(cmd.Payload)); err != nil {
			return nil, err
		}
	}
	applied := map[uint32]string{}
	var out []string
	for i, name := range []string{"NVIDIA GeForce RTX 3070", "NVIDIA GeForce RTX 3080"} {
		p, err := f.Select(ocprofile.Card{Index: i, UUID: fmt.Sprintf("GPU-%d", i), Name: name})
		if err != nil {
			return nil, err
		}
		n := "defaults"
		if p != nil {
			n = p.Name
			applied[uint32(i)] = p.Name
		}
		out = append(out, fmt.Sprintf("GPU %d: %s", i, n))
	}
	o.report(applied)
	return []byte(strings.Join(out, ", ")), nil
}

func (o *ocRig) payloads() [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([][]byte(nil), o.got...)
}

func startOCRig(t *testing.T, dir, grpcAddr, token string) *ocRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	id, err := link.Enroll(ctx, filepath.Join(dir, "pki"), grpcAddr, token, "oc-rig-host")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "agent.db"), link.Buckets...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	buf, err := link.OpenBuffer(db, 1000, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	o := &ocRig{t: t, buf: buf}
	o.report(nil)
	cl := &link.Client{Addr: grpcAddr, ServerName: "127.0.0.1", Identity: id, Buffer: buf, Handler: o, Log: log,
		Hello: func() *quarryv1.Hello { return &quarryv1.Hello{Hostname: "oc-rig-host", Version: "test"} }}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = cl.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); db.Close() })
	return o
}

// The overclock page shows each card's allowed ranges; an out-of-range
// value is refused at its field with nothing sent; an in-range profile is
// stored, applied and reaches the rig, and clearing sends the empty file.
// The server refuses an out-of-range apply made directly, and a viewer's
// changes.
func TestOverclockInBrowser(t *testing.T) {
	dir := t.TempDir()
	toks := adminTokens(t, dir, map[string]string{"ops": fleet.RoleOperator, "wall": fleet.RoleViewer})
	ctrl := startController(t, dir, freePort(t), freePort(t))
	rig := startOCRig(t, filepath.Join(dir, "oc-rig"), ctrl.grpc, ctrl.newToken(t, "--rig-name", "oc-rig"))
	eventually(t, "rig online with its cards", 30*time.Second, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "oc-rig")
		return ok && r.Online && u(r.Reports) > 0
	})
	b := openBrowser(t, dir, ctrl.http, 2*time.Minute)
	shots := screenshotDir(t)
	b.signIn(toks["ops"], "ops · operator")
	b.do("cards",
		chromedp.Navigate(b.base+"#/overclock/oc-rig"),
		waitJS(`document.querySelectorAll("#oc-cards tbody tr").length === 2`),
		waitIn(`#oc-cards tr[data-gpu="0"] .allowed-power`, "100–220 W"),
		waitIn(`#oc-cards tr[data-gpu="1"] .allowed-power`, "150–320 W"),
		clickIn("#oc-new"),
		chromedp.WaitVisible(css("#oc-form")))
	set := func(name, value string) chromedp.Action[chromedp.Void] {
		return chromedp.SendKeys(css(`#oc-form [name="`+name+`"]`), value)
	}
	// Count the page's calls to the services from here on.
	b.eval("count calls", `(() => { window.__rpc = 0; const f = window.fetch; window.fetch = (...a) => { if (String(a[0]).includes("/api/rpc/")) window.__rpc++; return f(...a); }; return true; })()`)
	b.do("out of range",
		set("name", "eco"), set("match.model", "NVIDIA GeForce RTX 3070"), set("power_limit_w", "300"),
		waitIn(`[data-field="power_limit_w"] .hint`, "GPU 0: 100–220 W"),
		clickIn("#oc-save"),
		waitIn(`[data-field="power_limit_w"] .field-error`, "GPU 0 (NVIDIA GeForce RTX 3070) allows 100–220 W"),
		waitIn("#oc-form-error", "Nothing was sent"))
	if n := b.eval("calls", `window.__rpc`); n != float64(0) {
		t.Errorf("an out-of-range profile made %v service calls", n)
	}
	if n := len(rig.payloads()); n != 0 {
		t.Fatalf("the rig got %d overclock files", n)
	}
	b.screenshot(shots, "dashboard-overclock.png", false)
	b.do("in range",
		setValue(`#oc-form [name="power_limit_w"]`, ""), set("power_limit_w", "130"),
		set("mem_clock_mhz.min", "5000"), set("mem_clock_mhz", "7000"),
		clickIn("#oc-save-apply"),
		waitIn(`#oc-table tr[data-profile="eco"]`, "130 W"),
		waitIn("#oc-result", "GPU 0: eco, GPU 1: defaults"),
		waitIn(`#oc-cards tr[data-gpu="0"]`, "eco"))
	eventually(t, "the rig got the profile", 10*time.Second, func() bool { return len(rig.payloads()) == 1 })
	sent, err := ocprofile.Parse(bytes.NewReader(rig.payloads()[0]))
	if err != nil || len(sent.Profiles) != 1 || sent.Profiles[0].Name != "eco" || *sent.Profiles[0].PowerLimitW != 130 || sent.Profiles[0].MemClockMHz.Max != 7000 {
		t.Fatalf("the rig got %q (%v)", rig.payloads()[0], err)
	}

	// The server refuses what the page would: a profile stored for other
	// cards is still checked against this rig's before it is sent.
	if code := b.rpcStatus("OverclockService/PutOverclockProfile", `{"profile": {"name": "hot", "match": {"index": [1]}, "power_limit_w": 400}}`); code != 200 {
		t.Fatalf("store hot: HTTP %d", code)
	}
	if code := b.rpcStatus("OverclockService/ApplyOverclock", `{"rig": "oc-rig", "profiles": ["hot"]}`); code != 400 {
		t.Errorf("out-of-range apply: HTTP %d, want 400", code)
	}
	if code := b.rpcStatus("OverclockService/PutOverclockProfile", `{"profile": {"name": "loud", "match": {"index": [0]}, "fan_percent": 150}}`); code != 400 {
		t.Errorf("fan 150%%: HTTP %d, want 400", code)
	}
	if n := len(rig.payloads()); n != 1 {
		t.Errorf("the rig got %d files, want only the in-range one", n)
	}
	b.do("clear",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		clickIn("#oc-clear"),
		waitIn("#oc-result", "GPU 0: defaults, GPU 1: defaults"))
	if p := rig.payloads(); len(p) != 2 || len(p[1]) != 0 {
		t.Errorf("clear sent %q", p)
	}
	audit, _ := ctrl.ctl(t, "audit")
	for _, want := range []string{"oc profile put", "oc apply", "oc clear"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %q:\n%s", want, audit)
		}
	}

	b.do("phone",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(b.base+"#/overclock/oc-rig"),
		waitJS(`document.querySelectorAll("#oc-cards tbody tr").length === 2`))
	b.screenshot(shots, "dashboard-overclock-phone.png", true)
	b.do("desktop", chromedp.EmulateViewport(1280, 900))

	b.signOut()
	b.signIn(toks["wall"], "wall · viewer")
	b.do("viewer",
		chromedp.Navigate(b.base+"#/overclock/oc-rig"),
		waitIn(`#oc-table tr[data-profile="eco"]`, "130 W"),
		waitJS(`document.querySelectorAll("#oc-cards tbody tr").length === 2`))
	if v := b.eval("controls", `[...document.querySelectorAll("#page-overclock button")].filter((x) => x.offsetParent !== null && /^(New profile|Edit|Delete|Apply|Clear overclock)$/.test(x.textContent)).length`); v != float64(0) {
		t.Errorf("a viewer sees %v overclock controls", v)
	}
	for method, body := range map[string]string{
		"OverclockService/PutOverclockProfile":    `{"profile": {"name": "v", "match": {"index": [0]}, "fan_percent": 50}}`,
		"OverclockService/ApplyOverclock":         `{"rig": "oc-rig", "profiles": ["eco"]}`,
		"OverclockService/ClearOverclock":         `{"rig": "oc-rig"}`,
		"OverclockService/DeleteOverclockProfile": `{"name": "eco"}`,
	} {
		if code := b.rpcStatus(method, body); code != 403 {
			t.Errorf("viewer's %s: HTTP %d, want 403", method, code)
		}
	}
	if n := len(rig.payloads()); n != 2 {
		t.Errorf("a viewer's call reached the rig (%d files)", n)
	}
}
