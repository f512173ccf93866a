package notify_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/controller/notify"
	"github.com/quarryfleet/quarry/controller/notify/notifytest"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

type expect map[string]float64

func (e expect) ExpectedHashrate(rig, algo string) (float64, bool) {
	v, ok := e[rig+"/"+algo]
	return v, ok
}

func f64(v float64) *float64 { return &v }

func TestRigAlerts(t *testing.T) {
	now := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	rules := notify.DefaultConfig().Rules
	exp := expect{"r/kawpow": 30e6}
	crash := func(ago time.Duration) *quarryv1.Event {
		return &quarryv1.Event{Kind: "miner_exited", TimeUnixNano: now.Add(-ago).UnixNano()}
	}
	tests := []struct {
		name  string
		rig   *quarryv1.Rig
		since time.Time
		want  []string // key=severity message
	}{
		{"healthy", &quarryv1.Rig{Id: "r", Online: true, Gpus: []*quarryv1.GPUStats{{Index: 0, TemperatureC: f64(84.9)}},
			Miners: []*quarryv1.MinerStats{{Miner: "trex", Algorithm: "kawpow", Hashrate: 29e6, State: "running"}}}, time.Time{}, nil},
		{"offline a minute", &quarryv1.Rig{Id: "r", LastSeenUnixNano: now.Add(-time.Minute).UnixNano()}, time.Time{},
			[]string{"offline|r|rig=warning offline"}},
		{"offline under a minute", &quarryv1.Rig{Id: "r", LastSeenUnixNano: now.Add(-59 * time.Second).UnixNano()}, time.Time{}, nil},
		{"offline, notifier just started", &quarryv1.Rig{Id: "r", LastSeenUnixNano: now.Add(-time.Hour).UnixNano()}, now.Add(-time.Second), nil},
		{"revoked", &quarryv1.Rig{Id: "r", Revoked: true}, time.Time{}, nil},
		{"hot and lost GPUs", &quarryv1.Rig{Id: "r", Online: true, Gpus: []*quarryv1.GPUStats{{Index: 0, TemperatureC: f64(85)}, {Index: 1, Lost: true, TemperatureC: f64(99)}}}, time.Time{},
			[]string{"gpu_hot|r|gpu0=warning GPU 0 at 85 °C", "gpu_lost|r|gpu1=critical GPU 1 lost"}},
		{"miner down, error cleaned", &quarryv1.Rig{Id: "r", Online: true, Miners: []*quarryv1.MinerStats{{Miner: "xmrig", State: "crashed", Error: "exit 1\r\nSubject: x\x1b[31m"}}}, time.Time{},
			[]string{"miner_down|r|xmrig=critical xmrig crashed: exit 1  Subject: x[31m"}},
		{"hashrate low", &quarryv1.Rig{Id: "r", Online: true, Miners: []*quarryv1.MinerStats{{Miner: "trex", Algorithm: "kawpow", Hashrate: 15e6, State: "running"}}}, time.Time{},
			[]string{"hashrate_low|r|trex/kawpow=warning trex kawpow at 50% of the expected hashrate"}},
		{"hashrate unknown while warming", &quarryv1.Rig{Id: "r", Online: true, Miners: []*quarryv1.MinerStats{{Miner: "trex", Algorithm: "kawpow", Hashrate: 0, State: "warming"}}}, time.Time{}, nil},
		{"crash loop", &quarryv1.Rig{Id: "r", Online: true, Events: []*quarryv1.Event{crash(time.Minute), crash(5 * time.Minute), crash(14 * time.Minute)}}, time.Time{},
			[]string{"crash_loop|r|miner=critical miner exited 3 times in 15m0s"}},
		{"crashes spread out", &quarryv1.Rig{Id: "r", Online: true, Events: []*quarryv1.Event{crash(time.Minute), crash(5 * time.Minute), crash(16 * time.Minute)}}, time.Time{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, a := range rules.RigAlerts(tc.rig, now, tc.since, exp) {
				got = append(got, a.Key+"="+a.Severity+" "+a.Message)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	off := rules
	off.GPUHot.Enabled, off.Offline.Enabled = false, false
	if a := off.RigAlerts(&quarryv1.Rig{Id: "r", Online: true, Gpus: []*quarryv1.GPUStats{{TemperatureC: f64(99)}}}, now, time.Time{}, nil); len(a) != 0 {
		t.Errorf("disabled rule fired: %v", a)
	}
}

type billingStub struct {
	cs  []notify.PastDueCustomer
	err error
}

func (b *billingStub) PastDue() ([]notify.PastDueCustomer, error) { return b.cs, b.err }

type marketStub struct {
	stale  bool
	reason string
}

func (m *marketStub) MarketStale() (bool, string) { return m.stale, m.reason }

// Billing and market alerts come through their small interfaces; while
// billing cannot answer, its alerts neither fire nor resolve.
func TestBillingAndMarketAlerts(t *testing.T) {
	e := newEnv(t, testConfig())
	e.cfg.HoldDown = 0
	b := &billingStub{cs: []notify.PastDueCustomer{{ID: "cus1", Name: "Acme", Since: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}}}
	m := &marketStub{stale: true, reason: "market data is 3h old"}
	e.opts.Billing, e.opts.Market = b, m
	n := e.open()
	ctx := context.Background()
	keys := func() string {
		var ks []string
		for _, r := range n.Firing() {
			ks = append(ks, r.Key+"="+r.Message)
		}
		return strings.Join(ks, ";")
	}
	if err := n.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	want := "billing_past_due||cus1=customer Acme is past due since 2026-12-01T00:00:00Z;market_stale||market=market data stale: market data is 3h old"
	if k := keys(); k != want && k != strings.Join([]string{strings.Split(want, ";")[1], strings.Split(want, ";")[0]}, ";") {
		t.Fatalf("firing %q", k)
	}
	b.cs, b.err = nil, errors.New("database busy")
	m.stale = false
	if err := n.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if k := keys(); k != "billing_past_due||cus1=customer Acme is past due since 2026-12-01T00:00:00Z" {
		t.Fatalf("after billing failed and market recovered: %q", k)
	}
	b.err = nil
	if err := n.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if k := keys(); k != "" {
		t.Fatalf("after billing answered: %q", k)
	}
}

// A webhook that redirects to another host is not followed: the other
// host never sees the message, and the delivery fails.
func TestWebhookRefusesRedirectToAnotherHost(t *testing.T) {
	other := newReceiver(t, 0)
	redirect := httptest.NewServer(http.RedirectHandler(strings.Replace(other.srv.URL, "127.0.0.1", "localhost", 1), http.StatusTemporaryRedirect))
	defer redirect.Close()
	e := newEnv(t, testConfig())
	e.cfg.Webhooks = []notify.Webhook{e.webhook(redirect.URL)}
	n := e.open()
	res, err := n.SendTest(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "redirect to another host") {
		t.Errorf("result %+v", res)
	}
	if len(other.got()) != 0 {
		t.Errorf("the other host got %s", kinds(other.got()))
	}
}

// A relay that does not offer STARTTLS is refused unless STARTTLS was
// explicitly turned off, which only a loopback relay may do.
func TestSMTPRequiresStartTLS(t *testing.T) {
	plain := notifytest.NewSMTPServer(t, nil, "")
	e := newEnv(t, testConfig())
	e.cfg.SMTP = notify.SMTP{StartTLS: true, Addr: plain.Addr, From: "q@example.org", To: []string{"ops@example.org"}}
	n := e.open()
	res, err := n.SendTest(context.Background(), "alice")
	if err != nil || len(res) != 1 || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "does not offer STARTTLS") {
		t.Fatalf("result %+v, %v", res, err)
	}
	if len(plain.Mails()) != 0 {
		t.Errorf("mail sent in the clear: %+v", plain.Mails())
	}
	e.cfg.SMTP.StartTLS = false
	n = e.open()
	res, _ = n.SendTest(context.Background(), "alice")
	if res[0].Err != nil || len(plain.Mails()) != 1 || !strings.Contains(plain.Mails()[0].Data, "test notification requested by alice") {
		t.Fatalf("result %+v, mails %+v", res, plain.Mails())
	}
	e.cfg.SMTP.Addr = "mail.example.org:25"
	if err := e.cfg.Validate(); err == nil || !strings.Contains(err.Error(), "smtp.starttls") {
		t.Errorf("starttls off for a remote relay: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *notify.Config)
		want string
	}{
		{"defaults", func(*notify.Config) {}, ""},
		{"webhook ftp", func(c *notify.Config) { c.Webhooks = []notify.Webhook{{URL: "ftp://x/y", SecretFile: "s"}} }, "webhooks[0].url: scheme"},
		{"webhook credentials", func(c *notify.Config) { c.Webhooks = []notify.Webhook{{URL: "https://u:p@x/y", SecretFile: "s"}} }, "must not carry a user"},
		{"webhook unsigned", func(c *notify.Config) { c.Webhooks = []notify.Webhook{{URL: "https://x/y"}} }, "secret_file: required"},
		{"smtp no recipients", func(c *notify.Config) { c.SMTP = notify.SMTP{StartTLS: true, Addr: "127.0.0.1:25", From: "a@b.c"} }, "smtp.to"},
		{"smtp user without password", func(c *notify.Config) {
			c.SMTP = notify.SMTP{StartTLS: true, Addr: "127.0.0.1:25", From: "a@b.c", To: []string{"d@e.f"}, Username: "u"}
		}, "username and password_file"},
		{"hot threshold", func(c *notify.Config) { c.Rules.GPUHot.TempC = 5 }, "rules.gpu_hot.temp_c"},
		{"hashrate percent", func(c *notify.Config) { c.Rules.HashrateLow.Percent = 100 }, "rules.hashrate_low.percent"},
		{"disabled rule not checked", func(c *notify.Config) { c.Rules.HashrateLow = notify.HashrateRule{} }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := notify.DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

// A secret file that is missing or too short stops the notifier opening,
// naming the setting and never the secret.
func TestSecretFiles(t *testing.T) {
	e := newEnv(t, testConfig())
	e.cfg.Webhooks = []notify.Webhook{{URL: "https://hooks.example.org/x", SecretFile: e.secretFile("short", "tiny")}}
	if _, err := notify.Open(e.cfg, e.opts); err == nil || !strings.Contains(err.Error(), "webhooks[0].secret_file") || strings.Contains(err.Error(), "tiny") {
		t.Errorf("short secret: %v", err)
	}
	e.cfg.Webhooks[0].SecretFile = e.dir + "/missing"
	if _, err := notify.Open(e.cfg, e.opts); err == nil || !strings.Contains(err.Error(), "webhooks[0].secret_file") {
		t.Errorf("missing secret: %v", err)
	}
}
