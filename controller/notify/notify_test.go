package notify_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/controller/notify"
	"github.com/quarryfleet/quarry/controller/notify/notifytest"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

const smtpPassword = "smtp-password-s3cr3t"

// A rig that goes offline and comes back gives exactly one firing and one
// resolved message on each channel: a signed webhook and mail through a
// relay that offers STARTTLS and wants a password. More ticks and a
// restart send nothing again, and no secret reaches the log.
func TestOfflineRigFiresAndResolvesOncePerChannel(t *testing.T) {
	hook := newReceiver(t, 0)
	tlsCfg, roots := notifytest.SelfSigned(t)
	mail := notifytest.NewSMTPServer(t, tlsCfg, smtpPassword)

	e := newEnv(t, testConfig())
	e.cfg.Webhooks = []notify.Webhook{e.webhook(hook.srv.URL + "/hooks/token-in-path")}
	e.cfg.SMTP = notify.SMTP{StartTLS: true, Addr: mail.Addr, From: "quarry@example.org", To: []string{"ops@example.org", "oncall@example.org"},
		Username: "quarry", PasswordFile: e.secretFile("smtp.pass", smtpPassword)}
	e.opts.SMTPRoots = roots
	e.rig("rig-1", true)
	e.start()

	e.setOnline("rig-1", false)
	testsupport.Poll(t, "one firing message on each channel", 10*time.Second, func() (bool, string) {
		return len(hook.got()) == 1 && len(mail.Mails()) == 1, kinds(hook.got())
	})
	m := hook.got()[0]
	if m.Kind != notify.KindFiring || m.RigID != "rig-1" || m.RigName != "name-rig-1" || m.Rule != notify.RuleOffline || m.Text != "offline" || m.Since.IsZero() {
		t.Errorf("firing message %+v", m)
	}
	ml := mail.Mails()[0]
	if !ml.TLS || ml.User != "quarry" || ml.From != "quarry@example.org" || strings.Join(ml.To, ",") != "ops@example.org,oncall@example.org" {
		t.Errorf("mail envelope %+v", ml)
	}
	if !strings.Contains(ml.Data, "Subject: [quarry] FIRING warning: name-rig-1 offline") || !strings.Contains(ml.Data, "Message-ID: <"+m.ID+"@quarry>") {
		t.Errorf("mail:\n%s", ml.Data)
	}

	e.setOnline("rig-1", true)
	testsupport.Poll(t, "one resolved message on each channel", 10*time.Second, func() (bool, string) {
		return len(hook.got()) == 2 && len(mail.Mails()) == 2, kinds(hook.got())
	})
	r := hook.got()[1]
	if r.Kind != notify.KindResolved || r.Key != m.Key || r.ID == m.ID || !r.Since.Equal(m.Since) || r.Resolved.IsZero() {
		t.Errorf("resolved message %+v after %+v", r, m)
	}
	if !strings.Contains(mail.Mails()[1].Data, "RESOLVED") {
		t.Errorf("second mail:\n%s", mail.Mails()[1].Data)
	}
	testsupport.Poll(t, "every delivery recorded", 5*time.Second, func() (bool, string) { return settled(e.n) })

	// More ticks find nothing new to send.
	for range 5 {
		if err := e.n.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if ok, last := settled(e.n); !ok {
		t.Errorf("a tick queued a message again: %s", last)
	}
	res := e.n.Resolved(10)
	if len(e.n.Firing()) != 0 || len(res) != 1 || res[0].State != notify.StateResolved {
		t.Fatalf("firing %v, resolved %v", e.n.Firing(), res)
	}
	for _, d := range notify.Latest(res[0].Deliveries) {
		if d.State != notify.DeliveryDelivered || d.Msg.Kind != notify.KindResolved || d.Attempts != 1 {
			t.Errorf("delivery %+v", d)
		}
	}

	// A restart finds the alert resolved and its messages delivered.
	e.stop()
	e.start()
	for range 5 {
		if err := e.n.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if ok, last := settled(e.n); !ok {
		t.Errorf("after a restart a message was queued again: %s", last)
	}
	if len(hook.got()) != 2 || len(mail.Mails()) != 2 || hook.badSig != 0 {
		t.Errorf("after restart: %d webhook messages (%s), %d mails, %d bad signatures", len(hook.got()), kinds(hook.got()), len(mail.Mails()), hook.badSig)
	}
	logs := e.logs.String()
	for _, secret := range []string{testSecret, smtpPassword, "token-in-path"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log shows %q:\n%s", secret, logs)
		}
	}
	if got := e.n.Channels(); strings.Join(got, ",") != "webhook "+hook.srv.URL+",smtp "+mail.Addr {
		t.Errorf("channels %q", got)
	}
}

// A condition that comes and goes within the hold-down sends nothing new:
// the alert stays firing, and resolves once clear for the whole hold-down.
func TestFlappingIsHeldDown(t *testing.T) {
	clock := testsupport.NewClock(time.Now()) // the fleet dates rigs by the real clock
	cfg := testConfig()
	cfg.HoldDown = 5 * time.Minute
	e := newEnv(t, cfg)
	hook := newReceiver(t, 0)
	e.cfg.Webhooks = []notify.Webhook{e.webhook(hook.srv.URL)}
	e.opts.Now = clock.Now
	e.rig("rig-1", true)
	n := e.open()
	ctx := context.Background()
	tick := func() {
		t.Helper()
		if err := n.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	queued := func() (firing, resolved int) {
		for _, r := range append(n.Firing(), n.Resolved(10)...) {
			for _, d := range r.Deliveries {
				switch d.Msg.Kind {
				case notify.KindFiring:
					firing++
				case notify.KindResolved:
					resolved++
				}
			}
		}
		return firing, resolved
	}
	steps := []struct {
		online  bool
		advance time.Duration
		firing  bool
		queued  [2]int
	}{
		{online: false, advance: time.Minute, firing: true, queued: [2]int{1, 0}}, // past the rig's registration
		{online: true, advance: time.Minute, firing: true, queued: [2]int{1, 0}},
		{online: false, advance: time.Minute, firing: true, queued: [2]int{1, 0}},
		{online: true, advance: time.Minute, firing: true, queued: [2]int{1, 0}},
		{online: true, advance: 4 * time.Minute, firing: true, queued: [2]int{1, 0}}, // clear 4 min of 5
		{online: true, advance: time.Minute, firing: false, queued: [2]int{1, 1}},
		{online: true, advance: time.Hour, firing: false, queued: [2]int{1, 1}},
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		e.setOnline("rig-1", s.online)
		tick()
		f, r := queued()
		if got := len(n.Firing()) == 1; got != s.firing || [2]int{f, r} != s.queued {
			t.Fatalf("step %d: firing %v (want %v), queued firing/resolved %d/%d (want %v)", i, got, s.firing, f, r, s.queued)
		}
	}
}

// Messages that cannot be delivered are retried with backoff and shown as
// failing, and none is lost: once the webhook answers and the relay takes
// mail, each goes exactly once. A channel that never answers keeps its
// message pending across a restart.
func TestFailedDeliveryIsRetriedAndReported(t *testing.T) {
	hook := newReceiver(t, 3) // 500 to the first three attempts
	mail := notifytest.NewSMTPServer(t, nil, "")
	mail.FailNext(2)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // nothing listens there now

	e := newEnv(t, testConfig())
	e.cfg.Webhooks = []notify.Webhook{e.webhook(hook.srv.URL), e.webhook(deadURL + "/x")}
	e.cfg.SMTP = notify.SMTP{Addr: mail.Addr, From: "quarry@example.org", To: []string{"ops@example.org"}}
	e.rig("rig-1", false)
	e.start()

	srv := &notify.NotifyServer{N: e.n}
	testsupport.Poll(t, "the dead webhook reported failing", 10*time.Second, func() (bool, string) {
		resp, err := srv.ListAlerts(context.Background(), nil)
		if err != nil || len(resp.Alerts) != 1 {
			return false, "no alert"
		}
		for _, d := range resp.Alerts[0].Deliveries {
			if d.Channel == "webhook "+deadURL && d.State == notify.DeliveryFailing && d.Attempts >= 2 && d.LastError != "" && d.NextAttemptUnixMs > 0 {
				return true, ""
			}
		}
		return false, resp.String()
	})
	testsupport.Poll(t, "the webhook and mail delivered after their failures", 10*time.Second, func() (bool, string) {
		return len(hook.got()) == 1 && len(mail.Mails()) == 1, kinds(hook.got())
	})
	hook.mu.Lock()
	requests := hook.requests
	hook.mu.Unlock()
	if requests != 4 {
		t.Errorf("webhook saw %d requests, want 3 failures and 1 delivery", requests)
	}
	// The receivers have the messages before the notifier records the
	// delivery: wait for the record.
	testsupport.Poll(t, "the deliveries recorded", 10*time.Second, func() (bool, string) {
		resp, err := srv.ListAlerts(context.Background(), nil)
		if err != nil || len(resp.Alerts) != 1 {
			return false, "no alert"
		}
		for _, d := range resp.Alerts[0].Deliveries {
			if strings.HasPrefix(d.Channel, "webhook "+deadURL) {
				if d.State != notify.DeliveryFailing || strings.Contains(d.LastError, "/x") {
					t.Errorf("dead webhook delivery %+v", d)
				}
				continue
			}
			if d.State != notify.DeliveryDelivered {
				return false, resp.String()
			}
			if d.Attempts < 2 {
				t.Errorf("delivery %+v, want delivered after retries", d)
			}
		}
		return true, ""
	})

	// Restarted, the dead webhook's message is still pending; once
	// something answers at its address it goes, once, and nothing else is
	// sent again.
	e.stop()
	e.start()
	if ok, _ := settled(e.n); ok {
		t.Fatal("the dead webhook's message was lost over the restart")
	}
	late := newReceiver(t, 0)
	late.srv.Close()
	lis, err := net.Listen("tcp", strings.TrimPrefix(deadURL, "http://"))
	if err != nil {
		t.Skipf("the dead webhook's port was taken meanwhile: %v", err)
	}
	revived := httptest.NewUnstartedServer(late.srv.Config.Handler)
	revived.Listener.Close()
	revived.Listener = lis
	revived.Start()
	defer revived.Close()
	testsupport.Poll(t, "the revived webhook's message", 10*time.Second, func() (bool, string) { return settled(e.n) })
	if got := late.got(); len(got) != 1 || got[0].Kind != notify.KindFiring || got[0].Since.IsZero() {
		t.Errorf("revived webhook got %s", kinds(got))
	}
	if len(hook.got()) != 1 || len(mail.Mails()) != 1 {
		t.Errorf("restart sent again: %d webhook, %d mail", len(hook.got()), len(mail.Mails()))
	}
}

// An alert firing when the controller stops is still firing after the
// restart, even while the restarted notifier waits out the offline grace
// for the rig, and nothing is queued again.
func TestRestartWhileFiringKeepsTheAlert(t *testing.T) {
	clock := testsupport.NewClock(time.Now()) // the fleet dates rigs by the real clock
	cfg := testConfig()
	cfg.Rules.Offline.After = 2 * time.Minute
	cfg.HoldDown = time.Minute
	e := newEnv(t, cfg)
	e.opts.Now = clock.Now
	hook := newReceiver(t, 0)
	e.cfg.Webhooks = []notify.Webhook{e.webhook(hook.srv.URL)}
	e.rig("rig-1", false)
	ctx := context.Background()
	clock.Advance(3 * time.Minute)
	n := e.open()
	clock.Advance(3 * time.Minute)
	if err := n.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if len(n.Firing()) != 1 {
		t.Fatalf("firing %v", n.Firing())
	}
	since := n.Firing()[0].Since

	// Restart: the rig is still offline, inside the new grace.
	n = e.open()
	for range 3 {
		clock.Advance(time.Minute)
		if err := n.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		f := n.Firing()
		if len(f) != 1 || !f[0].Since.Equal(since) || len(f[0].Deliveries) != 1 || !f[0].ClearSince.IsZero() {
			t.Fatalf("after restart: %+v", f)
		}
	}
}

// When many messages are due at once (a site loses power), each channel
// gets them as one batch, each member with its own id, not one message
// per rig.
func TestManyAlertsGoAsOneBatch(t *testing.T) {
	hook := newReceiver(t, 0)
	mail := notifytest.NewSMTPServer(t, nil, "")
	e := newEnv(t, testConfig())
	e.cfg.Webhooks = []notify.Webhook{e.webhook(hook.srv.URL)}
	e.cfg.SMTP = notify.SMTP{Addr: mail.Addr, From: "quarry@example.org", To: []string{"ops@example.org"}}
	const rigs = 12
	for i := range rigs {
		e.rig(fmt.Sprintf("rig-%02d", i), true)
	}
	// The rigs drop together: one tick finds them all, then the senders
	// start (on a notifier reopened from the same database).
	for i := range rigs {
		e.setOnline(fmt.Sprintf("rig-%02d", i), false)
	}
	if err := e.open().Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.start()
	testsupport.Poll(t, "a firing batch on each channel", 10*time.Second, func() (bool, string) {
		return len(hook.got()) >= 1 && len(mail.Mails()) >= 1, kinds(hook.got())
	})
	testsupport.Poll(t, "every delivery recorded", 5*time.Second, func() (bool, string) { return settled(e.n) })
	members := map[string]bool{}
	for _, m := range hook.got() {
		if m.Kind != notify.KindBatch {
			t.Fatalf("webhook got a single %s message: %+v", m.Kind, m)
		}
		for _, b := range m.Batch {
			if b.Kind != notify.KindFiring || b.RigID == "" || members[b.ID] {
				t.Errorf("batch member %+v (duplicate: %v)", b, members[b.ID])
			}
			members[b.ID] = true
		}
	}
	if len(members) != rigs || len(hook.got()) != 1 || len(mail.Mails()) != 1 {
		t.Fatalf("%d firing messages in %d webhook batches and %d mails; want %d in one each", len(members), len(hook.got()), len(mail.Mails()), rigs)
	}
	if d := mail.Mails()[0].Data; !strings.Contains(d, "BATCH: 12 alert messages: 12 firing") || strings.Count(d, "FIRING warning: name-rig-") != rigs {
		t.Errorf("batch mail:\n%s", d)
	}
}
