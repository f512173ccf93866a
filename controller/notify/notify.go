// Package notify is the controller's alerts: the rules that decide what
// wants a person's attention (used by the dashboard too, so both agree),
// their state kept in the controller's database, and the delivery of one
// message when an alert fires and one when it resolves, to webhooks and
// mail, retried with backoff on failure.
//
// The evaluation tick never waits for delivery: it records transitions
// and their pending messages in one transaction and wakes one sender per
// channel. A restart finds the same state, so it neither repeats a
// message already delivered nor forgets one still pending.
package notify

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

const bucketAlerts = "notify_alerts"

// Buckets lists the buckets this package owns.
var Buckets = []string{bucketAlerts}

// Alert states.
const (
	StateFiring   = "firing"
	StateResolved = "resolved"
)

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryFailing   = "failing"
	DeliveryDelivered = "delivered"
	DeliveryDropped   = "dropped"
)

// Fleet is what the rules read of the fleet; *fleet.Fleet fits.
type Fleet interface {
	EachRig(fn func(r *quarryv1.Rig))
}

// Options are the notifier's inputs besides its configuration.
type Options struct {
	DB    *store.DB
	Fleet Fleet
	// Expectations, Billing and Market are optional; their rules find
	// nothing without them.
	Expectations Expectations
	Billing      Billing
	Market       Market
	Log          *slog.Logger
	Now          func() time.Time
	// SMTPRoots verifies the relay's STARTTLS certificate (default: the
	// system's roots).
	SMTPRoots *x509.CertPool
}

// Record is an alert as stored: its current text, state and times, and
// the delivery of its latest messages on each channel.
type Record struct {
	Alert
	State      string     `json:"state"`
	Since      time.Time  `json:"since"`
	Resolved   time.Time  `json:"resolved,omitzero"`
	ClearSince time.Time  `json:"clear_since,omitzero"`
	Deliveries []Delivery `json:"deliveries,omitempty"`
}

