package server

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/controller/fleet"
)

func httpGet(t *testing.T, url, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMetricsAccess(t *testing.T) {
	tokFile := filepath.Join(t.TempDir(), "metrics.token")
	if err := os.WriteFile(tokFile, []byte("scrape-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		cfg       func(*Config)
		separate  bool
		auth      string
		want      int
		onMainAlt int // status of /metrics on http_addr when served separately
	}{
		{"open by default", nil, false, "", 200, 0},
		{"token required, none given", func(c *Config) { c.Web.MetricsTokenFile = tokFile }, false, "", 401, 0},
		{"token required, wrong one", func(c *Config) { c.Web.MetricsTokenFile = tokFile }, false, "Bearer scrape-secret-0123456788", 401, 0},
		{"token required, right one", func(c *Config) { c.Web.MetricsTokenFile = tokFile }, false, "Bearer scrape-secret-0123456789", 200, 0},
		{"own address", func(c *Config) { c.Web.MetricsAddr = "127.0.0.1:0" }, true, "", 200, 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc := startTestController(t, func(cfg *Config) {
				cfg.Gossip.Enabled = false
				if c.cfg != nil {
					c.cfg(cfg)
				}
			})
			addr := tc.HTTPAddr()
			if c.separate {
				addr = tc.MetricsAddr()
				if code, _ := httpGet(t, "http://"+tc.HTTPAddr()+"/metrics", ""); code != c.onMainAlt {
					t.Errorf("/metrics on http_addr: %d, want %d", code, c.onMainAlt)
				}
			}
			code, body := httpGet(t, "http://"+addr+"/metrics", c.auth)
			if code != c.want {
				t.Fatalf("status %d, want %d: %s", code, c.want, body)
			}
			if code == 200 && !strings.Contains(body, "quarry_controller_") {
				t.Fatalf("not the metrics: %.200s", body)
			}
			if code != 200 && strings.Contains(body, "quarry_") {
				t.Fatalf("refused scrape leaked figures: %.200s", body)
			}
			// The controller's own families alone, under the same rules.
			if c.separate {
				if code, _ := httpGet(t, "http://"+tc.HTTPAddr()+"/metrics/controller", ""); code != c.onMainAlt {
					t.Errorf("/metrics/controller on http_addr: %d, want %d", code, c.onMainAlt)
				}
			}
			code, body = httpGet(t, "http://"+addr+"/metrics/controller", c.auth)
			if code != c.want {
				t.Fatalf("/metrics/controller: status %d, want %d: %s", code, c.want, body)
			}
			if code == 200 && (!strings.Contains(body, "quarry_controller_report_ack_seconds_bucket") || !strings.Contains(body, "go_goroutines") ||
				strings.Contains(body, "quarry_controller_rigs") || strings.Contains(body, "quarry_rig_")) {
				t.Fatalf("/metrics/controller is not the controller's own families: %.400s", body)
			}
			if code != 200 && strings.Contains(body, "quarry_") {
				t.Fatalf("refused scrape leaked figures: %.200s", body)
			}
		})
	}
	_, err := New(func() Config {
		c := DefaultConfig()
		c.DataDir, c.GRPCAddr, c.HTTPAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
		c.Gossip.Enabled = false
		c.Web.MetricsTokenFile = filepath.Join(t.TempDir(), "missing")
		return c
	}(), "test", quietLog())
	if err == nil || !strings.Contains(err.Error(), "web.metrics_token_file") {
		t.Fatalf("missing token file: %v", err)
	}
}

// A client that sends headers a byte at a time (slowloris) is cut off,
// while the dashboard's live stream outlives the write timeout.
func TestHTTPTimeouts(t *testing.T) {
	tc := startTestController(t, func(c *Config) {
		c.Gossip.Enabled = false
		c.Web.ReadHeaderTimeout = 300 * time.Millisecond
		c.Web.WriteTimeout = 500 * time.Millisecond
	})
	conn, err := net.Dial("tcp", tc.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	b, _ := io.ReadAll(conn) // ends when the server closes the connection
	if time.Since(start) >= 20*time.Second || bytes.Contains(b, []byte("200 OK")) {
		t.Fatalf("half-sent request not cut off: %q", b)
	}

	tok, err := tc.Fleet().CreateAdminToken("wall", fleet.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+tc.HTTPAddr()+"/api/login", "application/json", strings.NewReader(`{"token":"`+tok+`"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("login: %v %v", err, resp)
	}
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://"+tc.HTTPAddr()+"/api/stream", nil)
	for _, ck := range resp.Cookies() {
		req.AddCookie(ck)
	}
	sresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(sresp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	opened := time.Now()
	waitEvent := func(what string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended waiting for %s", what)
				}
				if strings.HasPrefix(l, "event: overview") {
					return
				}
			case <-timeout:
				t.Fatalf("no %s", what)
			}
		}
	}
	waitEvent("first overview")
	// Past the write timeout, a change still arrives on the same stream.
	eventually(t, "the write timeout to pass", func() bool { return time.Since(opened) > 3*tc.cfg.Web.WriteTimeout })
	if err := tc.Fleet().RegisterRig("rig-abcdef012345", "late", "late"); err != nil {
		t.Fatal(err)
	}
	tc.Web().Changed()
	waitEvent("overview after the write timeout")
}

// Guessing dashboard tokens is limited per source address and audited.
func TestDashboardLoginRateLimit(t *testing.T) {
	tc := startTestController(t, func(c *Config) { c.Gossip.Enabled = false; c.Web.LoginFailures = 3 })
	tok, err := tc.Fleet().CreateAdminToken("wall", fleet.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	login := func(token string) int {
		resp, err := http.Post("http://"+tc.HTTPAddr()+"/api/login", "application/json", strings.NewReader(`{"token":"`+token+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 3 {
		if code := login("qat1.guess" + string(rune('a'+i))); code != 401 {
			t.Fatalf("guess %d: %d, want 401", i+1, code)
		}
	}
	if code := login("qat1.guessd"); code != 429 {
		t.Fatalf("fourth guess: %d, want 429", code)
	}
	// Even the right token waits: a guess that hits is not told apart.
	if code := login(tok); code != 429 {
		t.Fatalf("right token while limited: %d, want 429", code)
	}
	log, _ := tc.Fleet().AuditLog(time.Time{}, 0)
	limited := 0
	for _, e := range log {
		if e.Action == "web login" && strings.Contains(e.Result, "too many") {
			limited++
		}
	}
	if limited != 2 {
		t.Fatalf("%d rate-limited sign-ins audited, want 2", limited)
	}
}
