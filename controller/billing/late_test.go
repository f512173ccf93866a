package billing

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/controller/billing/faultproxy"
	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

// span is [from, to) after t10.
type span struct{ from, to time.Duration }

func (s span) has(d time.Duration) bool { return d >= s.from && d < s.to }

// simRig is one rig of a billing scenario: it measures watts every 10 s
// from t10 to end, except while silent (nothing measured: a reboot, a
// crashed agent). While offline (agent cut off from the controller) it
// measures and buffers, and replays the buffer with the real measurement
// times when it reconnects, the last few reports twice, as an agent does
// when the acknowledgement of its last batch was lost.
type simRig struct {
	id, customer string
	watts        float64
	silent       []span
	offline      []span
	buf          []time.Duration
}

// scenario drives rigs, the controller's flusher and its relay on a
// simulated clock against stripe-mock behind the fault proxy. The
// controller may be down for a while: reports measured meanwhile reach it
// when it is back, after its first flush (the flusher starts before agents
// reconnect).
type scenario struct {
	rigs   []*simRig
	end    time.Duration
	down   span
	window time.Duration
	// faults are injected into the first requests after every rig has
	// replayed its buffer, which is when corrections are sent.
	faults []faultproxy.Fault
}

type scenarioResult struct {
	s     *Service
	proxy *faultproxy.Proxy
	// sent is the Wh of each meter event identifier that reached Stripe.
	sent map[string]int64
}

func in(spans []span, d time.Duration) bool {
	for _, s := range spans {
		if s.has(d) {
			return true
		}
	}
	return false
}

