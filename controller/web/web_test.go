package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/controller/figures"
	"github.com/quarryfleet/quarry/controller/web"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestAccessByRole(t *testing.T) {
	e := newEnv(t, web.Options{})
	e.rig("rig-a", "alpha", true)
	anon, viewer, operator, admin := e.client(), e.login("viewer"), e.login("operator"), e.login("admin")
	tests := []struct {
		name   string
		c      *client
		method string
		path   string
		csrf   bool
		want   int
	}{
		{"anonymous overview", anon, "GET", "/api/overview", false, 401},
		{"anonymous stream", anon, "GET", "/api/stream", false, 401},
		{"anonymous action", anon, "POST", "/api/rigs/alpha/actions/ping", false, 401},
		{"anonymous page", anon, "GET", "/", false, 200},
		{"anonymous script", anon, "GET", "/static/app.js", false, 200},
		{"viewer overview", viewer, "GET", "/api/overview", false, 200},
		{"viewer rig", viewer, "GET", "/api/rigs/alpha", false, 200},
		{"viewer action refused", viewer, "POST", "/api/rigs/alpha/actions/ping", true, 403},
		{"operator action without csrf", operator, "POST", "/api/rigs/alpha/actions/ping", false, 403},
		{"operator action", operator, "POST", "/api/rigs/alpha/actions/ping", true, 202},
		{"admin action", admin, "POST", "/api/rigs/rig-a/actions/restart-miner", true, 202},
		{"unknown action", operator, "POST", "/api/rigs/alpha/actions/format-disk", true, 404},
		{"unknown rig", operator, "POST", "/api/rigs/nope/actions/ping", true, 404},
		{"unknown rig page", viewer, "GET", "/api/rigs/nope", false, 404},
		{"bad history size", viewer, "GET", "/api/rigs/alpha/history?n=lots", false, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := tc.c.doHeader(tc.method, tc.path, "{}", tc.csrf)
			if code != tc.want {
				t.Fatalf("%s %s: got %d, want %d: %s", tc.method, tc.path, code, tc.want, body)
			}
		})
	}
}

func TestLoginSetsStrictHttpOnlyCookie(t *testing.T) {
	e := newEnv(t, web.Options{SessionTTL: time.Hour})
	c := e.client()
	code, body, h := c.doHeader("POST", "/api/login", `{"token":"`+e.token("ops", "operator")+`"}`, false)
	if code != 200 {
		t.Fatalf("login: %d %s", code, body)
	}
	cookie := h.Get("Set-Cookie")
	for _, want := range []string{"quarry_session=", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("Set-Cookie %q lacks %q", cookie, want)
		}
	}
	var s struct {
		Who, Role string
		CanAct    bool `json:"can_act"`
	}
	_ = json.Unmarshal([]byte(body), &s)
	if s.Who != "ops" || s.Role != "operator" || !s.CanAct {
		t.Errorf("session = %+v", s)
	}
	// Signing out ends the session on the server, not just in the browser.
	if code, _, _ := c.doHeader("POST", "/api/logout", "", false); code != 204 {
		t.Fatalf("logout: %d", code)
	}
	if code, _ := c.do("GET", "/api/session", ""); code != 401 {
		t.Fatalf("session after logout: %d", code)
	}
}

func TestLoginRefusals(t *testing.T) {
	e := newEnv(t, web.Options{})
	tests := []struct {
		name, body string
		want       int
	}{
		{"not json", "token=abc", 400},
		{"unknown token", `{"token":"qat1.0000"}`, 401},
		{"join token shape", `{"token":"qjt1.abc.def"}`, 401},
		{"empty", `{}`, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.client().do("POST", "/api/login", tc.body)
			if code != tc.want {
				t.Fatalf("got %d, want %d: %s", code, tc.want, body)
			}
			if strings.Contains(body, "qat1.0000") {
				t.Errorf("the token is echoed back: %s", body)
			}
		})
	}
	entries, err := e.fleet.AuditLog(time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, en := range entries {
		if en.Action == "web login" && strings.HasPrefix(en.Result, "error") {
			failed++
		}
	}
	if failed != 3 {
		t.Errorf("%d failed logins audited, want 3", failed)
	}
}

