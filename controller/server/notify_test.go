package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/notify"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Over real gRPC with mTLS: an admin's test notification reaches the
// webhook, signed, and is audited with each channel's result; an operator
// and a viewer are refused and nothing is sent; a viewer lists the
// alerts and sees the channel by host only.
func TestNotifyServiceRoles(t *testing.T) {
	const secret = "server-test-signing-secret"
	var mu sync.Mutex
	var got []notify.Message
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get(notify.SignatureHeader) != notify.Sign([]byte(secret), r.Header.Get(notify.TimestampHeader), body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var m notify.Message
		_ = json.Unmarshal(body, &m)
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}))
	defer hook.Close()
	secretFile := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	tc := startTestController(t, func(c *Config) {
		c.Gossip.Enabled = false
		c.Notify.Webhooks = []notify.Webhook{{URL: hook.URL + "/path-token-xyz", SecretFile: secretFile}}
	})
	tokens := map[string]string{}
	for _, role := range []string{fleet.RoleViewer, fleet.RoleOperator, fleet.RoleAdmin} {
		tok, err := tc.Fleet().CreateAdminToken("user-"+role, role)
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = tok
	}
	client := func(role string) quarryv1.NotifyServiceClient {
		return quarryv1.NewNotifyServiceClient(adminConnRaw(t, tc, tokens[role]))
	}
	for _, role := range []string{fleet.RoleViewer, fleet.RoleOperator} {
		_, err := client(role).TestNotification(ctx(t), &quarryv1.TestNotificationRequest{})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("TestNotification as %s: %v, want PermissionDenied", role, err)
		}
	}
	mu.Lock()
	if len(got) != 0 {
		t.Errorf("refused calls sent %d messages", len(got))
	}
	mu.Unlock()

	resp, err := client(fleet.RoleAdmin).TestNotification(ctx(t), &quarryv1.TestNotificationRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != 1 || !resp.Results[0].Ok || resp.Results[0].Channel != "webhook "+hook.URL {
		t.Fatalf("results %v", resp.Results)
	}
	mu.Lock()
	if len(got) != 1 || got[0].Kind != notify.KindTest || !strings.Contains(got[0].Text, "user-admin") {
		t.Errorf("webhook got %+v", got)
	}
	mu.Unlock()

	list, err := client(fleet.RoleViewer).ListAlerts(ctx(t), &quarryv1.ListAlertsRequest{Resolved: 10})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(list.Channels, ",") != "webhook "+hook.URL {
		t.Errorf("channels %q", list.Channels)
	}
	// The dashboard's button goes through the gateway: the same role
	// table, the same audit.
	for _, role := range []string{fleet.RoleViewer, fleet.RoleOperator} {
		c, csrf := webSession(t, tc, "web-"+role, role)
		if code, out := rpcCall(t, c, tc, csrf, "quarry.v1.NotifyService/TestNotification", `{}`); code != 403 {
			t.Errorf("dashboard TestNotification as %s: %d %v", role, code, out)
		}
	}
	admin, csrf := webSession(t, tc, "web-admin", fleet.RoleAdmin)
	code, out := rpcCall(t, admin, tc, csrf, "quarry.v1.NotifyService/TestNotification", `{}`)
	if res, _ := out["results"].([]any); code != 200 || len(res) != 1 || res[0].(map[string]any)["ok"] != true {
		t.Fatalf("dashboard TestNotification as admin: %d %v", code, out)
	}
	mu.Lock()
	if len(got) != 2 || !strings.Contains(got[1].Text, "web-admin") {
		t.Errorf("webhook got %+v", got)
	}
	mu.Unlock()

	entries, err := tc.Fleet().AuditLog(time.Time{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var found, foundWeb bool
	for _, e := range entries {
		foundWeb = foundWeb || (e.Action == "notify test" && e.Who == "web-admin" && e.Result == "ok")
		if strings.Contains(e.Detail+e.Target, "path-token-xyz") || strings.Contains(e.Detail, secret) {
			t.Errorf("audit entry shows a secret: %+v", e)
		}
		if e.Action == "notify test" && e.Who == "user-admin" && e.Result == "ok" && strings.Contains(e.Detail, "webhook "+hook.URL+": ok") {
			found = true
		}
	}
	if !found || !foundWeb {
		t.Errorf("no audit entry for the test notification (quarryctl %v, dashboard %v) among %v", found, foundWeb, entries)
	}
}
