package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/controller/fleet"
)

// webSession signs in to the dashboard with a fresh token of role and
// returns a client carrying the session cookie and the CSRF token.
func webSession(t *testing.T, tc *testController, name, role string) (*http.Client, string) {
	t.Helper()
	tok, err := tc.Fleet().CreateAdminToken(name, role)
	if err != nil {
		t.Fatal(err)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar}
	resp, err := c.Post("http://"+tc.HTTPAddr()+"/api/login", "application/json", strings.NewReader(`{"token":"`+tok+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		CSRF string `json:"csrf"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 || v.CSRF == "" {
		t.Fatalf("sign in as %s: %d %v", role, resp.StatusCode, err)
	}
	return c, v.CSRF
}

func rpcCall(t *testing.T, c *http.Client, tc *testController, csrf, method, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+tc.HTTPAddr()+"/api/rpc/"+method, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if csrf != "" {
		req.Header.Set("X-Quarry-CSRF", csrf)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: answer is not JSON: %q", method, b)
	}
	return resp.StatusCode, out
}

// TestDashboardCallsServicesWithTheSessionRole: the browser reaches the
// admin services only through the role table and audit of the gRPC API.
func TestDashboardCallsServicesWithTheSessionRole(t *testing.T) {
	tc := startTestController(t, func(c *Config) { c.Gossip.Enabled = false })
	viewer, viewerCSRF := webSession(t, tc, "wall", fleet.RoleViewer)
	admin, adminCSRF := webSession(t, tc, "boss", fleet.RoleAdmin)
	const createToken = "quarry.v1.FleetService/CreateToken"

	code, out := rpcCall(t, viewer, tc, viewerCSRF, "quarry.v1.FleetService/ListRigs", `{}`)
	if code != 200 {
		t.Fatalf("viewer ListRigs: %d %v", code, out)
	}
	if _, ok := out["rigs"]; !ok {
		t.Fatalf("ListRigs answer lacks rigs (every field is emitted): %v", out)
	}
	code, out = rpcCall(t, viewer, tc, viewerCSRF, createToken, `{"rig_name":"sneaky"}`)
	if code != 403 || out["code"] != "PermissionDenied" || !strings.Contains(out["error"].(string), "needs role admin") {
		t.Fatalf("viewer CreateToken: %d %v, want 403 naming the admin role", code, out)
	}
	code, out = rpcCall(t, admin, tc, "", createToken, `{"rig_name":"no-csrf"}`)
	if code != 403 || !strings.Contains(out["error"].(string), "X-Quarry-CSRF") {
		t.Fatalf("CreateToken without the CSRF header: %d %v", code, out)
	}
	code, out = rpcCall(t, admin, tc, adminCSRF, createToken, `{"rig_name":"rack-9", "ttl_seconds": 3600}`)
	if code != 200 || out["token"] == "" {
		t.Fatalf("admin CreateToken: %d %v", code, out)
	}
	for _, c := range []struct {
		method, body string
		want         int
	}{
		{createToken, `{"rig_name":`, 400},                 // truncated JSON
		{createToken, `{"nonsense_field": 1}`, 400},        // unknown field
		{"quarry.v1.FleetService/NoSuchMethod", `{}`, 404}, // not a method
		{"quarry.v1.AgentService/Enroll", `{}`, 404},       // rigs' service, never through the page
		{"quarry.v1.FleetService/ListRigs", strings.Repeat(" ", 2<<20) + "{}", 413},
	} {
		if code, out := rpcCall(t, admin, tc, adminCSRF, c.method, c.body); code != c.want {
			t.Errorf("%s %.40q: %d %v, want %d", c.method, c.body, code, out, c.want)
		}
	}

	log, err := tc.Fleet().AuditLog(time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var created, denied bool
	for _, e := range log {
		created = created || (e.Action == "token create" && e.Who == "boss" && e.Result == "ok")
		denied = denied || (e.Action == "authorize" && e.Who == "wall" && e.Result == "denied" && strings.HasSuffix(e.Target, "/CreateToken"))
	}
	if !created || !denied {
		t.Fatalf("audit: token create by boss %v, refusal of wall %v; log %v", created, denied, log)
	}

	// The method table tells the page which controls to show.
	resp, err := viewer.Get("http://" + tc.HTTPAddr() + "/api/rpc")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct{ Methods map[string]string }
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m.Methods["/"+createToken] != fleet.RoleAdmin || m.Methods["/quarry.v1.FleetService/ListRigs"] != fleet.RoleViewer {
		t.Fatalf("method table: %v", m.Methods)
	}
}
