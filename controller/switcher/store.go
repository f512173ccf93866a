package switcher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

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
	if err := store.EnsureBuckets(s.db, Buckets...); err != nil {
		return err
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(bucketMeasured)) == nil {
			return nil
		}
		return tx.DeleteBucket([]byte(bucketMeasured))
	}); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte(bucketState)).ForEach(func(k, v []byte) error {
			var st rigState
			if err := json.Unmarshal(v, &st); err != nil {
				return fmt.Errorf("profit state %q: %w", k, err)
			}
			s.state[string(k)] = st
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
	return s.db.Update(func(tx *bolt.Tx) error {
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

// persist writes, in one transaction, the rigs' state and each decision
// whose bytes differ from the stored one.
func (s *Switcher) persist(t *Tick) error {
	if s.db == nil {
		return nil
	}
	s.mu.Lock()
	state := make(map[string][]byte, len(s.state))
	for id, st := range s.state {
		v, _ := json.Marshal(st)
		state[id] = v
	}
	s.mu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		sb, db := tx.Bucket([]byte(bucketState)), tx.Bucket([]byte(bucketDecisions))
		for id, v := range state {
			if !bytes.Equal(sb.Get([]byte(id)), v) {
				if err := sb.Put([]byte(id), v); err != nil {
					return err
				}
			}
		}
		for i := range t.Decisions {
			v, err := json.Marshal(t.stored(i))
			if err != nil {
				return err
			}
			if !bytes.Equal(db.Get([]byte(t.Rigs[i].ID)), v) {
				if err := db.Put([]byte(t.Rigs[i].ID), v); err != nil {
					return err
				}
			}
		}
		return nil
	})
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
	_ = s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte(bucketDecisions)).Get([]byte(rigID)); v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	return out, out != nil
}

// saveSwitches appends records to the history, trimming the oldest past
// MaxSwitches.
func (s *Switcher) saveSwitches(recs []SwitchRecord) {
	if s.db == nil || len(recs) == 0 {
		return
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
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
		s.log.Warn("profit: could not record switches", "err", err)
	}
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
	err := s.db.View(func(tx *bolt.Tx) error {
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
