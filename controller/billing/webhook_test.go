package billing

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"
	"github.com/stripe/stripe-go/v85/webhook"

	"github.com/quarryfleet/quarry/pkg/store"
)

const whSecret = "whsec_test_secret"

// eventJSON renders an event shaped like Stripe's, trimmed to what matters.
func eventJSON(id, typ, version string, created int64, object string) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"object":"event","api_version":%q,"created":%d,"livemode":false,"pending_webhooks":1,"type":%q,"data":{"object":%s}}`,
		id, version, created, typ, object))
}

func invoice(cust string) string {
	return fmt.Sprintf(`{"id":"in_1","object":"invoice","customer":%q,"status":"open"}`, cust)
}

func subscription(cust, status string) string {
	return fmt.Sprintf(`{"id":"sub_1","object":"subscription","customer":%q,"status":%q}`, cust, status)
}

// linkStripe records a Stripe customer id as the relay would.
func linkStripe(t *testing.T, s *Service, id, stripeID string) {
	t.Helper()
	if err := s.db.Update(func(tx *store.Tx) error {
		return applyResult(tx, Record{Customer: id}, sendResult{customerID: stripeID})
	}); err != nil {
		t.Fatal(err)
	}
}

func newWebhookService(t *testing.T, cfg Config) (*Service, *httptest.Server) {
	t.Helper()
	cfg.WebhookSecret = whSecret
	s := newTestService(t, openDB(t, filepath.Join(t.TempDir(), "b.db")), cfg)
	mustCustomer(t, s, "alice")
	linkStripe(t, s, "alice", "cus_alice")
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return s, srv
}

func post(t *testing.T, url string, payload []byte, secret string, ts time.Time) (int, string) {
	t.Helper()
	sp := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: ts})
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(payload)))
	req.Header.Set("Stripe-Signature", sp.Header)
	c := testHTTPClient(t, 5*time.Second)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWebhookVerification(t *testing.T) {
	v := stripe.APIVersion
	tests := []struct {
		name       string
		cfg        Config
		version    string
		secret     string
		age        time.Duration
		wantCode   int
		wantBody   string
		wantStatus Status
	}{
		{"good signature", Config{}, v, whSecret, 0, 200, "applied", StatusPastDue},
		{"bad signature", Config{}, v, "whsec_other", 0, 400, "signature", StatusActive},
		{"stale timestamp", Config{}, v, whSecret, 10 * time.Minute, 400, "timestamp", StatusActive},
		{"wrong API version rejected", Config{}, "2025-01-27.acacia", whSecret, 0, 400, "API version", StatusActive},
		{"wrong API version accepted when configured", Config{AcceptAPIVersionMismatch: true}, "2025-01-27.acacia", whSecret, 0, 200, "applied", StatusPastDue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, srv := newWebhookService(t, tc.cfg)
			code, body := post(t, srv.URL, eventJSON("evt_1", "invoice.payment_failed", tc.version, time.Now().Unix(), invoice("cus_alice")), tc.secret, time.Now().Add(-tc.age))
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("got %d %q, want %d containing %q", code, body, tc.wantCode, tc.wantBody)
			}
			if c, _ := s.GetCustomer("alice"); c.Status != tc.wantStatus {
				t.Errorf("status %s, want %s", c.Status, tc.wantStatus)
			}
		})
	}
}

func TestWebhookDuplicateAndOutOfOrder(t *testing.T) {
	s, srv := newWebhookService(t, Config{})
	v := stripe.APIVersion
	steps := []struct {
		id, typ, object string
		created         int64
		wantOutcome     string
		wantStatus      Status
	}{
		{"evt_a", "invoice.payment_failed", invoice("cus_alice"), 200, "applied", StatusPastDue},
		{"evt_a", "invoice.payment_failed", invoice("cus_alice"), 200, "duplicate", StatusPastDue},
		{"evt_b", "customer.subscription.updated", subscription("cus_alice", "active"), 400, "applied", StatusActive},
		// Older failure delivered after the newer recovery.
		{"evt_c", "invoice.payment_action_required", invoice("cus_alice"), 300, "stale", StatusActive},
		{"evt_d", "invoice.paid", invoice("cus_alice"), 500, "applied", StatusActive},
		{"evt_e", "customer.subscription.updated", subscription("cus_alice", "past_due"), 600, "applied", StatusPastDue},
		{"evt_f", "customer.created", `{"object":"customer","id":"cus_alice"}`, 650, "ignored", StatusPastDue},
		{"evt_g", "invoice.paid", invoice("cus_nobody"), 660, "unknown customer", StatusPastDue},
		{"evt_h", "customer.subscription.deleted", subscription("cus_alice", "canceled"), 700, "applied", StatusCanceled},
		{"evt_i", "invoice.paid", invoice("cus_alice"), 800, "canceled is final", StatusCanceled},
	}
	for i, st := range steps {
		code, body := post(t, srv.URL, eventJSON(st.id, st.typ, v, st.created, st.object), whSecret, time.Now())
		if code != 200 || !strings.Contains(body, `"`+st.wantOutcome+`"`) {
			t.Errorf("step %d %s: %d %s, want outcome %q", i, st.id, code, body, st.wantOutcome)
		}
		if c, _ := s.GetCustomer("alice"); c.Status != st.wantStatus {
			t.Errorf("step %d %s: status %s, want %s", i, st.id, c.Status, st.wantStatus)
		}
	}
}

func TestPolicyAction(t *testing.T) {
	since := time.Unix(1000, 0)
	tests := []struct {
		name   string
		policy PastDuePolicy
		status Status
		after  time.Duration
		want   Action
	}{
		{"active", PastDuePolicy{StopSwitching: true, StopMiningAfter: time.Hour}, StatusActive, 48 * time.Hour, ActionNone},
		{"default notifies only", PastDuePolicy{}, StatusPastDue, 90 * 24 * time.Hour, ActionNotify},
		{"stop switching", PastDuePolicy{StopSwitching: true}, StatusPastDue, time.Minute, ActionStopSwitching},
		{"within grace", PastDuePolicy{StopSwitching: true, StopMiningAfter: 72 * time.Hour}, StatusPastDue, 71 * time.Hour, ActionStopSwitching},
		{"after grace", PastDuePolicy{StopSwitching: true, StopMiningAfter: 72 * time.Hour}, StatusPastDue, 72 * time.Hour, ActionStopMining},
		{"canceled after grace", PastDuePolicy{StopMiningAfter: time.Hour}, StatusCanceled, 2 * time.Hour, ActionStopMining},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestService(t, openDB(t, filepath.Join(t.TempDir(), "b.db")), Config{PastDue: tc.policy})
			mustCustomer(t, s, "alice")
			if err := s.db.Update(func(tx *store.Tx) error {
				var c Customer
				_ = getJSON(tx.Bucket(bucketCustomers), []byte("alice"), &c)
				c.Status, c.StatusAsOf = tc.status, since.Unix()
				if tc.status == StatusPastDue {
					c.PastDueSince = since
				}
				return putJSON(tx.Bucket(bucketCustomers), []byte("alice"), c)
			}); err != nil {
				t.Fatal(err)
			}
			got, err := s.PolicyAction("alice", since.Add(tc.after))
			if err != nil || got != tc.want {
				t.Errorf("PolicyAction = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
