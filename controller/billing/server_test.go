package billing

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Every bad billing setting is named.
func TestSettingsValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(*Settings)
		wantErr string
	}{
		{"disabled needs nothing", func(*Settings) {}, ""},
		{"enabled without key", func(b *Settings) { b.Enabled = true }, "billing.stripe_key: required when billing.enabled is set (env QUARRY_BILLING_STRIPE_KEY)"},
		{"publishable key", func(b *Settings) { b.Enabled, b.StripeKey = true, "pk_test_x" }, "publishable key"},
		{"bad url", func(b *Settings) { b.StripeURL = "localhost:12111" }, `billing.stripe_url: "localhost:12111" is not an http(s) URL`},
		{"flush too often", func(b *Settings) { b.FlushInterval = time.Millisecond }, "billing.flush_interval"},
		{"max gap", func(b *Settings) { b.MaxGap = 48 * time.Hour }, "billing.max_gap: 48h0m0s is outside 1s..24h"},
		{"late window past Stripe's limit", func(b *Settings) { b.LateWindow = 35 * 24 * time.Hour }, "billing.late_window: 840h0m0s must be positive and at most 816h0m0s"},
		{"no late window", func(b *Settings) { b.LateWindow = 0 }, "billing.late_window"},
		{"attempts", func(b *Settings) { b.MaxAttempts = 0 }, "billing.max_attempts"},
		{"negative stop", func(b *Settings) { b.PastDue.StopMiningAfter = -time.Hour }, "billing.past_due.stop_mining_after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultSettings()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestCustomerSlug(t *testing.T) {
	for in, want := range map[string]string{
		"Acme":                    "acme",
		"Acme Hosting, Inc.":      "acme-hosting-inc",
		"  --Ünïcode mine 42 ":    "n-code-mine-42",
		"!!!":                     "",
		strings.Repeat("ab ", 40): strings.TrimRight(strings.Repeat("ab-", 22)[:64], "-"),
	} {
		if got := CustomerSlug(in); got != want {
			t.Errorf("CustomerSlug(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkObserveReport is the cost billing adds to each committed report
// of an 8-GPU rig (the meter is in memory; Flush runs elsewhere).
func BenchmarkObserveReport(b *testing.B) {
	db, err := store.Open(filepath.Join(b.TempDir(), "b.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	svc, err := New(Config{DB: store.NewDB(db), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	o := energyObserver{meter: svc.Meter(), log: slog.New(slog.DiscardHandler)}
	t0 := time.Now()
	reports := make([]*quarryv1.Report, 1024)
	for i := range reports {
		reports[i] = testsupport.PowerReport(t0, 180, 175, 190, 185, 170, 178, 182, 188)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r := reports[i%len(reports)]
		r.TimeUnixNano = t0.Add(time.Duration(i) * time.Second).UnixNano()
		o.ObserveReport("rig-bench", r)
	}
}
