package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/controller/billing"
)

// Billing shows on the dashboard and its outbox depth in /metrics.
func TestBillingReachesDashboardAndMetrics(t *testing.T) {
	bc := startBillingController(t, t.TempDir(), enableBilling)
	svc := bc.billing.Service()
	ctx := context.Background()
	if err := svc.PutPlan(ctx, billing.Plan{ID: "std", Name: "Standard", MonthlyFeePerRigCents: 1500, EnergyMilliCentsPerKWh: 12000, StripeRigPriceID: "price_1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateCustomer(ctx, billing.Customer{ID: "acme", Name: "Acme Hosting", Email: "ops@acme.test", Plan: "std"}); err != nil {
		t.Fatal(err)
	}
	lines, err := billingView{svc: svc}.BillingStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || lines[0].Customer != "Acme Hosting" || lines[0].Plan != "std" || lines[0].PendingRecords == 0 {
		t.Fatalf("dashboard billing lines %+v", lines)
	}
	resp, err := http.Get("http://" + bc.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `quarry_controller_outbox_depth{outbox="billing"}`) {
		t.Fatalf("/metrics has no billing outbox depth:\n%s", grepLines(string(body), "outbox"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