func TestActionQueuesCommandAndAudits(t *testing.T) {
	e := newEnv(t, web.Options{})
	e.rig("rig-a", "alpha", false) // offline: the command waits
	c := e.login("operator")
	code, body := c.do("POST", "/api/rigs/alpha/actions/pause", "")
	if code != 202 {
		t.Fatalf("pause: %d %s", code, body)
	}
	var res struct {
		ID     string `json:"command_id"`
		Status string
	}
	_ = json.Unmarshal([]byte(body), &res)
	rec, err := e.fleet.Command(res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.RigId != "rig-a" || rec.Command.Kind != quarryv1.CommandKind_COMMAND_KIND_PAUSE || rec.Status != quarryv1.CommandStatus_COMMAND_STATUS_PENDING {
		t.Errorf("queued %v", rec)
	}
	var st map[string]string
	c.getJSON("/api/commands/"+res.ID, &st)
	if st["status"] != "PENDING" || st["rig"] != "rig-a" {
		t.Errorf("command status %v", st)
	}
	entries, _ := e.fleet.AuditLog(time.Time{}, 0)
	found := false
	for _, en := range entries {
		if en.Action == "command COMMAND_KIND_PAUSE" && en.Who == "operator-user" && en.Role == "operator" && en.Target == "rig-a" && en.Result == "ok" && strings.Contains(en.Detail, res.ID) {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit entry for the pause among %v", entries)
	}
}

func TestOverview(t *testing.T) {
	e := newEnv(t, web.Options{})
	e.rig("rig-a", "alpha", true)
	e.rig("rig-b", "bravo", true)
	e.rig("rig-c", "charlie", false)
	e.report("rig-a", fixture(t, "report_gpus.json"))
	e.report("rig-b", &quarryv1.Report{Miners: []*quarryv1.MinerStats{{Miner: "xmrig", Algorithm: "randomx", Coin: "XMR", Hashrate: 9000, State: "crashed", Error: "exit 1"}}})
	c := e.login("viewer")
	var ov web.Overview
	c.getJSON("/api/overview", &ov)
	if ov.Total != 3 || ov.Online != 2 || ov.Offline != 1 {
		t.Errorf("counts total/online/offline = %d/%d/%d, want 3/2/1", ov.Total, ov.Online, ov.Offline)
	}
	// bravo's crashed miner has no reading: its stale figure is not summed.
	want := []web.AlgoRate{{Algorithm: "kawpow", Hashrate: 52e6}}
	if len(ov.Hashrate) != 1 || ov.Hashrate[0] != want[0] {
		t.Errorf("hashrate = %v, want %v", ov.Hashrate, want)
	}
	if ov.PowerW != 118.5+221.25 {
		t.Errorf("power = %v", ov.PowerW)
	}
	if ov.ProfitUSD != nil || ov.Billing {
		t.Errorf("profit or billing shown without a provider: %v %v", ov.ProfitUSD, ov.Billing)
	}
	var msgs []string
	for _, a := range ov.Alerts {
		msgs = append(msgs, a.RigName+": "+a.Severity+" "+a.Message)
	}
	wantAlerts := []string{"alpha: warning GPU 1 at 88 °C", "bravo: critical xmrig crashed: exit 1", "charlie: warning offline"}
	if strings.Join(msgs, "|") != strings.Join(wantAlerts, "|") {
		t.Errorf("alerts\n got %q\nwant %q", msgs, wantAlerts)
	}
	if len(ov.Rigs) != 3 || ov.Rigs[0].GPUs != 2 || *ov.Rigs[0].MaxTempC != 88 || ov.Rigs[1].PowerW != nil {
		t.Errorf("rig rows %+v", ov.Rigs)
	}
}

// The overview's rig table is sorted and paged by the server and its alert
// list is bounded, while the totals cover every rig: a large fleet's
// dashboard receives one page.
func TestOverviewPages(t *testing.T) {
	e := newEnv(t, web.Options{})
	const n = web.MaxOverviewAlerts + 5
	for i := range n {
		e.rig(fmt.Sprintf("rig-%03d", i), fmt.Sprintf("r%03d", i), false) // offline: one alert each
	}
	e.rig("rig-on", "zulu", true)
	e.report("rig-on", &quarryv1.Report{Miners: []*quarryv1.MinerStats{{Miner: "t-rex", Algorithm: "kawpow", Hashrate: 5e7, State: "running"}}})
	c := e.login("viewer")
	names := func(ov web.Overview) string {
		var out []string
		for _, r := range ov.Rigs {
			out = append(out, r.Name)
		}
		return strings.Join(out, ",")
	}
	cases := []struct {
		query     string
		wantRigs  string
		wantCount int
	}{
		{"", "", web.DefaultOverviewRigs},
		{"?limit=3", "r000,r001,r002", 3},
		{"?limit=2&offset=3", "r003,r004", 2},
		{"?sort=hashrate&dir=desc&limit=2", "zulu,r000", 2},
		{"?sort=name&dir=desc&limit=2", "zulu,r104", 2},
		{fmt.Sprintf("?offset=%d", n), "zulu", 1},
		{fmt.Sprintf("?offset=%d", n+10), "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			var ov web.Overview
			c.getJSON("/api/overview"+tc.query, &ov)
			if ov.Total != n+1 || ov.Online != 1 || ov.Offline != n {
				t.Errorf("counts total/online/offline = %d/%d/%d, want %d/1/%d", ov.Total, ov.Online, ov.Offline, n+1, n)
			}
			if len(ov.Rigs) != tc.wantCount || (tc.wantRigs != "" && names(ov) != tc.wantRigs) {
				t.Errorf("%d rows %s, want %d starting %s", len(ov.Rigs), names(ov), tc.wantCount, tc.wantRigs)
			}
			if ov.AlertCount != n || len(ov.Alerts) != web.MaxOverviewAlerts || ov.Alerts[0].RigName != "r000" {
				t.Errorf("%d alerts of %d, first %+v; want %d of %d from r000", len(ov.Alerts), ov.AlertCount, ov.Alerts[0], web.MaxOverviewAlerts, n)
			}
			if len(ov.Hashrate) != 1 || ov.Hashrate[0].Hashrate != 5e7 {
				t.Errorf("fleet hashrate %v, want the online rig's 5e7 whatever the page", ov.Hashrate)
			}
		})
	}
	for _, bad := range []string{"?limit=0", fmt.Sprintf("?limit=%d", web.MaxOverviewRigs+1), "?offset=-1", "?offset=x", "?sort=id", "?dir=up"} {
		for _, path := range []string{"/api/overview", "/api/stream"} {
			if code, body := c.do("GET", path+bad, ""); code != http.StatusBadRequest {
				t.Errorf("GET %s%s: %d %s, want 400", path, bad, code, body)
			}
		}
	}
}

type profit map[string]float64

func (p profit) RigProfit(id string) (web.Profit, bool) {
	v, ok := p[id]
	return web.Profit{USDPerDay: v, Coin: "RVN"}, ok
}

type switches []web.Switch

func (s switches) RigSwitches(string, int) []web.Switch { return s }

type billing []web.BillingLine

func (b billing) BillingStatus(context.Context) ([]web.BillingLine, error) { return b, nil }

func TestProvidersShowWhenSet(t *testing.T) {
	e := newEnv(t, web.Options{})
	e.rig("rig-a", "alpha", true)
	e.rig("rig-b", "bravo", true)
	e.web.SetProfit(profit{"rig-a": 3.25, "rig-b": -0.5})
	e.web.SetSwitches(switches{{Time: time.Unix(1700000000, 0).UTC(), From: "ETC/etchash", To: "RVN/kawpow", Reason: "+14% after switch cost"}})
	e.web.SetBilling(billing{{Customer: "cus_1", Plan: "pro", ActiveRigs: 2, MonthToDateKWh: 12.5, EstimateUSD: 9.1}})
	c := e.login("viewer")
	var ov web.Overview
	c.getJSON("/api/overview", &ov)
	if ov.ProfitUSD == nil || *ov.ProfitUSD != 2.75 || !ov.Billing {
		t.Errorf("profit %v billing %v", ov.ProfitUSD, ov.Billing)
	}
	var rv web.RigView
	c.getJSON("/api/rigs/alpha", &rv)
	if rv.Profit == nil || rv.Profit.USDPerDay != 3.25 || len(rv.Switches) != 1 || rv.Switches[0].Reason != "+14% after switch cost" {
		t.Errorf("rig view profit %v switches %v", rv.Profit, rv.Switches)
	}
	var b struct {
		Available bool
		Customers []web.BillingLine
	}
	c.getJSON("/api/billing", &b)
	if !b.Available || len(b.Customers) != 1 || b.Customers[0].Customer != "cus_1" {
		t.Errorf("billing %+v", b)
	}
}

// The rig page shows the rig's draw as billing meters it (a lost card
// left out) and the figures the controller learned from its reports, read
// from the one learner.
func TestRigPageShowsPowerAndLearnedFigures(t *testing.T) {
	e := newEnv(t, web.Options{})
	figs, err := figures.Open(e.db, figures.Options{Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { figs.Close() })
	e.fleet.AddObserver(figs)
	e.rig("rig-a", "alpha", true)
	c := e.login("viewer")
	var rv web.RigView
	c.getJSON("/api/rigs/alpha", &rv)
	if rv.PowerW != nil || rv.Figures != nil {
		t.Errorf("a rig that never reported: power %v figures %+v", rv.PowerW, rv.Figures)
	}
	r := fixture(t, "report_gpus.json")
	r.Miners[0].Algorithm = "KAWPOW"
	e.report("rig-a", r)
	r = fixture(t, "report_gpus.json")
	r.Gpus[1].Lost = true
	e.report("rig-a", r)
	c.getJSON("/api/rigs/alpha", &rv)
	if rv.PowerW == nil || *rv.PowerW != 118.5 {
		t.Errorf("rig power %v, want 118.5 W without the lost card", rv.PowerW)
	}
	e.web.SetFigures(figs)
	rv = web.RigView{}
	c.getJSON("/api/rigs/alpha", &rv)
	// 339.75 W, then 118.5 W with smoothing 0.3 = 273.375 W.
	if len(rv.Figures) != 1 {
		t.Fatalf("figures %+v, want kawpow alone", rv.Figures)
	}
	if f := rv.Figures[0]; f.Algorithm != "kawpow" || f.Hashrate != 52e6 || f.PowerW == nil || *f.PowerW != 273.375 || f.Source != figures.SourceLive || f.Samples != 2 {
		t.Errorf("figure %+v (power %v)", f, f.PowerW)
	}
}

func TestRigPageMatchesMinerGPUsByBusID(t *testing.T) {
	e := newEnv(t, web.Options{})
	e.rig("rig-a", "alpha", true)
	e.report("rig-a", fixture(t, "report_gpus.json"))
	var rv web.RigView
	e.login("viewer").getJSON("/api/rigs/alpha", &rv)
	if len(rv.GPUs) != 2 {
		t.Fatalf("gpus %+v", rv.GPUs)
	}
	// The miner names cards "01:00.0" and "0000:02:00.0"; NVML says
	// "00000000:01:00.0": they are the same cards.
	for i, want := range []float64{21e6, 31e6} {
		g := rv.GPUs[i]
		if g.Hashrate == nil || *g.Hashrate != want || g.Algorithm != "kawpow" {
			t.Errorf("gpu %d hashrate %v algo %q, want %v kawpow", i, g.Hashrate, g.Algorithm, want)
		}
	}
	if g := rv.GPUs[1]; *g.TempC != 88 || len(g.FanPercent) != 2 || *g.CoreMHz != 1290 || *g.MemMHz != 9251 || *g.PowerW != 221.25 {
		t.Errorf("gpu 1 = %+v", g)
	}
	if len(rv.Events) != 1 || rv.Events[0].Kind != "watchdog" {
		t.Errorf("events %+v", rv.Events)
	}
}

func TestHistoryPoints(t *testing.T) {
	e := newEnv(t, web.Options{HistoryPoints: 3})
	e.rig("rig-a", "alpha", true)
	for i := range 5 {
		r := fixture(t, "report_gpus.json")
		r.Miners[0].Hashrate = float64(i+1) * 1e6
		if i == 3 {
			// Unknown: a gap in the history, not a zero.
			r.Miners[0].State, r.Miners[0].Hashrate = quarryv1.MinerAPIUnreachable, 0
		}
		r.TimeUnixNano = int64(1700000000+i) * 1e9
		e.report("rig-a", r)
	}
	var h struct{ Points []web.Point }
	e.login("viewer").getJSON("/api/rigs/alpha/history", &h)
	if len(h.Points) != 3 {
		t.Fatalf("%d points, want the newest 3", len(h.Points))
	}
	for i, p := range h.Points {
		if i == 1 {
			if p.Hashrate != nil {
				t.Errorf("point %d of an unreachable miner has hashrate %v, want none", i, *p.Hashrate)
			}
			continue
		}
		if p.Hashrate == nil || *p.Hashrate != float64(i+3)*1e6 || p.TimeMs != int64(1700000002+i)*1000 || p.PowerW == nil || *p.PowerW != 339.75 || *p.MaxTempC != 88 {
			t.Errorf("point %d = %+v", i, p)
		}
	}
}

// sse reads events from a stream.
type sse struct{ sc *bufio.Scanner }

func (s sse) next(t *testing.T) (name string, data string) {
	t.Helper()
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		case line == "" && name != "":
			return name, data
		}
	}
	t.Fatalf("stream ended: %v", s.sc.Err())
	return "", ""
}

