package switcher

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// controllerOn is what a controller opens on the database file: the store
// and the fleet that holds the queued commands, with the rig connected.
type controllerOn struct {
	db    *store.DB
	fleet *fleet.Fleet
	stop  func()
}

func openController(t *testing.T, path, rig string, register bool) *controllerOn {
	t.Helper()
	db := testsupport.OpenStore(t, path, fleet.Buckets...)
	f, err := fleet.Open(db, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if register {
		if err := f.RegisterRig(rig, rig, "host"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := f.Attach(ctx, rig); err != nil {
		t.Fatal(err)
	}
	c := &controllerOn{db: db, fleet: f}
	var done bool
	c.stop = func() {
		if done {
			return
		}
		done = true
		cancel()
		f.Close()
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(c.stop)
	return c
}

// reportMining makes the rig report that its miner runs coin, as it does
// once it has (or has not yet) applied a flight sheet.
func reportMining(t *testing.T, f *fleet.Fleet, rig, coin, algo string) {
	t.Helper()
	if err := f.UpdateRig(rig, func(r *quarryv1.Rig) {
		r.Miners = []*quarryv1.MinerStats{{Coin: coin, Algorithm: algo, State: quarryv1.MinerRunning}}
	}); err != nil {
		t.Fatal(err)
	}
}

// switchCommands returns the coin of every flight sheet waiting for the
// rig, oldest first.
func switchCommands(t *testing.T, f *fleet.Fleet, rig string) []string {
	t.Helper()
	cs, err := f.PendingCommands(rig)
	if err != nil {
		t.Fatal(err)
	}
	var coins []string
	for _, c := range cs {
		if c.Kind != quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET {
			t.Fatalf("pending command %s of kind %s, want only flight sheets", c.Id, c.Kind)
		}
		fs, err := flightsheet.Parse(c.Payload)
		if err != nil {
			t.Fatal(err)
		}
		coins = append(coins, fs.Coin)
	}
	return coins
}

// A switcher opened afresh on the database a switcher just switched a rig
// from, as a new leader or a restarted controller does, neither moves the
// rig again before min_dwell nor sends the switch the first one sent; once
// the dwell has passed it makes the next switch, once.
func TestTakeoverKeepsDwellAndSendsNoSecondSwitch(t *testing.T) {
	const (
		rig     = "rig-00"
		dwell   = 30 * time.Minute
		inDwell = 10 * time.Minute
		etc     = "etc@pool/lolminer"
		rvn     = "rvn@pool/lolminer"
		// etc at $300 and rvn at $0.53: etc makes $4.62/day, rvn $5.01;
		// a gain of 8.4 % and $0.39/day clears both thresholds.
		etcUSD, rvnLow, rvnEdge = 300, 0.02, 0.53
	)
	tests := []struct {
		name string
		// reopen closes the first controller's store and fleet and opens
		// them again from the file; otherwise the second switcher shares
		// the first one's handles.
		reopen bool
		// applied: the rig reports mining etc by the takeover; otherwise
		// it still reports rvn, the command not yet carried out.
		applied bool
		// rvnUSD is the price the second switcher first sees.
		rvnUSD     float64
		wantReason string
	}{
		{"new leader, rvn now ahead, rig on etc", true, true, rvnEdge,
			"stay: etc→rvn gain 8.4% ($0.39/day) after switch cost $0.01, but dwell 10m < 30m"},
		{"new leader, rvn now ahead, command not yet applied", true, false, rvnEdge,
			"stay: etc→rvn gain 8.4% ($0.39/day) after switch cost $0.01, but dwell 10m < 30m"},
		{"new leader, market unchanged, command not yet applied", true, false, rvnLow,
			"stay: etc@pool/lolminer is the best option at $4.62/day"},
		{"same store, rvn now ahead, rig on etc", false, true, rvnEdge,
			"stay: etc→rvn gain 8.4% ($0.39/day) after switch cost $0.01, but dwell 10m < 30m"},
		{"same store, market unchanged, command not yet applied", false, false, rvnLow,
			"stay: etc@pool/lolminer is the best option at $4.62/day"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			path, mkt := filepath.Join(dir, "quarry.db"), filepath.Join(dir, "market.json")
			clock := testsupport.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
			cfg := testConfig(mkt)
			cfg.Policy.MinDwell = dwell
			open := func(c *controllerOn) *Switcher {
				t.Helper()
				s, err := New(cfg, Options{Fleet: c.fleet, DB: c.db, Now: clock.Now})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			tick := func(s *Switcher, rvnUSD float64) Decided {
				t.Helper()
				writeMarketAt(t, mkt, etcUSD, rvnUSD, clock.Now())
				if _, err := s.Market().Refresh(ctx); err != nil {
					t.Fatal(err)
				}
				tk, err := s.Tick(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if tk.Paused {
					t.Fatalf("paused: %s", tk.PauseReason)
				}
				if len(tk.Decisions) != 1 {
					t.Fatalf("%d decisions, want one", len(tk.Decisions))
				}
				return tk.Decisions[0]
			}

			// (1) The rig mines rvn, which the first switcher never chose,
			// so the dwell does not hold it there: etc pays and it moves.
			ca := openController(t, path, rig, true)
			reportMining(t, ca.fleet, rig, "rvn", "kawpow")
			a := open(ca)
			profiles(&env{t: t, rigs: []string{rig}}, a)
			d := tick(a, rvnLow)
			if d.Action != "switch" || d.Input.Current.Name != rvn || d.Target.Name != etc || d.CommandID == "" {
				t.Fatalf("first switcher: %s %s→%s command %q (%s), want a queued switch rvn→etc",
					d.Action, d.Input.Current.Name, d.Target.Name, d.CommandID, d.Reason)
			}
			sentByA := d.CommandID

			// (2) The first switcher is gone; (3) another opens on the
			// same file inside the dwell.
			cb := ca
			if tt.reopen {
				ca.stop()
				cb = openController(t, path, rig, false)
			}
			if tt.applied {
				reportMining(t, cb.fleet, rig, "etc", "etchash")
			}
			clock.Advance(inDwell)
			b := open(cb)
			d = tick(b, tt.rvnUSD)
			if d.Action != "stay" || d.Reason != tt.wantReason {
				t.Fatalf("takeover inside the dwell: %s → %s (%s), want to stay with %q", d.Action, d.Target.Name, d.Reason, tt.wantReason)
			}
			if d.Input.Current.Name != etc || !d.Input.LastSwitch.Equal(clock.Now().Add(-inDwell)) || d.CommandID != "" {
				t.Fatalf("takeover: current %s last switch %s command %q; want etc since the first switch, no command",
					d.Input.Current.Name, d.Input.LastSwitch, d.CommandID)
			}
			ex, err := (&ProfitServer{S: b}).ExplainProfit(ctx, &quarryv1.ExplainProfitRequest{Rig: rig})
			if err != nil {
				t.Fatal(err)
			}
			if ex.Row.Action != "stay" || ex.Row.Reason != tt.wantReason || ex.Row.Current != etc || ex.Row.CommandId != "" ||
				ex.DwellSeconds != int64(inDwell.Seconds()) || ex.Policy.MinDwellSeconds != int64(dwell.Seconds()) {
				t.Fatalf("explain after takeover: row %+v dwell %ds of %ds", ex.Row, ex.DwellSeconds, ex.Policy.MinDwellSeconds)
			}
			if got := switchCommands(t, cb.fleet, rig); len(got) != 1 || got[0] != "etc" {
				t.Fatalf("pending flight sheets %v, want only the first switcher's etc", got)
			}
			if cs, err := cb.fleet.PendingCommands(rig); err != nil || cs[0].Id != sentByA {
				t.Fatalf("pending %v (%v), want the first switcher's command %s", cs, err, sentByA)
			}
			recs, err := b.Switches(rig, 0)
			if err != nil || len(recs) != 1 || recs[0].CommandID != sentByA {
				t.Fatalf("switch history %+v (%v), want the first switcher's one switch", recs, err)
			}

			// (4) Past the dwell, rvn ahead moves the rig, once.
			reportMining(t, cb.fleet, rig, "etc", "etchash")
			clock.Advance(dwell - inDwell)
			d = tick(b, rvnEdge)
			if d.Action != "switch" || d.Target.Name != rvn || d.CommandID == "" {
				t.Fatalf("after the dwell: %s → %s (%s), want a switch to rvn", d.Action, d.Target.Name, d.Reason)
			}
			clock.Advance(time.Minute)
			if d = tick(b, rvnEdge); d.Action != "stay" || d.CommandID != "" {
				t.Fatalf("the tick after the switch: %s → %s (%s), want to stay", d.Action, d.Target.Name, d.Reason)
			}
			if got := switchCommands(t, cb.fleet, rig); len(got) != 2 || got[0] != "etc" || got[1] != "rvn" {
				t.Fatalf("pending flight sheets %v, want etc then rvn", got)
			}
			if recs, err := b.Switches(rig, 0); err != nil || len(recs) != 2 || recs[1].To != rvn {
				t.Fatalf("switch history %+v (%v), want etc then rvn", recs, err)
			}
		})
	}
}

// leadership replicates a change set to the file it was recorded from
// while the node leads, and refuses once it has lost the lead, as the
// group does: nothing the old leader writes afterwards reaches the file
// the next leader opens.
type leadership struct {
	file    *bolt.DB
	deposed atomic.Bool
}

func (l *leadership) Replicate(ops []byte) error {
	if l.deposed.Load() {
		return errors.New("not the leader")
	}
	return l.file.Update(func(tx *bolt.Tx) error { return store.ApplyOps(tx, ops) })
}

// lostBetweenBatches is the fleet of a leader that loses the lead while
// it waits out the spacing after its first batch of commands.
type lostBetweenBatches struct {
	*fleet.Fleet
	lead    *leadership
	batches *int
}

func (f lostBetweenBatches) QueueCommands(reqs []fleet.CommandRequest) ([]*quarryv1.CommandRecord, []error) {
	if *f.batches++; *f.batches > 1 {
		f.lead.deposed.Store(true)
	}
	return f.Fleet.QueueCommands(reqs)
}

// A leader that loses the lead in the middle of a batched send, which
// takes minutes for a fleet-wide switch, leaves the batches it committed
// queued; the next leader must take those rigs as moved, and send only
// what never committed.
func TestTakeoverMidSendSendsNoSecondSwitch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path, mkt := filepath.Join(dir, "quarry.db"), filepath.Join(dir, "market.json")
	clock := testsupport.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	rigs := []string{"rig-00", "rig-01"}
	cfg := testConfig(mkt)
	cfg.Policy.MinDwell = 30 * time.Minute
	cfg.BatchSize, cfg.BatchSpacing = 1, time.Millisecond
	tick := func(s *Switcher) *Tick {
		t.Helper()
		writeMarketAt(t, mkt, 300, 0.02, clock.Now())
		if _, err := s.Market().Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		tk, err := s.Tick(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}

	ca := openController(t, path, rigs[0], true)
	lead := &leadership{file: ca.db.Bolt()}
	ca.db.SetReplicator(lead)
	if err := ca.fleet.RegisterRig(rigs[1], rigs[1], "host"); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.fleet.Attach(ctx, rigs[1]); err != nil {
		t.Fatal(err)
	}
	var batches int
	a, err := New(cfg, Options{Fleet: lostBetweenBatches{ca.fleet, lead, &batches}, DB: ca.db, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	profiles(&env{t: t, rigs: rigs}, a)
	tk := tick(a)
	if d := tk.Decisions[0]; d.Action != "resume" || d.CommandID == "" {
		t.Fatalf("%s before losing the lead: %s command %q (%s), want a queued resume", rigs[0], d.Action, d.CommandID, d.Reason)
	}
	if d := tk.Decisions[1]; d.CommandID != "" || d.Error == "" {
		t.Fatalf("%s after losing the lead: command %q error %q, want the commit refused", rigs[1], d.CommandID, d.Error)
	}
	ca.stop()

	cb := openController(t, path, rigs[0], false)
	if _, err := cb.fleet.Attach(ctx, rigs[1]); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	b, err := New(cfg, Options{Fleet: cb.fleet, DB: cb.db, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tk = tick(b)
	if d := tk.Decisions[0]; d.Action != "stay" || d.CommandID != "" || !d.Input.LastSwitch.Equal(clock.Now().Add(-time.Minute)) {
		t.Fatalf("%s, moved by the old leader: %s command %q since %s (%s), want to stay", rigs[0], d.Action, d.CommandID, d.Input.LastSwitch, d.Reason)
	}
	if d := tk.Decisions[1]; d.Action != "resume" || d.CommandID == "" {
		t.Fatalf("%s, never sent: %s command %q (%s), want a resume", rigs[1], d.Action, d.CommandID, d.Reason)
	}
	for _, rig := range rigs {
		if got := switchCommands(t, cb.fleet, rig); len(got) != 1 || got[0] != "etc" {
			t.Fatalf("%s: pending flight sheets %v, want one etc", rig, got)
		}
	}
}
