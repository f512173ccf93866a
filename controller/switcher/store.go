package switcher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/quarryfleet/quarry/pkg/store"
)

// Buckets the switcher keeps in the controller's database.
const (
	bucketMarket    = "market"
	bucketState     = "profit_state"
	bucketProfiles  = "profit_profiles"
	bucketDecisions = "profit_decisions"
	bucketSwitches  = "profit_switches"
)

// bucketMeasured held the switcher's own smoothing of reports, before
// controller/figures learned them for everyone; load drops it.
const bucketMeasured = "profit_measured"

// Buckets lists every bucket the switcher owns.
var Buckets = []string{bucketMarket, bucketState, bucketProfiles, bucketDecisions, bucketSwitches, bucketSettings}

// MaxSwitches bounds the stored switch history; the oldest go first.
const MaxSwitches = 10000

// SwitchRecord is one action the switcher took or, in dry-run, would have.
type SwitchRecord struct {
	Time      time.Time `json:"time"`
	Rig       string    `json:"rig"`
	Action    string    `json:"action"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	FromUSD   float64   `json:"from_usd_day"`
	ToUSD     float64   `json:"to_usd_day"`
	Reason    string    `json:"reason"`
	CommandID string    `json:"command_id,omitempty"`
	DryRun    bool      `json:"dry_run,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// storedDecision is a rig's latest decision with its inputs.
type storedDecision struct {
	Decided
	Perf        []storedPerf `json:"perf"`
	Site        string       `json:"site"`
	Fingerprint string       `json:"fingerprint,omitempty"`
	Paused      string       `json:"paused,omitempty"`
	DryRun      bool         `json:"dry_run,omitempty"`
	Market      time.Time    `json:"market_fetched"`
}

type storedPerf struct {
	Algorithm string  `json:"algorithm"`
	Hashrate  float64 `json:"hashrate"`
	Power     float64 `json:"power"`
	PerfSource
}

func (s *Switcher) load() error {
	if err := s.db.EnsureBuckets(Buckets...); err != nil {
		return err
	}
	if err := s.db.Update(func(tx *store.Tx) error {
		if tx.Bucket([]byte(bucketMeasured)) == nil {
			return nil
		}
		return tx.DeleteBucket([]byte(bucketMeasured))
	}); err != nil {
		return err
	}
	return s.db.View(func(tx *store.Tx) error {
		if err := tx.Bucket([]byte(bucketState)).ForEach(func(k, v []byte) error {
			var st rigState
			if err := json.Unmarshal(v, &st); err != nil {
				return fmt.Errorf("profit state %q: %w", k, err)
			}
			s.state[string(k)] = st
			s.saved[string(k)] = savedRig{state: st, hasState: true}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketProfiles)).ForEach(func(k, v []byte) error {
			var p AlgoProfiles
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("profile %q: %w", k, err)
			}
			s.profiles[string(k)] = p
			return nil
		})
	})
}

func (s *Switcher) saveProfile(rigID string, p AlgoProfiles) error {
	return s.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(bucketProfiles))
		if len(p) == 0 {
			return b.Delete([]byte(rigID))
		}
		v, err := json.Marshal(p)
		if err != nil {
			return err
		}
		return b.Put([]byte(rigID), v)
	})
}

// decisionRefresh bounds how old a stored decision may be when only its
// figures moved. Every tick decides for every rig, and a decision's inputs
// carry the tick's time, so writing each one whenever its bytes differ
// wrote the whole fleet every tick: 100,000 JSON documents a minute, and a
// commit that held up the switch it was recording. The record is read only
// to explain a rig after a restart, so it is rewritten at once when what
// was decided changes and otherwise at most this often.
const decisionRefresh = 10 * time.Minute

// savedRig is what the database holds of one rig.
type savedRig struct {
	state    rigState
	hasState bool
	decision decisionGist
	decided  time.Time // tick that wrote the decision; zero when none
}

// decisionGist is what makes a stored decision stale at once when it
// changes: the outcome, what the rig mines and would mine, and why not.
type decisionGist struct {
	outcome, target, current, best, site, paused, err, command string
	borrowed, dryRun                                           bool
}

func (t *Tick) gist(i int) decisionGist {
	d, r := t.Decisions[i], t.Rigs[i]
	g := decisionGist{outcome: d.Action, target: d.Target.Name, current: d.Input.Current.Name, best: d.Input.Best.Name,
		site: r.Site, err: d.Error, command: d.CommandID, borrowed: d.Borrowed, dryRun: t.DryRun}
	if t.Paused {
		g.paused = t.PauseReason
	}
	return g
}

