package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/testsupport"
	"github.com/stripe/stripe-go/v85"
	"github.com/stripe/stripe-go/v85/webhook"
)

// startStripeMock runs bin/stripe-mock on a free port and returns its URL,
// or skips the test when the binary is missing.
func startStripeMock(t *testing.T) string {
	t.Helper()
	return startStripeMockAt(t, freePort(t))
}

// startStripeMockAt runs bin/stripe-mock on addr, so a controller can be
// configured with its URL before it runs.
func startStripeMockAt(t *testing.T, addr string) string {
	t.Helper()
	bin := os.Getenv("QUARRY_STRIPE_MOCK")
	if bin == "" {
		wd, _ := os.Getwd()
		bin = filepath.Join(wd, "..", "..", "bin", "stripe-mock")
	}
	if _, err := os.Stat(bin); err != nil {
		testsupport.Missing(t, "stripe-mock at "+bin, "set QUARRY_STRIPE_MOCK or run make tools")
	}
	cmd := exec.Command(bin, "-http-addr", addr)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start stripe-mock: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	eventually(t, "stripe-mock listening", 20*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "http://" + addr
}

// fakeAMDCard writes the amdgpu sysfs files of one card drawing watts, the
// way the driver exposes them (power in microwatts), and returns the root
// to pass as the agent's -path.sysfs.
func fakeAMDCard(t *testing.T, dir string, watts int) string {
	t.Helper()
	root := filepath.Join(dir, "sys")
	dev := filepath.Join(root, "class", "drm", "card0", "device")
	files := map[string]string{
		"vendor":                          "0x1002\n",
		"device":                          "0x73bf\n",
		"uevent":                          "DRIVER=amdgpu\nPCI_SLOT_NAME=0000:03:00.0\n",
		"unique_id":                       "e2ebilling0001\n",
		"hwmon/hwmon0/name":               "amdgpu\n",
		"hwmon/hwmon0/power1_average":     strconv.Itoa(watts*1_000_000) + "\n",
		"hwmon/hwmon0/temp1_input":        "61000\n",
		"hwmon/hwmon0/temp1_label":        "edge\n",
		"hwmon/hwmon0/power1_cap":         "255000000\n",
		"hwmon/hwmon0/power1_cap_max":     "293000000\n",
		"hwmon/hwmon0/power1_cap_min":     "0\n",
		"hwmon/hwmon0/power1_cap_default": "255000000\n",
	}
	for name, content := range files {
		p := filepath.Join(dev, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// ctlJSON runs quarryctl with -o json and decodes the answer into v.
func (c *controller) ctlJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, err := c.ctl(t, append(args, "-o", "json")...)
	if err != nil {
		t.Fatalf("quarryctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("quarryctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

type outboxJSON struct {
	Records []struct {
		ID       string `json:"id"`
		Kind     string `json:"kind"`
		State    string `json:"state"`
		Customer string `json:"customer"`
		Result   string `json:"result"`
		Quantity string `json:"quantity"`
	} `json:"records"`
}

type statusJSON struct {
	Customers []struct {
		Customer struct {
			ID               string   `json:"id"`
			Status           string   `json:"status"`
			Rigs             []string `json:"rigs"`
			StripeCustomerID string   `json:"stripeCustomerId"`
		} `json:"customer"`
		Action             string `json:"action"`
		ActiveRigs         int    `json:"activeRigs"`
		MonthToDateMilliWh string `json:"monthToDateMilliWh"`
		EstimateCents      string `json:"estimateCents"`
	} `json:"customers"`
}

// A real controller bills a real agent's rig through stripe-mock: the
// agent reads a GPU's power from sysfs files, the controller meters it for
// the customer the rig is assigned to, mirrors the customer and its
// subscription to Stripe through the outbox, and follows a signed webhook;
// quarryctl shows it all.
func TestBillingEndToEnd(t *testing.T) {
	mockURL := startStripeMock(t)
	dir := t.TempDir()
	const watts = 150
	sys := fakeAMDCard(t, dir, watts)
	const secret = "whsec_e2e_billing"
	cfg := fmt.Sprintf(`billing:
  enabled: true
  stripe_url: %s
  webhook_secret: %s
  flush_interval: 200ms
  retry_base: 100ms
  past_due:
    stop_switching: true
`, mockURL, secret)
	cfgPath := filepath.Join(dir, "controller.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// The key comes from the environment, as operators are told to give it.
	t.Setenv("QUARRY_BILLING_STRIPE_KEY", "sk_test_e2e")
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr, "-config", cfgPath)

	tok := ctrl.newToken(t, "--rig-name", "hosted1")
	startAgent(t, dir, grpcAddr, tok, "-path.sysfs", sys)
	eventually(t, "rig reporting", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "hosted1")
		return ok && r.Online && u(r.Reports) >= 3
	})

	if out, err := ctrl.ctl(t, "plan", "create", "std", "--name", "Standard", "--fee-per-rig", "45", "--price-per-kwh", "0.125",
		"--stripe-price", "price_rig_monthly", "--stripe-energy-price", "price_energy_wh"); err != nil || !strings.Contains(out, "plan std: 45.00 per rig per month, 0.125 per kWh") {
		t.Fatalf("plan create: %v\n%s", err, out)
	}
	var created struct {
		Customer struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"customer"`
	}
	ctrl.ctlJSON(t, &created, "customer", "create", "Acme Hosting", "--email", "ops@acme.example", "--plan", "std")
	if created.Customer.ID != "acme-hosting" || created.Customer.Status != "active" {
		t.Fatalf("customer create: %+v", created)
	}
	assignedAt := time.Now()
	if out, err := ctrl.ctl(t, "customer", "assign", "acme-hosting", "hosted1"); err != nil || !strings.Contains(out, "to acme-hosting (now 1 rigs)") {
		t.Fatalf("customer assign: %v\n%s", err, out)
	}

	// The outbox delivers the customer, the subscription and its quantity.
	var ob outboxJSON
	eventually(t, "customer, subscription and quantity delivered to stripe-mock", 30*time.Second, func() bool {
		ob = outboxJSON{}
		ctrl.ctlJSON(t, &ob, "billing", "outbox", "--all")
		done := map[string]bool{}
		for _, r := range ob.Records {
			if r.State == "done" {
				done[r.Kind] = true
			}
		}
		return done["customer.create"] && done["subscription.create"] && done["subscription.quantity"]
	})
	for _, r := range ob.Records {
		if r.Kind == "customer.create" && !strings.HasPrefix(r.Result, "cus_") {
			t.Errorf("customer.create result %q, want a Stripe customer id", r.Result)
		}
	}
	var pending outboxJSON
	ctrl.ctlJSON(t, &pending, "billing", "outbox")
	if len(pending.Records) != 0 {
		t.Errorf("pending records after delivery: %+v", pending.Records)
	}
	var shown struct {
		Customer struct {
			StripeCustomerID string   `json:"stripeCustomerId"`
			Rigs             []string `json:"rigs"`
		} `json:"customer"`
	}
	ctrl.ctlJSON(t, &shown, "customer", "show", "acme-hosting")
	cusID := shown.Customer.StripeCustomerID
	if !strings.HasPrefix(cusID, "cus_") || len(shown.Customer.Rigs) != 1 {
		t.Fatalf("customer show: %+v", shown)
	}

	// Energy accumulates for the customer at the card's 150 W, and never
	// more than 150 W for the time since the assignment.
	var usage struct {
		TotalMilliWh string `json:"totalMilliWh"`
		Hours        []struct {
			Rig      string `json:"rig"`
			Customer string `json:"customer"`
		} `json:"hours"`
	}
	const atLeastMilliWh = watts * 1000 * 2 / 3600 // two seconds' worth
	eventually(t, "energy metered for the customer", 30*time.Second, func() bool {
		ctrl.ctlJSON(t, &usage, "billing", "usage", "--customer", "acme-hosting")
		n, _ := strconv.ParseInt(usage.TotalMilliWh, 10, 64)
		return n >= atLeastMilliWh
	})
	got, _ := strconv.ParseInt(usage.TotalMilliWh, 10, 64)
	if ceiling := int64(watts * 1000 * time.Since(assignedAt).Seconds() / 3600); got > ceiling {
		t.Errorf("metered %d mWh in %s: more than %d W could draw (%d mWh)", got, time.Since(assignedAt), watts, ceiling)
	}
	if len(usage.Hours) == 0 || usage.Hours[0].Customer != "acme-hosting" {
		t.Errorf("usage hours %+v", usage.Hours)
	}
	var byRig struct {
		TotalMilliWh string `json:"totalMilliWh"`
	}
	ctrl.ctlJSON(t, &byRig, "billing", "usage", "--rig", "hosted1", "--since", "1h")
	if n, _ := strconv.ParseInt(byRig.TotalMilliWh, 10, 64); n < got {
		t.Errorf("usage by rig %d mWh, less than the customer's earlier %d", n, got)
	}

	// Webhooks: a signed event applies, a bad signature is refused.
	hook := "http://" + httpAddr + "/webhooks/stripe"
	event := fmt.Sprintf(`{"id":"evt_e2e_1","object":"event","api_version":%q,"created":%d,"livemode":false,"type":"invoice.payment_failed","data":{"object":{"object":"invoice","id":"in_e2e","customer":%q,"status":"open"}}}`,
		stripe.APIVersion, time.Now().Unix(), cusID)
	post := func(secret string) (int, string) {
		t.Helper()
		sp := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: []byte(event), Secret: secret})
		req, _ := http.NewRequest(http.MethodPost, hook, strings.NewReader(event))
		req.Header.Set("Stripe-Signature", sp.Header)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("whsec_not_the_secret"); code != http.StatusBadRequest || !strings.Contains(body, "signature") {
		t.Errorf("bad signature: %d %q, want 400 naming the signature", code, body)
	}
	if code, body := post(secret); code != http.StatusOK || !strings.Contains(body, `"applied"`) {
		t.Fatalf("signed event: %d %q, want 200 applied", code, body)
	}
	if code, body := post(secret); code != http.StatusOK || !strings.Contains(body, `"duplicate"`) {
		t.Errorf("redelivered event: %d %q, want 200 duplicate", code, body)
	}
	if resp, err := http.Get(hook); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET webhook: %d, want 405", resp.StatusCode)
		}
	}

	var st statusJSON
	ctrl.ctlJSON(t, &st, "billing", "status", "acme-hosting")
	if len(st.Customers) != 1 {
		t.Fatalf("status: %+v", st)
	}
	s := st.Customers[0]
	if s.Customer.Status != "past_due" || s.Action != "stop-switching" || s.ActiveRigs != 1 || s.Customer.StripeCustomerID != cusID {
		t.Errorf("status after payment_failed: %+v", s)
	}
	if n, _ := strconv.ParseInt(s.EstimateCents, 10, 64); n < 4500 {
		t.Errorf("estimate %s cents, want at least the 45.00 rig fee", s.EstimateCents)
	}
	out, err := ctrl.ctl(t, "billing", "status")
	if err != nil || !strings.Contains(out, "acme-hosting") || !strings.Contains(out, "past_due") || !strings.Contains(out, "stop-switching") {
		t.Errorf("billing status table: %v\n%s", err, out)
	}
	out, err = ctrl.ctl(t, "audit", "--limit", "1000")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"billing.create-customer", "billing customer.created", "billing rig.assigned",
		"billing outbox.sent", "billing webhook.invoice.payment_failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit log lacks %q:\n%s", want, out)
		}
	}
	ctrl.stop()
}

// The controller restarts while a rig keeps measuring: the real agent
// buffers its reports, replays them to the restarted controller (which
// reopens its meter from the bbolt file) with their real measurement
// times, and every interval the rig measured is billed exactly once: no
// gap, nothing lost from the outage, nothing billed twice. A controller
// killed outright loses the samples since its last meter flush, which the
// agent will not resend (they were acknowledged), but not their energy:
// the meter integrates across them from its last persisted sample.
func TestBillingControllerRestartBillsEveryIntervalOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill bool
	}{{"stopped", false}, {"killed", true}} {
		t.Run(tc.name, func(t *testing.T) { billingRestart(t, tc.kill) })
	}
}

func billingRestart(t *testing.T, kill bool) {
	mockURL := startStripeMock(t)
	dir := t.TempDir()
	const watts = 150
	sys := fakeAMDCard(t, dir, watts)
	cfg := fmt.Sprintf("billing:\n  enabled: true\n  stripe_url: %s\n  flush_interval: 200ms\n  retry_base: 100ms\n", mockURL)
	cfgPath := filepath.Join(dir, "controller.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("QUARRY_BILLING_STRIPE_KEY", "sk_test_e2e")
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr, "-config", cfgPath)
	tok := ctrl.newToken(t, "--rig-name", "hosted2")

	type usageJSON struct {
		TotalMilliWh string            `json:"totalMilliWh"`
		Gaps         []json.RawMessage `json:"gaps"`
	}
	usage := func() (int64, int) {
		var u usageJSON
		ctrl.ctlJSON(t, &u, "billing", "usage", "--rig", "hosted2", "--since", "2h")
		n, _ := strconv.ParseInt(u.TotalMilliWh, 10, 64)
		return n, len(u.Gaps)
	}
	agentStart := time.Now()
	agent := startAgent(t, dir, grpcAddr, tok, "-path.sysfs", sys)
	eventually(t, "energy metered", time.Minute, func() bool {
		_, ok := rigByName(t, ctrl.rigs(t), "hosted2")
		if !ok {
			return false
		}
		n, _ := usage()
		return n > 0
	})
	// From here on the rig measures without a break until it is stopped.
	firstMetered := time.Now()
	time.Sleep(time.Second) // let it report for a while before the outage
	if kill {
		ctrl.kill()
	} else {
		ctrl.stop()
	}
	outage := time.Now()
	// The agent keeps measuring while the controller is down.
	time.Sleep(5 * time.Second)
	ctrl = startController(t, dir, grpcAddr, httpAddr, "-config", cfgPath)
	outage2 := time.Now()
	eventually(t, "the agent's buffer replayed", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "hosted2")
		return ok && r.Online && u(r.Reports) > 0
	})
	time.Sleep(time.Second)
	agentStop := time.Now()
	agent.stop()
	agentStopped := time.Now()
	// A report made as the agent stopped may still sit in its durable
	// buffer, for the next connection; every other one is committed, none
	// twice and none skipped.
	made, buffered := agentCounts(t, dir)
	if buffered > 2 {
		t.Fatalf("agent stopped with %d reports unacknowledged", buffered)
	}
	r, _ := rigByName(t, ctrl.rigs(t), "hosted2")
	if u(r.LastSeq)+uint64(buffered) != made || u(r.SeqGaps) != 0 {
		t.Fatalf("controller has seq %s (gaps %s) and the agent buffers %d, but the agent made %d", r.LastSeq, r.SeqGaps, buffered, made)
	}
	// The meter has flushed once the total stops moving.
	var total int64
	var gaps int
	eventually(t, "meter flushed", 20*time.Second, func() bool {
		prev := total
		time.Sleep(500 * time.Millisecond)
		total, gaps = usage()
		return total == prev
	})
	if gaps != 0 {
		t.Errorf("%d gaps recorded for a rig that measured throughout", gaps)
	}
	mWh := func(d time.Duration) int64 { return int64(watts * 1000 * d.Seconds() / 3600) }
	// At least everything from the first metered energy to the stop (but
	// the last report interval), the outage included; at most what the rig
	// could draw while it ran at all, which billing the outage twice would
	// exceed.
	lower, upper := mWh(agentStop.Sub(firstMetered)-time.Duration(1+buffered)*200*time.Millisecond), mWh(agentStopped.Sub(agentStart))
	if total < lower || total > upper {
		t.Errorf("billed %d mWh; want %d..%d (outage %v of %v)", total, lower, upper,
			outage2.Sub(outage).Round(time.Millisecond), agentStopped.Sub(agentStart).Round(time.Millisecond))
	}
	t.Logf("billed %d mWh, bounds %d..%d", total, lower, upper)
	// The table shows each hour with its late energy (none here) and state.
	out, err := ctrl.ctl(t, "billing", "usage", "--rig", "hosted2", "--since", "2h")
	if err != nil || !strings.Contains(out, "LATE") || !strings.Contains(out, "hosted2") && !strings.Contains(out, r.ID) || strings.Contains(out, "gap(s)") {
		t.Errorf("billing usage table: %v\n%s", err, out)
	}
	if double := total + mWh(outage2.Sub(outage)); double <= upper {
		t.Logf("warning: the bound would not catch the outage billed twice (%d <= %d)", double, upper)
	}
	ctrl.stop()
}
