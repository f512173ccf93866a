package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The simulator reads the controller's histogram as Prometheus's own
// encoder writes it, and reports only what happened between two scrapes.
func TestAckHistogramBetweenScrapes(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: ackMetric, Help: "test",
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1}})
	reg.MustRegister(h)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	for range 50 {
		h.Observe(3) // before the window: above every bound
	}
	before, err := ackHistogram(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for range 98 {
		h.Observe(0.002)
	}
	h.Observe(0.04)
	h.Observe(0.2)
	after, err := ackHistogram(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	d := after.since(before)
	if d.count() != 100 {
		t.Fatalf("window holds %d observations, want 100", d.count())
	}
	for _, tc := range []struct {
		q    float64
		want string
	}{{0.5, "≤ 2.5ms"}, {0.98, "≤ 2.5ms"}, {0.99, "≤ 50ms"}, {1, "> 100ms"}} {
		if got := d.quantile(tc.q); got != tc.want {
			t.Errorf("quantile %v = %s, want %s", tc.q, got, tc.want)
		}
	}
	if got, want := d.mean(), (time.Duration((98*0.002 + 0.04 + 0.2) / 100 * float64(time.Second))).Round(10*time.Microsecond).String(); got != want {
		t.Errorf("mean %s, want %s", got, want)
	}
	if _, err := ackHistogram(context.Background(), ""); err == nil {
		t.Error("no URL read something")
	}
	if _, err := parseHistogram(strings.NewReader("other_metric 1\n"), ackMetric); err == nil {
		t.Error("a scrape without the histogram parsed")
	}
}