func TestStreamPushesChanges(t *testing.T) {
	e := newEnv(t, web.Options{})
	e.rig("rig-a", "alpha", true)
	e.report("rig-a", fixture(t, "report_gpus.json"))
	c := e.login("viewer")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/stream?rig=alpha", nil)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	s := sse{bufio.NewScanner(resp.Body)}
	s.sc.Buffer(nil, 1<<20)
	got := map[string]string{}
	for len(got) < 2 {
		n, d := s.next(t)
		got[n] = d
	}
	var ov web.Overview
	_ = json.Unmarshal([]byte(got["overview"]), &ov)
	if ov.Hashrate[0].Hashrate != 52e6 {
		t.Fatalf("first overview %s", got["overview"])
	}

	r := fixture(t, "report_gpus.json")
	r.Miners[0].Hashrate = 60e6
	e.report("rig-a", r)
	for {
		n, d := s.next(t)
		if n != "rig" {
			continue
		}
		var rv web.RigView
		_ = json.Unmarshal([]byte(d), &rv)
		if h := rv.Miners[0].Hashrate; h != nil && *h == 60e6 {
			break
		}
	}
	// A rig going offline sends no report; the stream still notices.
	e.rig("rig-z", "zulu", false)
	for {
		n, d := s.next(t)
		if n == "overview" {
			_ = json.Unmarshal([]byte(d), &ov)
			if ov.Offline == 1 {
				break
			}
		}
	}
	// Close ends the stream so the HTTP server can shut down.
	e.web.Close()
	for s.sc.Scan() {
	}
}

