package e2e

import (
	"context"
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
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// gpuRig is an in-process agent: the real link client and report buffer,
// fed reports with GPUs from a fixture, since the test machine has none.
type gpuRig struct {
	t      *testing.T
	buf    *link.Buffer
	report *quarryv1.Report
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (g *gpuRig) HandleCommand(_ context.Context, cmd *quarryv1.Command) ([]byte, error) {
	if cmd.Kind == quarryv1.CommandKind_COMMAND_KIND_PING {
		return []byte("pong from gpu-rig"), nil
	}
	return nil, fmt.Errorf("unsupported %s", cmd.Kind)
}

// send buffers one report with the GPUs' hashrates set (in MH/s).
func (g *gpuRig) send(mhs ...float64) { g.sendAt(time.Now(), mhs...) }

// sendAt buffers a report made at t, as an agent that was cut off from
// the controller would have.
func (g *gpuRig) sendAt(at time.Time, mhs ...float64) {
	g.t.Helper()
	r := &quarryv1.Report{}
	b, _ := protojson.Marshal(g.report)
	_ = protojson.Unmarshal(b, r)
	r.Events = nil
	var total float64
	for i, h := range mhs {
		r.Miners[0].Gpus[i].Hashrate = h * 1e6
		total += h * 1e6
	}
	r.Miners[0].Hashrate = total
	r.TimeUnixNano = at.UnixNano()
	if _, err := g.buf.Append(r); err != nil {
		g.t.Fatal(err)
	}
}

func startGPURig(t *testing.T, dir, grpcAddr, token string) *gpuRig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "web", "testdata", "report_gpus.json"))
	if err != nil {
		t.Fatal(err)
	}
	fix := &quarryv1.Report{}
	if err := protojson.Unmarshal(b, fix); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	id, err := link.Enroll(ctx, filepath.Join(dir, "pki"), grpcAddr, token, "gpu-rig-host")
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
	buf, err := link.OpenBuffer(db, 10000, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	g := &gpuRig{t: t, buf: buf, report: fix, cancel: cancel}
	// Ten minutes of backlog, then the fixture's own report with its
	// watchdog event.
	start := time.Now().Add(-10 * time.Minute)
	for i := range 40 {
		g.sendAt(start.Add(time.Duration(i)*15*time.Second), 20+float64(i%5)+float64(i)/10, 30+float64(i%3))
	}
	fix.TimeUnixNano = time.Now().UnixNano()
	if _, err := buf.Append(fix); err != nil {
		t.Fatal(err)
	}
	cl := &link.Client{Addr: grpcAddr, ServerName: "127.0.0.1", Identity: id, Buffer: buf, Handler: g, Log: log,
		Hello: func() *quarryv1.Hello { return &quarryv1.Hello{Hostname: "gpu-rig-host", Version: "test"} }}
	g.wg.Add(1)
	go func() { defer g.wg.Done(); _ = cl.Run(ctx) }()
	t.Cleanup(func() { cancel(); g.wg.Wait(); db.Close() })
	return g
}

