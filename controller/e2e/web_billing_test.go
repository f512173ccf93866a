package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// refreshUntil polls cond in the page, pressing the page's Refresh button
// at most once a second in between, since the billing page does not
// follow the outbox on its own.
func refreshUntil(cond string) chromedp.Action[chromedp.Void] {
	return waitJS(`(() => {
		if (` + cond + `) return true;
		const now = Date.now();
		if (!window.__lastRefresh || now - window.__lastRefresh > 1000) {
			window.__lastRefresh = now;
			document.querySelector("#outbox-card .toolbar button").click();
		}
		return false; })()`)
}

// An admin sets up a hosting customer in the browser while Stripe is
// unreachable; the call lands in the dead letters, and once Stripe is back
// the Retry button on the page delivers it.
func TestBillingPageInBrowser(t *testing.T) {
	stripeAddr := freePort(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf("billing:\n  enabled: true\n  stripe_url: http://%s\n  flush_interval: 200ms\n  retry_base: 100ms\n  max_attempts: 1\n", stripeAddr)
	cfgPath := filepath.Join(dir, "controller.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	const stripeKey = "sk_test_webbilling123"
	t.Setenv("QUARRY_BILLING_STRIPE_KEY", stripeKey)
	viewer := viewerToken(t, dir)
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr, "-config", cfgPath)
	startAgent(t, dir, grpcAddr, ctrl.newToken(t, "--rig-name", "hosted1"))
	eventually(t, "rig online", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "hosted1")
		return ok && r.Online
	})
	b := openBrowser(t, dir, httpAddr, 3*time.Minute)
	shots := screenshotDir(t)

	b.signIn(readAdminToken(t, dir), "local-admin · admin")
	b.do("plan",
		chromedp.Navigate(b.base+"#/billing"),
		chromedp.WaitVisible(css("#plan-form")),
		waitText("#plan-table", "No plans yet"),
		chromedp.SetValue(css("#plan-id"), "std"),
		chromedp.SetValue(css("#plan-name"), "Standard"),
		chromedp.SetValue(css("#plan-fee"), "45"),
		chromedp.SetValue(css("#plan-kwh"), "0.125"),
		chromedp.SetValue(css("#plan-price"), "price_rig_monthly"),
		click(`#plan-form button[type="submit"]`),
		waitText("#plan-result", "Plan std saved"),
		waitText(`#plan-table tr[data-plan="std"]`, "$45.00"),
		waitText(`#plan-table tr[data-plan="std"]`, "$0.125/kWh"),
	)
	// A bad price is refused at the field, before anything is sent.
	b.do("bad plan",
		chromedp.SetValue(css("#plan-id"), "cheap"),
		chromedp.SetValue(css("#plan-fee"), "1.234"),
		chromedp.SetValue(css("#plan-price"), "price_x"),
		click(`#plan-form button[type="submit"]`),
		waitText("#plan-fee-error", "at most two decimals"),
	)
	b.do("customer",
		waitJS(`!!document.querySelector('#customer-plan option[value="std"]')`),
		chromedp.SetValue(css("#customer-name"), "Acme Hosting"),
		chromedp.SetValue(css("#customer-email"), "ops@acme.example"),
		chromedp.SetValue(css("#customer-plan"), "std"),
		click(`#customer-form button[type="submit"]`),
		waitText("#customer-result", "Customer acme-hosting created"),
		waitText(`#customer-table tr[data-customer="acme-hosting"]`, "ops@acme.example"),
		waitJS(`!!document.querySelector('#assign-customer option[value="acme-hosting"]')`),
		chromedp.SetValue(css("#assign-customer"), "acme-hosting"),
		chromedp.SetValue(css("#assign-rigs"), "hosted1"),
		click(`#assign-form button[type="submit"]`),
		waitText("#assign-result", "assigned to acme-hosting (now 1 rigs)"),
		waitText(`#standing-table tr[data-customer="acme-hosting"]`, "std"),
	)
	var st statusJSON
	ctrl.ctlJSON(t, &st, "billing", "status", "acme-hosting")
	if len(st.Customers) != 1 || len(st.Customers[0].Customer.Rigs) != 1 || st.Customers[0].ActiveRigs != 1 {
		t.Fatalf("billing status after assigning in the browser: %+v", st)
	}

	// Stripe is not there yet: with one attempt allowed, creating the
	// customer in Stripe is given up and shown as a dead letter.
	dead := `#dead-table tr[data-kind="customer.create"]`
	b.do("dead letter", refreshUntil(`!!document.querySelector('`+dead+`')`))
	startStripeMockAt(t, stripeAddr)
	b.do("retry",
		click(dead+" button[data-retry]"),
		waitText("#dead-result", "is back in the outbox"),
		click("#outbox-all"),
		refreshUntil(`!!document.querySelector('#outbox-table tr[data-kind="customer.create"][data-state="done"]')`),
		refreshUntil(`document.querySelector('#customer-table tr[data-customer="acme-hosting"]').innerText.includes("cus_")`),
	)
	out, err := ctrl.ctl(t, "audit", "--action", "billing.retry", "--who", "local-admin")
	if err != nil || !strings.Contains(out, "ok") {
		t.Errorf("the retry from the page is not audited: %v\n%s", err, out)
	}
	if page := evalIn[string](b, "page", `document.body.innerText`); strings.Contains(page, stripeKey) {
		t.Fatal("the billing page shows the Stripe key")
	}
	b.screenshots(shots, "dashboard-billing", "#/billing", waitText(`#customer-table tr[data-customer="acme-hosting"]`, "cus_"))

	// A viewer sees the standing but no admin tables or forms, and the
	// server refuses the admin calls.
	b.signIn(viewer, "wall-screen · viewer")
	b.do("viewer", chromedp.Navigate(b.base+"#/billing"), waitText(`#standing-table tr[data-customer="acme-hosting"]`, "std"))
	if n := evalIn[int](b, "controls", `document.querySelectorAll("#page-billing form, #page-billing button, #customer-table, #dead-table, #outbox-table").length`); n != 0 {
		t.Errorf("a viewer sees %d billing admin controls or tables", n)
	}
	if page := evalIn[string](b, "viewer page", `document.body.innerText`); strings.Contains(page, "ops@acme.example") {
		t.Error("a viewer sees the customer's email")
	}
	for method, body := range map[string]string{
		"BillingService/CreatePlan":     `{"plan": {"id": "x", "stripe_rig_price_id": "p"}}`,
		"BillingService/CreateCustomer": `{"name": "Evil", "email": "e@example.com", "plan": "std"}`,
		"BillingService/AssignRigs":     `{"customer": "", "rigs": ["hosted1"]}`,
		"BillingService/ListCustomers":  `{}`,
		"BillingService/ListDeadLetter": `{}`,
		"BillingService/RetryOutbox":    `{"id": "1"}`,
	} {
		if got := b.rpcStatus(method, body); got != 403 {
			t.Errorf("viewer calling %s: HTTP %d, want 403", method, got)
		}
	}
}