// Delivery is one message on one channel.
type Delivery struct {
	Channel   string    `json:"channel"`
	Msg       Message   `json:"msg"`
	State     string    `json:"state"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	Queued    time.Time `json:"queued"`
	Next      time.Time `json:"next,omitzero"`
	Done      time.Time `json:"done,omitzero"`
}

func (d Delivery) final() bool { return d.State == DeliveryDelivered || d.State == DeliveryDropped }

// Notifier evaluates the rules on a tick and delivers their messages.
type Notifier struct {
	cfg      Config
	o        Options
	log      *slog.Logger
	channels []channel
	started  time.Time

	mu    sync.Mutex
	recs  map[string]*Record
	wake  map[string]chan struct{}
	runMu sync.Mutex // one tick at a time
}

// Open loads the stored alerts and reads the channels' secrets.
func Open(cfg Config, o Options) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	n := &Notifier{cfg: cfg, o: o, log: o.Log, recs: map[string]*Record{}, wake: map[string]chan struct{}{}, started: o.Now()}
	for i, w := range cfg.Webhooks {
		h, err := newWebhook(i, w, o.Now)
		if err != nil {
			return nil, err
		}
		n.channels = append(n.channels, h)
	}
	if cfg.SMTP.Addr != "" {
		m, err := newMailer(cfg.SMTP, o.SMTPRoots, o.Now)
		if err != nil {
			return nil, err
		}
		n.channels = append(n.channels, m)
	}
	seen := map[string]bool{}
	for _, c := range n.channels {
		if seen[c.Name()] {
			return nil, fmt.Errorf("notify: two channels are both %s", c.Name())
		}
		seen[c.Name()] = true
		n.wake[c.Name()] = make(chan struct{}, 1)
	}
	if err := o.DB.EnsureBuckets(Buckets...); err != nil {
		return nil, err
	}
	err := o.DB.View(func(tx *store.Tx) error {
		return tx.Bucket([]byte(bucketAlerts)).ForEach(func(k, v []byte) error {
			r := &Record{}
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("notify: alert %q: %w", k, err)
			}
			n.recs[string(k)] = r
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	// Messages for a channel no longer configured can never go out.
	var gone []*Record
	for _, r := range n.recs {
		changed := false
		for i := range r.Deliveries {
			if d := &r.Deliveries[i]; !d.final() && !seen[d.Channel] {
				d.State, d.LastError, d.Done, changed = DeliveryDropped, "channel no longer configured", o.Now(), true
			}
		}
		if changed {
			gone = append(gone, r)
		}
	}
	if len(gone) > 0 {
		if err := n.save(gone, nil); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// Channels names the configured channels.
func (n *Notifier) Channels() []string {
	out := make([]string, len(n.channels))
	for i, c := range n.channels {
		out[i] = c.Name()
	}
	return out
}

// Run ticks and delivers until ctx ends.
func (n *Notifier) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range n.channels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.sendLoop(ctx, c)
		}()
	}
	t := time.NewTicker(n.cfg.Interval)
	defer t.Stop()
	for {
		if err := n.Tick(ctx); err != nil && ctx.Err() == nil {
			n.log.Error("alert evaluation failed", "err", err)
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		}
	}
}

// evaluate applies every rule now. billingKnown is false when billing
// could not say who is past due; its alerts then stay as they are.
func (n *Notifier) evaluate(now time.Time) (cur map[string]Alert, offline map[string]bool, billingKnown bool) {
	cur, offline = map[string]Alert{}, map[string]bool{}
	rules := n.cfg.Rules
	n.o.Fleet.EachRig(func(r *quarryv1.Rig) {
		if !r.Online {
			offline[r.Id] = true
		}
		for _, a := range rules.RigAlerts(r, now, n.started, n.o.Expectations) {
			cur[a.Key] = a
		}
	})
	billingKnown = true
	if n.o.Billing != nil && rules.BillingDue.Enabled {
		cs, err := n.o.Billing.PastDue()
		if err != nil {
			billingKnown = false
			n.log.Warn("billing standing unavailable; billing alerts unchanged", "err", err)
		}
		for _, a := range rules.BillingAlerts(cs) {
			cur[a.Key] = a
		}
	}
	if n.o.Market != nil {
		stale, reason := n.o.Market.MarketStale()
		for _, a := range rules.MarketAlerts(stale, reason) {
			cur[a.Key] = a
		}
	}
	return cur, offline, billingKnown
}

// Tick evaluates the rules once and records what fired and resolved; it
// never waits for a message to be delivered.
func (n *Notifier) Tick(ctx context.Context) error {
	n.runMu.Lock()
	defer n.runMu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	now := n.o.Now()
	cur, offline, billingKnown := n.evaluate(now)

	n.mu.Lock()
	var changed []*Record
	queued := false
	for key, a := range cur {
		old := n.recs[key]
		switch {
		case old == nil || old.State == StateResolved:
			r := &Record{Alert: a, State: StateFiring, Since: now}
			if old != nil {
				r.Deliveries = pendingOnly(old.Deliveries)
			}
			n.queue(r, KindFiring, now)
			queued = queued || len(n.channels) > 0
			changed = append(changed, r)
		case !old.ClearSince.IsZero() || old.Message != a.Message || old.Severity != a.Severity || old.RigName != a.RigName:
			r := clone(old)
			r.ClearSince = time.Time{}
			r.Message, r.Severity, r.RigName = a.Message, a.Severity, a.RigName
			changed = append(changed, r)
		}
	}
	for key, old := range n.recs {
		if old.State != StateFiring {
			continue
		}
		if _, ok := cur[key]; ok {
			continue
		}
		// Cannot be judged now: what an offline rig last said is old, a
		// rig still offline has not come back (it may only be inside the
		// grace after a controller restart), and billing did not answer.
		if (offline[old.RigID] && (keepWhileOffline(old.Rule) || old.Rule == RuleOffline)) || (old.Rule == RuleBillingDue && !billingKnown) {
			continue
		}
		r := clone(old)
		if r.ClearSince.IsZero() {
			r.ClearSince = now
		}
		if now.Sub(r.ClearSince) >= n.cfg.HoldDown {
			r.State, r.Resolved, r.ClearSince = StateResolved, now, time.Time{}
			n.queue(r, KindResolved, now)
			queued = queued || len(n.channels) > 0
		}
		changed = append(changed, r)
	}
	deleted := n.pruneLocked()
	n.mu.Unlock()

	if len(changed) > 0 || len(deleted) > 0 {
		if err := n.save(changed, deleted); err != nil {
			return err
		}
	}
	if queued {
		n.wakeAll()
	}
	return nil
}

// pendingOnly keeps the messages of an earlier transition that are still
// to go, so that they go before the new one.
func pendingOnly(ds []Delivery) []Delivery {
	var out []Delivery
	for _, d := range ds {
		if !d.final() {
			out = append(out, d)
		}
	}
	return out
}

func clone(r *Record) *Record {
	c := *r
	c.Deliveries = slices.Clone(r.Deliveries)
	return &c
}

// queue adds the transition's message for every channel, dropping the
// final deliveries of earlier transitions.
func (n *Notifier) queue(r *Record, kind string, now time.Time) {
	r.Deliveries = pendingOnly(r.Deliveries)
	msg := Message{ID: messageID(r.Key, kind, r.Since), Kind: kind, Key: r.Key, Rule: r.Rule, RigID: r.RigID, RigName: r.RigName,
		Subject: r.Subject, Severity: r.Severity, Text: r.Message, Since: r.Since, Resolved: r.Resolved}
	for _, c := range n.channels {
		r.Deliveries = append(r.Deliveries, Delivery{Channel: c.Name(), Msg: msg, State: DeliveryPending, Queued: now, Next: now})
	}
}

// messageID is the same for the same transition of the same alert, so a
// receiver can drop a repeat (a delivery whose answer was lost is sent
// again).
func messageID(key, kind string, since time.Time) string {
	h := sha256.Sum256([]byte(key + "\x00" + kind + "\x00" + strconv.FormatInt(since.UnixNano(), 10)))
	return hex.EncodeToString(h[:12])
}

// pruneLocked drops the oldest resolved alerts beyond KeepResolved whose
// messages are all final, and returns their keys.
func (n *Notifier) pruneLocked() []string {
	var resolved []*Record
	for _, r := range n.recs {
		if r.State == StateResolved {
			resolved = append(resolved, r)
		}
	}
	if len(resolved) <= n.cfg.KeepResolved {
		return nil
	}
	slices.SortFunc(resolved, func(a, b *Record) int { return a.Resolved.Compare(b.Resolved) })
	var del []string
	for _, r := range resolved[:len(resolved)-n.cfg.KeepResolved] {
		if len(pendingOnly(r.Deliveries)) == 0 {
			del = append(del, r.Key)
		}
	}
	return del
}

// save writes changed records and deletes keys in one transaction, then
// makes them current in memory. A failed write changes nothing, so the
// next tick finds the same transitions again.
func (n *Notifier) save(changed []*Record, deleted []string) error {
	err := n.o.DB.Update(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(bucketAlerts))
		for _, r := range changed {
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(r.Key), v); err != nil {
				return err
			}
		}
		for _, k := range deleted {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("notify: store alerts: %w", err)
	}
	n.mu.Lock()
	for _, r := range changed {
		n.recs[r.Key] = r
	}
	for _, k := range deleted {
		delete(n.recs, k)
	}
	n.mu.Unlock()
	return nil
}

func (n *Notifier) wakeAll() {
	for _, ch := range n.wake {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// backoff is the wait after the attempts-th failure: 1s doubling to
// MaxBackoff.
func (n *Notifier) backoff(attempts int) time.Duration {
	d := time.Second
	for i := 1; i < attempts && d < n.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, n.cfg.MaxBackoff)
}

// sendLoop delivers c's due messages, then sleeps until the next is due
// or a tick queues more.
func (n *Notifier) sendLoop(ctx context.Context, c channel) {
	for {
		next := n.sendDue(ctx, c)
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(n.o.Now()), 10*time.Millisecond)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-n.wake[c.Name()]:
		case <-t.C:
		}
		t.Stop()
	}
}

type due struct {
	key string
	d   Delivery
}

// sendDue sends every due message of c, oldest first, each alert's in
// order, and returns when the next pending one is due (zero: none).
func (n *Notifier) sendDue(ctx context.Context, c channel) time.Time {
	for ctx.Err() == nil {
		now := n.o.Now()
		var todo []due
		var next time.Time
		n.mu.Lock()
		for _, r := range n.recs {
			for _, d := range r.Deliveries {
				if d.Channel != c.Name() || d.final() {
					continue
				}
				if !d.Next.After(now) {
					todo = append(todo, due{r.Key, d})
				} else if next.IsZero() || d.Next.Before(next) {
					next = d.Next
				}
				break // the alert's later messages wait for this one
			}
		}
		n.mu.Unlock()
		if len(todo) == 0 {
			return next
		}
		slices.SortFunc(todo, func(a, b due) int { return a.d.Queued.Compare(b.d.Queued) })
		size := 1
		if n.cfg.BatchAbove > 0 && len(todo) > n.cfg.BatchAbove {
			size = maxBatch
		}
		for len(todo) > 0 {
			group := todo[:min(size, len(todo))]
			todo = todo[len(group):]
			if ctx.Err() != nil {
				return next
			}
			if !n.attempt(ctx, c, group) {
				// The outcome was not stored: wait before trying again
				// rather than send the same message in a loop.
				return n.o.Now().Add(n.cfg.MaxBackoff)
			}
		}
	}
	return time.Time{}
}

// maxBatch is the most messages one batch carries.
const maxBatch = 100

// attempt sends a group of due messages (one message, or a batch when
// more than BatchAbove are due at once) and records the outcome of each;
// false if the outcome could not be stored.
func (n *Notifier) attempt(ctx context.Context, c channel, group []due) bool {
	now := n.o.Now()
	var send []int
	for i := range group {
		d := &group[i].d
		if now.Sub(d.Queued) > n.cfg.GiveUpAfter {
			d.State, d.Done = DeliveryDropped, now
			d.LastError = "gave up after " + n.cfg.GiveUpAfter.String() + ": " + d.LastError
			n.log.Warn("alert message dropped", "channel", c.Name(), "alert", group[i].key, "kind", d.Msg.Kind, "attempts", d.Attempts)
			continue
		}
		send = append(send, i)
	}
	if len(send) > 0 {
		msg := group[send[0]].d.Msg
		if len(send) > 1 {
			msgs := make([]Message, len(send))
			for j, i := range send {
				msgs[j] = group[i].d.Msg
			}
			msg = batchMessage(msgs)
		}
		err := c.Send(ctx, msg)
		if ctx.Err() != nil && err != nil {
			return true // shutting down: the messages stay pending
		}
		now = n.o.Now()
		for _, i := range send {
			d := &group[i].d
			d.Attempts++
			if err == nil {
				d.State, d.LastError, d.Done, d.Next = DeliveryDelivered, "", now, time.Time{}
				n.log.Info("alert message delivered", "channel", c.Name(), "alert", group[i].key, "kind", d.Msg.Kind, "batch", len(send))
			} else {
				d.State, d.LastError = DeliveryFailing, clean(err.Error(), 300)
				d.Next = now.Add(n.backoff(d.Attempts))
				n.log.Warn("alert message not delivered; will retry", "channel", c.Name(), "alert", group[i].key, "kind", d.Msg.Kind,
					"attempts", d.Attempts, "retry_in", n.backoff(d.Attempts), "err", d.LastError)
			}
		}
	}
	// Save under runMu, so that a tick replacing a record meanwhile and
	// this write do not undo each other.
	n.runMu.Lock()
	defer n.runMu.Unlock()
	n.mu.Lock()
	byKey := map[string]*Record{}
	for _, t := range group {
		r := byKey[t.key]
		if r == nil {
			cur := n.recs[t.key]
			if cur == nil {
				continue // pruned meanwhile
			}
			r = clone(cur)
			byKey[t.key] = r
		}
		for i := range r.Deliveries {
			if x := r.Deliveries[i]; x.Channel == t.d.Channel && x.Msg.ID == t.d.Msg.ID {
				r.Deliveries[i] = t.d
			}
		}
	}
	n.mu.Unlock()
	changed := make([]*Record, 0, len(byKey))
	for _, r := range byKey {
		changed = append(changed, r)
	}
	if err := n.save(changed, nil); err != nil {
		n.log.Error("delivery state not stored", "alerts", len(changed), "err", err)
		return false
	}
	return true
}

// batchMessage carries several messages as one: a whole site going dark
// sends one mail, not one per rig. Each member keeps its own id.
func batchMessage(msgs []Message) Message {
	h := sha256.New()
	counts := map[string]int{}
	for _, m := range msgs {
		h.Write([]byte(m.ID))
		counts[m.Kind]++
	}
	text := strconv.Itoa(len(msgs)) + " alert messages"
	var parts []string
	for _, k := range []string{KindFiring, KindResolved} {
		if counts[k] > 0 {
			parts = append(parts, strconv.Itoa(counts[k])+" "+k)
		}
	}
	if len(parts) > 0 {
		text += ": " + strings.Join(parts, ", ")
	}
	return Message{ID: hex.EncodeToString(h.Sum(nil)[:12]), Kind: KindBatch, Text: text, Batch: msgs}
}

// Firing lists the firing alerts, oldest first.
func (n *Notifier) Firing() []Record {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Record
	for _, r := range n.recs {
		if r.State == StateFiring {
			out = append(out, *clone(r))
		}
	}
	slices.SortFunc(out, func(a, b Record) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return compareStr(a.Key, b.Key)
	})
	return out
}

// Resolved lists up to limit resolved alerts, newest first.
func (n *Notifier) Resolved(limit int) []Record {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Record
	for _, r := range n.recs {
		if r.State == StateResolved {
			out = append(out, *clone(r))
		}
	}
	slices.SortFunc(out, func(a, b Record) int { return b.Resolved.Compare(a.Resolved) })
	return out[:min(len(out), limit)]
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ChannelResult is how a test message fared on one channel.
type ChannelResult struct {
	Channel string
	Err     error
}

// ErrNoChannels is returned by SendTest when nothing is configured.
var ErrNoChannels = errors.New("no notification channels configured (notify.webhooks, notify.smtp)")

// SendTest sends a test message to every channel at once and waits for
// each; it is neither queued nor retried.
func (n *Notifier) SendTest(ctx context.Context, who string) ([]ChannelResult, error) {
	if len(n.channels) == 0 {
		return nil, ErrNoChannels
	}
	var id [12]byte
	_, _ = rand.Read(id[:])
	msg := Message{ID: hex.EncodeToString(id[:]), Kind: KindTest, Text: "test notification requested by " + clean(who, 128)}
	out := make([]ChannelResult, len(n.channels))
	var wg sync.WaitGroup
	for i, c := range n.channels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = ChannelResult{Channel: c.Name(), Err: c.Send(ctx, msg)}
		}()
	}
	wg.Wait()
	return out, nil
}
