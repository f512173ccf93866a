package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser is one headless Chromium driven by a test, with helpers that
// fail the test with the page's text when a step fails.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
}

func openBrowser(t *testing.T, dir, httpAddr string, timeout time.Duration) *browser {
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
		// Each step has its own deadline, so a failed one leaves time to
		// read the page for the report.
		ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
		_, err := chromedp.Run(ctx, st)
		cancel()
		b.must(fmt.Sprintf("%s, step %d", what, i+1), err)
	}
}

func (b *browser) eval(what, expr string) any {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](expr, chromedp.EvalAwaitPromise))
	b.must(what, err)
	return v
}

// signIn signs out whoever is signed in, then signs in with token.
func (b *browser) signIn(token, who string) {
	b.t.Helper()
	b.do("sign in as "+who,
		chromedp.Navigate(b.base),
		chromedp.Evaluate[chromedp.Void](`(async () => { const s = await fetch("/api/session"); if (s.ok) { const j = await s.json(); await fetch("/api/logout", {method: "POST", headers: {"X-Quarry-CSRF": j.csrf, "Content-Type": "application/json"}, body: "{}"}); } })()`, chromedp.EvalAwaitPromise),
		chromedp.Navigate(b.base+"#/"),
		chromedp.Reload(),
		chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), token),
		click(`#login-form button[type="submit"]`),
		waitText("#who", who),
	)
}

func (b *browser) signOut() {
	b.t.Helper()
	b.do("sign out", clickIn("#logout"), chromedp.WaitVisible(css("#token")))
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
	// From the top, so the sticky header sits where it belongs.
	b.eval("scroll", `(window.scrollTo(0, 0), true)`)
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	b.must("screenshot", err)
	writePNG(b.t, dir, name, png)
}

func evalIn[T any](b *browser, what, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	b.must(what, err)
	return v
}

// rpcStatus calls a gateway method from the page with the session's CSRF
// token, as a page script would, and returns the HTTP status.
func (b *browser) rpcStatus(method, body string) int {
	b.t.Helper()
	return evalIn[int](b, "call "+method, fmt.Sprintf(`(async () => {
		const s = await (await fetch("/api/session")).json();
		const r = await fetch("/api/rpc/quarry.v1.%s", {method: "POST", headers: {"X-Quarry-CSRF": s.csrf, "Content-Type": "application/json"}, body: %q});
		return r.status; })()`, method, body))
}

// screenshot saves the page, and on a phone-sized screen checks that it
// does not scroll sideways.
func (b *browser) screenshots(dir, name, hash string, ready chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	// Shown afresh and from the top, so the picture has no half-filled
	// form and the sticky header sits at the top.
	b.do("show "+name,
		chromedp.Navigate(b.base+"#/"),
		chromedp.Navigate(b.base+hash),
		ready,
		chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	b.must("screenshot", err)
	writePNG(b.t, dir, name+".png", png)
	b.do("phone "+name,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(b.base+"#/"),
		chromedp.Navigate(b.base+hash),
		ready)
	if evalIn[bool](b, "measure", `document.documentElement.scrollWidth > window.innerWidth + 1`) {
		b.t.Errorf("%s: on a 390px screen the page scrolls sideways", name)
	}
	png, err = chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	b.must("screenshot", err)
	writePNG(b.t, dir, name+"-phone.png", png)
	b.do("desktop", chromedp.EmulateViewport(1280, 900))
}