// persist writes, in one transaction, the rigs' state where it changed and
// each decision that changed in substance or is older than
// decisionRefresh.
func (s *Switcher) persist(t *Tick) error {
	if s.db == nil {
		return nil
	}
	type put struct {
		id       string
		state    []byte // nil: unchanged
		st       rigState
		decision []byte // nil: unchanged
		gist     decisionGist
	}
	var puts []put
	s.mu.Lock()
	for id, st := range s.state {
		if sv := s.saved[id]; sv.hasState && sv.state.Option == st.Option && sv.state.Since.Equal(st.Since) {
			continue
		}
		v, err := json.Marshal(st)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		puts = append(puts, put{id: id, state: v, st: st})
	}
	saved := make(map[string]int, len(puts)) // rig → index in puts
	for i, p := range puts {
		saved[p.id] = i
	}
	for i := range t.Decisions {
		id, g := t.Rigs[i].ID, t.gist(i)
		if sv := s.saved[id]; !sv.decided.IsZero() && sv.decision == g && t.Time.Sub(sv.decided) < decisionRefresh {
			continue
		}
		v, err := json.Marshal(t.stored(i))
		if err != nil {
			s.mu.Unlock()
			return err
		}
		j, ok := saved[id]
		if !ok {
			j = len(puts)
			saved[id] = j
			puts = append(puts, put{id: id})
		}
		puts[j].decision, puts[j].gist = v, g
	}
	s.mu.Unlock()
	if len(puts) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *store.Tx) error {
		sb, db := tx.Bucket([]byte(bucketState)), tx.Bucket([]byte(bucketDecisions))
		for _, p := range puts {
			if p.state != nil {
				if err := sb.Put([]byte(p.id), p.state); err != nil {
					return err
				}
			}
			if p.decision != nil {
				if err := db.Put([]byte(p.id), p.decision); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	for _, p := range puts {
		sv := s.saved[p.id]
		if p.state != nil {
			sv.state, sv.hasState = p.st, true
		}
		if p.decision != nil {
			sv.decision, sv.decided = p.gist, t.Time
		}
		s.saved[p.id] = sv
	}
	s.mu.Unlock()
	return nil
}

func (t *Tick) stored(i int) storedDecision {
	r := t.Rigs[i]
	sd := storedDecision{Decided: t.Decisions[i], Site: r.Site, Fingerprint: r.Fingerprint, DryRun: t.DryRun, Market: t.Snapshot.Fetched}
	sd.Decided.Input.Current.Profit = finite(sd.Decided.Input.Current.Profit)
	sd.Decided.Input.Best.Profit = finite(sd.Decided.Input.Best.Profit)
	sd.Decided.Target.Profit = finite(sd.Decided.Target.Profit)
	sd.Decided.Gain = finite(sd.Decided.Gain)
	sd.Decided.GainPct = finite(sd.Decided.GainPct)
	if t.Paused {
		sd.Paused = t.PauseReason
	}
	for _, p := range r.Perf {
		sd.Perf = append(sd.Perf, storedPerf{Algorithm: p.Algorithm, Hashrate: p.Hashrate, Power: p.Power, PerfSource: r.Sources[p.Algorithm]})
	}
	return sd
}

// StoredDecision returns a rig's latest persisted decision as JSON, for
// inspection after a restart.
func (s *Switcher) StoredDecision(rigID string) ([]byte, bool) {
	if s.db == nil {
		return nil, false
	}
	var out []byte
	_ = s.db.View(func(tx *store.Tx) error {
		if v := tx.Bucket([]byte(bucketDecisions)).Get([]byte(rigID)); v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	return out, out != nil
}

// saveSwitches appends records to the history, trimming the oldest past
// MaxSwitches, and stores the state of the rigs the records moved.
func (s *Switcher) saveSwitches(recs []SwitchRecord, moved map[string]rigState) {
	if s.db == nil || len(recs) == 0 {
		return
	}
	states := make(map[string][]byte, len(moved))
	for id, st := range moved {
		v, err := json.Marshal(st)
		if err != nil {
			s.log.Warn("profit: could not record switches", "err", err)
			return
		}
		states[id] = v
	}
	err := s.db.Update(func(tx *store.Tx) error {
		sb := tx.Bucket([]byte(bucketState))
		for id, v := range states {
			if err := sb.Put([]byte(id), v); err != nil {
				return err
			}
		}
		b := tx.Bucket([]byte(bucketSwitches))
		for _, r := range recs {
			seq, _ := b.NextSequence()
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := b.Put(store.U64(seq), v); err != nil {
				return err
			}
		}
		last := b.Sequence()
		if last <= MaxSwitches {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil && store.ParseU64(k) <= last-MaxSwitches; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// persist writes the states again at the end of the tick.
		s.log.Warn("profit: could not record switches", "err", err)
		return
	}
	s.mu.Lock()
	for id, st := range moved {
		sv := s.saved[id]
		sv.state, sv.hasState = st, true
		s.saved[id] = sv
	}
	s.mu.Unlock()
}

// Switches returns the history, oldest first, for one rig or all (rig
// empty), at most limit of the newest.
func (s *Switcher) Switches(rig string, limit int) ([]SwitchRecord, error) {
	if s.db == nil {
		return nil, nil
	}
	if limit <= 0 {
		limit = 100
	}
	var out []SwitchRecord
	err := s.db.View(func(tx *store.Tx) error {
		c := tx.Bucket([]byte(bucketSwitches)).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var r SwitchRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("switch record %d: %w", store.ParseU64(k), err)
			}
			if rig == "" || r.Rig == rig {
				out = append(out, r)
			}
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}
