package faultproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCuesAndLog(t *testing.T) {
	var seen atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		_, _ = io.WriteString(w, `{"id":"mtr_1"}`)
	}))
	defer up.Close()
	p, err := Start(up.URL, Config{Delay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Next(Drop, DropAfter, Status500, Status409, Status429, Status400, Delay)
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	want := []struct {
		status    int // 0: connection error
		forwarded bool
	}{{0, false}, {0, true}, {500, false}, {409, false}, {429, false}, {400, false}, {200, true}, {200, true}}
	for i, w := range want {
		form := url.Values{"identifier": {"energy:r1:2026-11-29T10:c"}, "event_name": {"e"}}
		req, _ := http.NewRequest(http.MethodPost, p.URL()+"/v1/billing/meter_events", strings.NewReader(form.Encode()))
		req.Header.Set("Idempotency-Key", "k1")
		resp, err := c.Do(req)
		got := 0
		if err == nil {
			got = resp.StatusCode
			resp.Body.Close()
		}
		if got != w.status {
			t.Errorf("request %d: status %d (err %v), want %d", i, got, err, w.status)
		}
	}
	log := p.Log()
	if len(log) != len(want) {
		t.Fatalf("%d log entries, want %d", len(log), len(want))
	}
	for i, e := range log {
		if e.Forwarded != want[i].forwarded || e.IdempotencyKey != "k1" || e.Identifier != "energy:r1:2026-11-29T10:c" || e.Path != "/v1/billing/meter_events" {
			t.Errorf("entry %d = %+v", i, e)
		}
	}
	if seen.Load() != 3 {
		t.Errorf("upstream saw %d requests, want 3", seen.Load())
	}
}