var externalURL = regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import|https?://`)

func TestAssetsAreSelfContained(t *testing.T) {
	err := filepath.WalkDir("assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// The only absolute URL allowed is the SVG namespace name.
		text := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
		if m := externalURL.FindString(text); m != "" {
			t.Errorf("%s refers to something outside the controller: %q", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, web.Options{})
	_, body, h := e.client().doHeader("GET", "/", "", false)
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if !strings.Contains(body, `<meta name="viewport"`) {
		t.Error("page lacks a viewport meta tag for phones")
	}
}

type alertStub []web.Alert

func (a alertStub) FiringAlerts() []web.Alert { return a }

// With a notifier, the overview and the rig page show its firing alerts,
// with when they fired and where their messages went, alerts of no rig
// included; the rules are not evaluated again.
func TestOverviewShowsNotifierAlerts(t *testing.T) {
	e := newEnv(t, web.Options{})
	e.rig("rig-a", "alpha", true)
	e.rig("rig-c", "charlie", false) // offline, but the notifier has not fired yet
	e.web.SetAlerts(alertStub{
		{Rig: "rig-a", RigName: "alpha", Severity: "critical", Message: "xmrig crashed", Rule: "miner_down", SinceMs: 1000,
			Deliveries: []web.AlertDelivery{{Channel: "webhook https://hooks.example.org", Kind: "firing", State: "failing", Attempts: 3, Error: "receiver answered HTTP 500"}}},
		{Severity: "warning", Message: "customer Acme is past due", Rule: "billing_past_due", SinceMs: 2000},
	})
	c := e.login("viewer")
	var ov web.Overview
	c.getJSON("/api/overview", &ov)
	if ov.AlertCount != 2 || len(ov.Alerts) != 2 {
		t.Fatalf("alerts %+v", ov.Alerts)
	}
	if a := ov.Alerts[0]; a.Rig != "" || a.Message != "customer Acme is past due" || a.SinceMs != 2000 {
		t.Errorf("first alert %+v", a)
	}
	if a := ov.Alerts[1]; a.Rig != "rig-a" || a.SinceMs != 1000 || len(a.Deliveries) != 1 || a.Deliveries[0].State != "failing" || a.Deliveries[0].Attempts != 3 {
		t.Errorf("second alert %+v", a)
	}
	for _, r := range ov.Rigs {
		want := map[string]int{"alpha": 1, "charlie": 0}[r.Name]
		if r.Alerts != want {
			t.Errorf("row %s: %d alerts, want %d", r.Name, r.Alerts, want)
		}
	}
	var rv web.RigView
	c.getJSON("/api/rigs/rig-a", &rv)
	if len(rv.Alerts) != 1 || rv.Alerts[0].Message != "xmrig crashed" {
		t.Errorf("rig page alerts %+v", rv.Alerts)
	}
}