// viewerToken adds a viewer credential to a controller's database before
// the controller starts (there is no CLI for admin tokens yet).
func viewerToken(t *testing.T, dir string) string {
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
	tok, err := f.CreateAdminToken("wall-screen", fleet.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testsupport.Missing(t, "Chromium", "apt-get install chromium, or make tools")
	return ""
}

// screenshotDir is docs/ when QUARRY_UPDATE_SCREENSHOTS is set, so the
// README's pictures are regenerated from a real run; otherwise a temp dir.
func screenshotDir(t *testing.T) string {
	if os.Getenv("QUARRY_UPDATE_SCREENSHOTS") != "" {
		return filepath.Join("..", "..", "docs")
	}
	return t.TempDir()
}

// waitText waits until the element's text contains want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for {
			got, err := chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible)(ctx, t)
			if err != nil && !nodeReplaced(err) {
				return chromedp.Void{}, fmt.Errorf("%s: %w", sel, err)
			}
			if strings.Contains(got, want) {
				return chromedp.Void{}, nil
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("%s: text %q never contained %q: %w", sel, got, want, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// click clicks the element, looking it up again when the page redrew it
// between finding it and clicking it.
func click(sel string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for {
			_, err := chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)(ctx, t)
			if err == nil || !nodeReplaced(err) {
				return chromedp.Void{}, err
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("%s: %w", sel, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// nodeReplaced reports whether err says the node an action had found was
// gone by the time it read it: pages redraw their tables when data
// changes, so the element is looked up afresh on the next try.
func nodeReplaced(err error) bool {
	m := err.Error()
	return strings.Contains(m, "No node with given id found") || strings.Contains(m, "Could not find node with given id")
}

// waitJS waits until a JavaScript expression is true.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))
}

func css(s string) chromedp.CSS { return chromedp.CSS(s) }

func TestDashboardInBrowser(t *testing.T) {
	chrome := chromium(t)
	dir := t.TempDir()
	viewer := viewerToken(t, dir)
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr)
	adminTok, err := os.ReadFile(filepath.Join(dir, "quarry-data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"rig-one", "rig-two"} {
		adir := filepath.Join(dir, name)
		if err := os.MkdirAll(adir, 0o700); err != nil {
			t.Fatal(err)
		}
		startAgent(t, adir, grpcAddr, ctrl.newToken(t, "--rig-name", name), "-report-interval", "1s")
	}
	g := startGPURig(t, filepath.Join(dir, "gpu-rig"), grpcAddr, ctrl.newToken(t, "--rig-name", "gpu-rig"))
	eventually(t, "three rigs online", time.Minute, func() bool {
		n := 0
		for _, r := range ctrl.rigs(t) {
			if r.Online && u(r.Reports) > 0 {
				n++
			}
		}
		return n == 3
	})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(filepath.Join(dir, "chrome")))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	defer cancelCtx()
	if err := chromedp.Do(ctx); err != nil { // starts the browser on the long-lived context
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	shots := screenshotDir(t)
	base := "http://" + httpAddr + "/"
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
			t.Fatalf("%s: %v\npage:\n%s", what, err, page)
		}
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		for i, st := range steps {
			_, err := chromedp.Run(ctx, st)
			must(fmt.Sprintf("%s, step %d", what, i+1), err)
		}
	}

	// Sign in as admin; the overview counts the three rigs.
	do("overview",
		chromedp.Navigate(base),
		chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), strings.TrimSpace(string(adminTok))),
		click(`#login-form button[type="submit"]`),
		chromedp.WaitVisible(css("#overview")),
		waitText("#ov-total", "3"),
		waitText("#ov-online", "3"),
		waitText("#who", "local-admin · admin"),
		waitJS(`document.querySelectorAll("#rig-table tbody tr").length === 3`),
		waitText("#ov-hashrate", "kawpow"),
		waitText("#ov-alerts", "GPU 1 at 88 °C"),
	)
	// Sorting: a click on Hashrate puts the GPU rig first. The server
	// sorts, so the new order arrives with the next answer.
	do("sort", click(`#rig-table th[data-key="hashrate"]`),
		waitJS(`document.querySelector("#rig-table th[data-key=hashrate]").classList.contains("desc")`),
		waitText("#rig-table tbody tr:first-child td:first-child", "gpu-rig"))
	first, err := chromedp.Run(ctx, chromedp.Text(css("#rig-table tbody tr:first-child td:first-child")))
	must("first row", err)
	if first != "gpu-rig" {
		t.Errorf("after sorting by hashrate the first rig is %q, want gpu-rig", first)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	must("screenshot", err)
	writePNG(t, shots, "dashboard-overview.png", png)

	// Following the rig's link opens its page, with both GPUs and charts.
	do("rig page",
		click(`#rig-table tbody tr:first-child a`),
		waitText("#rig-name", "gpu-rig"),
		waitJS(`document.querySelectorAll("#gpu-table tbody tr").length === 2`),
		waitJS(`(() => { const s = document.querySelector("#chart-hashrate svg"); return !!s && Number(s.dataset.points) >= 10 && !!s.querySelector("path.line"); })()`),
		waitJS(`!!document.querySelector("#chart-power svg path.line")`),
		waitText("#events", "restarted trex"),
		waitText("#figure-table", "kawpow"), // learned from the reports
		waitText("#figure-table", "live"),
	)
	model, err := chromedp.Run(ctx, chromedp.Text(css(`#gpu-table tbody tr[data-gpu="1"] td:nth-child(2)`)))
	must("gpu model", err)
	if model != "NVIDIA GeForce RTX 3080" {
		t.Errorf("gpu 1 model %q", model)
	}

	// A new report reaches the open page without a reload.
	_, err = chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`window.__sameDocument = 42`))
	must("mark page", err)
	g.send(33.5, 41)
	do("live update",
		waitText(`#gpu-table tbody tr[data-gpu="0"] td:nth-child(3)`, "33.50 MH/s"),
		waitText(`#gpu-table tbody tr[data-gpu="1"] td:nth-child(3)`, "41.00 MH/s"),
	)
	same, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__sameDocument || 0`))
	must("read mark", err)
	if same != 42 {
		t.Error("the page reloaded to show the update")
	}

	// An operator action goes to the rig and its answer comes back.
	do("ping",
		chromedp.WaitVisible(css("#rig-actions")),
		click(`#rig-actions button[data-action="ping"]`),
		waitText("#action-result", "pong from gpu-rig"),
	)
	png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	must("screenshot", err)
	writePNG(t, shots, "dashboard-rig.png", png)
	audit, _ := ctrl.ctl(t, "audit")
	if !strings.Contains(audit, "COMMAND_KIND_PING") || !strings.Contains(audit, "local-admin") {
		t.Errorf("the ping is not in the audit log:\n%s", audit)
	}

	// On a phone-sized screen the page fits without sideways scrolling.
	do("phone",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(base+"#/"),
		waitText("#ov-total", "3"),
	)
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
	must("measure", err)
	if overflow {
		t.Error("on a 390px screen the page scrolls sideways")
	}
	png, err = chromedp.Run(ctx, chromedp.CaptureScreenshot())
	must("screenshot", err)
	writePNG(t, shots, "dashboard-phone.png", png)

	// A viewer sees no action buttons, and the server refuses the action
	// even when asked directly.
	do("viewer",
		chromedp.EmulateViewport(1280, 900),
		click("#logout"),
		chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), viewer),
		click(`#login-form button[type="submit"]`),
		waitText("#who", "wall-screen · viewer"),
		chromedp.Navigate(base+"#/rig/gpu-rig"),
		waitText("#rig-name", "gpu-rig"),
		waitJS(`document.querySelectorAll("#gpu-table tbody tr").length === 2`),
		chromedp.WaitNotVisible(css("#rig-actions")),
	)
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(async () => {
		const s = await (await fetch("/api/session")).json();
		const r = await fetch("/api/rigs/gpu-rig/actions/restart-miner", {method: "POST", headers: {"X-Quarry-CSRF": s.csrf}});
		return r.status; })()`, chromedp.EvalAwaitPromise))
	must("viewer fetch", err)
	if status != 403 {
		t.Errorf("viewer's restart-miner got HTTP %d, want 403", status)
	}
	hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("#rig-actions").hidden`))
	must("buttons", err)
	if !hidden {
		t.Error("operator buttons are shown to a viewer")
	}
}

func writePNG(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if len(b) < 1000 || string(b[1:4]) != "PNG" {
		t.Fatalf("%s: not a PNG screenshot (%d bytes)", name, len(b))
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