func (sc scenario) run(t *testing.T) scenarioResult {
	t.Helper()
	ctx := context.Background()
	proxy, err := faultproxy.Start(mockURL(t), faultproxy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	path := filepath.Join(t.TempDir(), "b.db")
	clk := testsupport.NewClock(t10.Add(-time.Hour))
	open := func() (*Service, *store.DB) {
		db := openDB(t, path)
		return newTestService(t, db, Config{Stripe: NewStripeClient("sk_test_123", proxy.URL(), testHTTPClient(t, 5*time.Second)),
			Now: clk.Now, RetryBase: time.Millisecond, LateWindow: sc.window}), db
	}
	s, db := open()
	for _, r := range sc.rigs {
		if _, err := s.GetCustomer(r.customer); err != nil {
			mustCustomer(t, s, r.customer)
		}
		if err := s.AssignRigs(ctx, r.customer, r.id); err != nil {
			t.Fatal(err)
		}
	}
	relay := func() {
		t.Helper()
		for range 200 {
			if _, err := s.RelayOnce(ctx); err != nil {
				t.Fatal(err)
			}
			pending, _ := s.Outbox()
			dead, _ := s.DeadLetter()
			if len(dead) > 0 {
				t.Fatalf("dead letters: %+v", dead)
			}
			if len(pending) == 0 {
				return
			}
			clk.Advance(10 * time.Millisecond)
		}
		t.Fatal("outbox not drained")
	}
	flush := func(at time.Time) {
		t.Helper()
		if err := s.Meter().Flush(ctx, at); err != nil {
			t.Fatal(err)
		}
	}
	observe := func(r *simRig, d time.Duration) {
		t.Helper()
		if err := s.Meter().Observe(r.id, t10.Add(d), r.watts); err != nil {
			t.Fatal(err)
		}
	}
	replayed := false
	const step = 10 * time.Second
	for d := time.Duration(0); d <= sc.end+time.Hour+5*time.Minute; d += step {
		clk.Set(t10.Add(d + time.Second))
		if sc.down.to > 0 && d == sc.down.from {
			flush(clk.Now())
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if sc.down.has(d) {
			for _, r := range sc.rigs {
				if d <= sc.end && !in(r.silent, d) {
					r.buf = append(r.buf, d)
				}
			}
			continue
		}
		if sc.down.to > 0 && d == sc.down.to {
			s, db = open()
			flush(clk.Now())
			relay()
		}
		anyReplay := false
		for _, r := range sc.rigs {
			if d > sc.end || in(r.silent, d) {
				continue
			}
			if in(r.offline, d) {
				r.buf = append(r.buf, d)
				continue
			}
			if len(r.buf) > 0 {
				for _, b := range r.buf {
					observe(r, b)
				}
				for _, b := range r.buf[max(len(r.buf)-3, 0):] {
					observe(r, b) // replayed twice: ignored
				}
				r.buf, anyReplay = nil, true
			}
			observe(r, d)
		}
		if anyReplay && !replayed {
			replayed = true
			proxy.Next(sc.faults...)
		}
		if d%(30*time.Second) == 0 {
			flush(clk.Now())
		}
		if d%(10*time.Minute) == 0 {
			relay()
		}
	}
	flush(clk.Now())
	relay()
	recs, err := s.AllRecords()
	if err != nil {
		t.Fatal(err)
	}
	res := scenarioResult{s: s, proxy: proxy, sent: map[string]int64{}}
	// Exactly once at the key and identifier level: every meter event was
	// done, each identifier went out under one key only (its own), and each
	// key carried one identifier and one value.
	keys := map[string]map[string]bool{}
	for _, e := range proxy.Log() {
		if e.Method != "POST" || !strings.HasPrefix(e.Path, "/v1/billing/meter_events") {
			continue
		}
		if e.IdempotencyKey != "quarry:"+e.Identifier {
			t.Errorf("identifier %s sent under key %s", e.Identifier, e.IdempotencyKey)
		}
		add(keys, e.IdempotencyKey, e.Identifier+"="+e.Value)
		if e.Forwarded && (e.Status == 200 || e.Fault == faultproxy.DropAfter) {
			v, err := strconv.ParseInt(e.Value, 10, 64)
			if err != nil {
				t.Fatalf("meter event value %q: %v", e.Value, err)
			}
			res.sent[e.Identifier] = v
		}
	}
	for k, vs := range keys {
		if len(vs) != 1 {
			t.Errorf("key %s carried %v", k, vs)
		}
	}
	for _, r := range recs {
		if r.State != StateDone {
			t.Errorf("record %d %s is %s: %s", r.ID, r.Key, r.State, r.LastError)
		}
		if r.Kind == KindMeterEvent && res.sent[r.Identifier] != r.ValueWh {
			t.Errorf("%s: Stripe got %d Wh, the outbox holds %d", r.Identifier, res.sent[r.Identifier], r.ValueWh)
		}
	}
	if n := countKind(recs, KindMeterEvent); n != len(res.sent) {
		t.Errorf("%d meter events queued, %d identifiers reached Stripe", n, len(res.sent))
	}
	return res
}

// hourly is the Wh that reached Stripe per customer and hour (offset from
// t10), first events and corrections added up.
func (r scenarioResult) hourly() map[string]map[time.Duration]int64 {
	out := map[string]map[time.Duration]int64{}
	for ident, v := range r.sent {
		// energy:RIG:2006-01-02T15:CUSTOMER[:cN]
		f := strings.Split(ident, ":")
		at, _ := time.Parse("2006-01-02T15", f[2])
		if out[f[3]] == nil {
			out[f[3]] = map[time.Duration]int64{}
		}
		out[f[3]][at.Sub(t10)] += v
	}
	return out
}

func (r scenarioResult) corrections() []string {
	var out []string
	for ident := range r.sent {
		if strings.Count(ident, ":") == 4 {
			out = append(out, ident)
		}
	}
	return out
}

// checkUsage compares each rig's metered energy per customer-hour, in mWh,
// with hand-computed figures.
func (r scenarioResult) checkUsage(t *testing.T, rig string, want map[time.Duration]int64) {
	t.Helper()
	for off, w := range want {
		got := hourMilliWh(t, r.s, rig, t10.Add(off))
		var sum int64
		for _, v := range got {
			sum += v
		}
		if sum != w {
			t.Errorf("%s hour +%v: %v mWh, want %d", rig, off, got, w)
		}
	}
}

func checkHourly(t *testing.T, got, want map[string]map[time.Duration]int64) {
	t.Helper()
	for c, hours := range want {
		for off, w := range hours {
			if got[c][off] != w {
				t.Errorf("%s hour +%v: %d Wh reached Stripe, want %d (all: %v)", c, off, got[c][off], w, got[c])
			}
		}
		if len(got[c]) != len(hours) {
			t.Errorf("%s billed hours %v, want %v", c, got[c], hours)
		}
	}
}

const (
	m20 = 20 * time.Minute
	h1  = time.Hour
)

// A 150 W rig silent for 25 minutes from 1h20m is billed for every minute
// it reported: its hour stays open while it is silent.
func TestLateRigSilentMidHourIsBilledForEveryMinuteItReported(t *testing.T) {
	alice := &simRig{id: "rigA", customer: "alice", watts: 150, silent: []span{{h1 + m20 + 10*time.Second, h1 + 45*time.Minute}}}
	bob := &simRig{id: "rigB", customer: "bob", watts: 200}
	res := scenario{rigs: []*simRig{alice, bob}, end: 2*h1 + 30*time.Minute}.run(t)
	// Alice: 11:00–11:20 at 150 W is 50 Wh and 11:45–12:00 is 37.5 Wh,
	// 87.5 Wh; the half Wh carries into 12:00–12:30 (75 Wh), of which the
	// last half Wh is below one Wh and stays unsent.
	res.checkUsage(t, "rigA", map[time.Duration]int64{0: 150_000, h1: 87_500, 2 * h1: 75_000})
	res.checkUsage(t, "rigB", map[time.Duration]int64{0: 200_000, h1: 200_000, 2 * h1: 100_000})
	checkHourly(t, res.hourly(), map[string]map[time.Duration]int64{
		"alice": {0: 150, h1: 87, 2 * h1: 75},
		"bob":   {0: 200, h1: 200, 2 * h1: 100},
	})
	if c := res.corrections(); len(c) != 0 {
		t.Errorf("corrections %v for a rig that was only silent", c)
	}
	u, err := res.s.Usage(UsageQuery{Rig: "rigA", From: t10, To: t10.Add(3 * h1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Gaps) != 1 || !u.Gaps[0].Start.Equal(t10.Add(h1+m20)) || !u.Gaps[0].End.Equal(t10.Add(h1+45*time.Minute)) {
		t.Errorf("gaps %+v, want 11:20–11:45 recorded (and not filled)", u.Gaps)
	}
}

// The controller restarts (from its bbolt file, meter and relay alike)
// while the rigs go on: alice's rig is silent 11:20–11:45 as above, bob's
// reports throughout, and the agents buffer what they measure while the
// controller is down. Restarted during the silence, nothing changes: the
// hour is still open. Down from 11:50 to 12:20, the restarted flusher
// closes hour 11 with what it has before the agents' buffers arrive, so
// the rest of hour 11 goes out as a correction. The totals are the same.
func TestLateControllerRestartBillsEveryInterval(t *testing.T) {
	tests := []struct {
		name string
		down span
		// events: Wh per identifier of hour 11.
		events      map[string]int64
		corrections int
	}{
		{"during the silence", span{h1 + 30*time.Minute, h1 + 40*time.Minute},
			map[string]int64{"energy:rigA:2026-11-29T11:alice": 87, "energy:rigB:2026-11-29T11:bob": 200}, 0},
		// Up to 11:49:50, the last sample before the controller went down,
		// first (alice 50 + 12.08 Wh, so 62; bob 166.11, so 166), then
		// 11:49:50–12:00 with the carried fraction (alice 25.42 + 0.08 =
		// 25.5, so 25; bob 33.89 + 0.11 = 34).
		{"across the end of the hour", span{h1 + 50*time.Minute, 2*h1 + m20},
			map[string]int64{"energy:rigA:2026-11-29T11:alice": 62, "energy:rigA:2026-11-29T11:alice:c1": 25,
				"energy:rigB:2026-11-29T11:bob": 166, "energy:rigB:2026-11-29T11:bob:c1": 34}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			alice := &simRig{id: "rigA", customer: "alice", watts: 150, silent: []span{{h1 + m20 + 10*time.Second, h1 + 45*time.Minute}}}
			bob := &simRig{id: "rigB", customer: "bob", watts: 200}
			res := scenario{rigs: []*simRig{alice, bob}, end: 2*h1 + 30*time.Minute, down: tc.down}.run(t)
			res.checkUsage(t, "rigA", map[time.Duration]int64{0: 150_000, h1: 87_500, 2 * h1: 75_000})
			res.checkUsage(t, "rigB", map[time.Duration]int64{0: 200_000, h1: 200_000, 2 * h1: 100_000})
			checkHourly(t, res.hourly(), map[string]map[time.Duration]int64{
				"alice": {0: 150, h1: 87, 2 * h1: 75},
				"bob":   {0: 200, h1: 200, 2 * h1: 100},
			})
			for ident, want := range tc.events {
				if got, ok := res.sent[ident]; !ok || got != want {
					t.Errorf("%s: %d Wh (sent %v), want %d", ident, got, ok, want)
				}
			}
			if len(res.corrections()) != tc.corrections {
				t.Errorf("corrections %v, want %d", res.corrections(), tc.corrections)
			}
			u, err := res.s.Usage(UsageQuery{Rig: "rigB", From: t10, To: t10.Add(3 * h1)})
			if err != nil {
				t.Fatal(err)
			}
			if len(u.Gaps) != 0 {
				t.Errorf("gaps %+v for a rig that reported throughout", u.Gaps)
			}
			u, err = res.s.Usage(UsageQuery{Rig: "rigA", From: t10, To: t10.Add(3 * h1)})
			if err != nil {
				t.Fatal(err)
			}
			if len(u.Gaps) != 1 {
				t.Errorf("gaps %+v, want alice's silence only", u.Gaps)
			}
		})
	}
}

// An agent cut off for an hour replays its buffer: the hour that was
// closed while it was away gets one correction, the next hour one event,
// and replayed duplicates nothing. The corrections go out exactly once
// through 500, 429, 409 and a response lost after Stripe acted.
func TestLateAgentReplayAfterAnHourOfflineIsBilledOnce(t *testing.T) {
	tests := []struct {
		name   string
		faults []faultproxy.Fault
	}{
		{"clean", nil},
		// Four failures: the fifth and last attempt gets through.
		{"faults", []faultproxy.Fault{faultproxy.Status500, faultproxy.DropAfter, faultproxy.Status429, faultproxy.Status409}},
		{"dropped", []faultproxy.Fault{faultproxy.Drop, faultproxy.DropAfter, faultproxy.Drop}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			alice := &simRig{id: "rigA", customer: "alice", watts: 150, offline: []span{{40 * time.Minute, h1 + 40*time.Minute}}}
			bob := &simRig{id: "rigB", customer: "bob", watts: 200}
			res := scenario{rigs: []*simRig{alice, bob}, end: 2*h1 + 30*time.Minute, faults: tc.faults}.run(t)
			res.checkUsage(t, "rigA", map[time.Duration]int64{0: 150_000, h1: 150_000, 2 * h1: 75_000})
			checkHourly(t, res.hourly(), map[string]map[time.Duration]int64{
				"alice": {0: 150, h1: 150, 2 * h1: 75},
				"bob":   {0: 200, h1: 200, 2 * h1: 100},
			})
			// Hour 10 closed at 11:03 with 10:00–10:39:50, the last sample
			// before the agent was cut off (99.58 Wh, so 99); the replay
			// adds 10:39:50–11:00 (50.42 Wh + 0.58 carried) as its first
			// correction.
			if res.sent["energy:rigA:2026-11-29T10:alice"] != 99 || res.sent["energy:rigA:2026-11-29T10:alice:c1"] != 51 {
				t.Errorf("hour 10 events %v", res.sent)
			}
			if c := res.corrections(); len(c) != 1 {
				t.Errorf("corrections %v, want one", c)
			}
			st := res.s.Meter().Stats()
			if st.Corrections != 1 || st.CorrectedMilliWh != 50_416 || st.LateMilliWh != 0 || st.Backwards != 3 {
				t.Errorf("meter stats %+v", st)
			}
			if tc.faults != nil {
				// Every fault hit the correction, which was retried under
				// its own key until Stripe answered.
				var tries []faultproxy.Fault
				for _, e := range res.proxy.Log() {
					if e.Identifier == "energy:rigA:2026-11-29T10:alice:c1" {
						tries = append(tries, e.Fault)
					}
				}
				if len(tries) != len(tc.faults)+1 {
					t.Errorf("correction tried %d times (%v), want %d", len(tries), tries, len(tc.faults)+1)
				}
			}
		})
	}
}

// Energy arriving past the lateness window is billed in the hour it
// arrives, flagged as late there and counted; energy of a later hour in
// the same replay that is still within the window goes to its own hour.
func TestLateEnergyPastTheWindowIsBilledWhenItArrives(t *testing.T) {
	alice := &simRig{id: "rigA", customer: "alice", watts: 150, offline: []span{{40 * time.Minute, 2*h1 + 30*time.Minute}}}
	res := scenario{rigs: []*simRig{alice}, end: 2*h1 + 40*time.Minute, window: time.Hour}.run(t)
	// Hour 10 closed at 11:03 with 10:00–10:39:50 (99.58 Wh, so 99).
	// 10:39:50–11:00 (50.42 Wh) arrives at 12:30, past 11:00 + 1 h: billed
	// at 12:00 as late, with 12:00–12:40 (100 Wh). 11:00–12:00 arrives
	// before 12:00 + 1 h: its own hour. The carried fractions make 151.
	res.checkUsage(t, "rigA", map[time.Duration]int64{0: 99_583, h1: 150_000, 2 * h1: 150_416})
	checkHourly(t, res.hourly(), map[string]map[time.Duration]int64{"alice": {0: 99, h1: 150, 2 * h1: 151}})
	u, err := res.s.Usage(UsageQuery{Customer: "alice", From: t10, To: t10.Add(3 * h1)})
	if err != nil {
		t.Fatal(err)
	}
	if u.TotalMilliWh != 400_000 || u.LateMilliWh != 50_416 {
		t.Errorf("total %d mWh, late %d, want 400000 and 50416", u.TotalMilliWh, u.LateMilliWh)
	}
	for _, h := range u.Hours {
		wantLate := int64(0)
		if h.Hour.Equal(t10.Add(2 * h1)) {
			wantLate = 50_416
		}
		if h.LateMilliWh != wantLate || !h.Closed || h.PendingMilliWh != 0 || h.Corrections != 0 {
			t.Errorf("hour %v: %+v, want late %d, closed, nothing pending, no correction", h.Hour, h, wantLate)
		}
	}
	if st := res.s.Meter().Stats(); st.LateMilliWh != 50_416 || st.Corrections != 0 {
		t.Errorf("meter stats %+v", st)
	}
	if len(res.corrections()) != 0 {
		t.Errorf("corrections %v", res.corrections())
	}
}

func TestLateWindowIsValidated(t *testing.T) {
	for _, w := range []time.Duration{-time.Second, MaxLateWindow + time.Hour} {
		_, err := New(Config{DB: openDB(t, filepath.Join(t.TempDir(), "b.db")), LateWindow: w, Logger: discardLogger()})
		if err == nil || !strings.Contains(err.Error(), "LateWindow") {
			t.Errorf("LateWindow %v: %v, want an error naming it", w, err)
		}
	}
}

// A database written before corrections existed: an hour sent under the
// base identifier gets its first correction as c1, never the base key
// again (which the outbox would take for the same fact and drop), and the
// old counters carry over.
func TestLateCorrectionOfAnHourSentByAnEarlierVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	clk := testsupport.NewClock(t10.Add(-time.Hour))
	db := openDB(t, path)
	s := newTestService(t, db, Config{Now: clk.Now})
	ctx := context.Background()
	mustCustomer(t, s, "alice")
	if err := s.AssignRigs(ctx, "alice", "rig1"); err != nil {
		t.Fatal(err)
	}
	base := "energy:rig1:2026-11-29T10:alice"
	err := db.Update(func(tx *store.Tx) error {
		if err := tx.Bucket(bucketEnergy).Put(energyKey("rig1", t10.UnixMilli(), "alice"),
			[]byte(`{"units":360000000000,"closed":true,"value_wh":50}`)); err != nil {
			return err
		}
		// rig2's hour 10 was open, with 30 Wh, when the old version stopped.
		if err := tx.Bucket(bucketEnergy).Put(energyKey("rig2", t10.UnixMilli(), "alice"),
			[]byte(`{"units":216000000000,"closed":false}`)); err != nil {
			return err
		}
		state := fmt.Sprintf(`{"has_last":true,"last_ms":%d,"last_mw":3600000,"owner":"alice","closed_before":%d,"open":[{"hour":%d,"customer":"alice","units":216000000000}]}`,
			t10.Add(30*time.Minute).UnixMilli(), t10.UnixMilli(), t10.UnixMilli())
		if err := tx.Bucket(bucketMeterState).Put([]byte("rig2"), []byte(state)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Put([]byte("meter_stats"), []byte(`{"backwards":3,"late_milli_wh":9000,"gaps":2}`)); err != nil {
			return err
		}
		_, err := enqueue(tx, Record{Kind: KindMeterEvent, Key: "quarry:" + base, Customer: "alice", Rig: "rig1",
			Identifier: base, ValueWh: 50, Timestamp: t10.Unix(), CreatedAt: t10})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	clk.Set(t10.Add(time.Hour + 10*time.Minute))
	s = newTestService(t, openDB(t, path), Config{Now: clk.Now})
	if st := s.Meter().Stats(); st.Backwards != 3 || st.Gaps != 2 || st.LateMilliWh != 0 {
		t.Errorf("counters after upgrade %+v", st)
	}
	m := s.Meter()
	for _, d := range []time.Duration{50 * time.Minute, 51 * time.Minute, 61 * time.Minute} {
		if err := m.Observe("rig1", t10.Add(d), 3600); err != nil {
			t.Fatal(err)
		}
	}
	// rig2 goes on for 10 s at 3.6 kW: 10 Wh more.
	if err := m.Observe("rig2", t10.Add(30*time.Minute+10*time.Second), 3600); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(ctx, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if h := hourMilliWh(t, s, "rig2", t10)["alice"]; h != 40_000 {
		t.Errorf("rig2 hour 10: %d mWh, want 40000", h)
	}
	recs, err := s.AllRecords()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, r := range recs {
		if r.Kind == KindMeterEvent {
			got[r.Identifier] = r.ValueWh
		}
	}
	// 10:50–10:51 at 3.6 kW is 60 Wh.
	if len(got) != 3 || got[base] != 50 || got[base+":c1"] != 60 || got["energy:rig2:2026-11-29T10:alice"] != 40 {
		t.Errorf("meter events %v, want the old one, %s:c1 with 60 Wh and rig2's hour with 40 Wh", got, base)
	}
	if h := hourMilliWh(t, s, "rig1", t10)["alice"]; h != 110_000 {
		t.Errorf("hour 10: %d mWh, want 110000", h)
	}
}
