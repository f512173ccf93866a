package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/quarryfleet/quarry/pkg/store"
)

// IndexBucket holds one JSON record per job: its spec and its runs.
const IndexBucket = "job_index"

// Run statuses besides the selfheal outcomes.
const (
	StatusPending = "pending" // waiting for a slot or for the rig
	StatusRunning = "running"
)

// ErrNotFound is returned for an unknown job id.
var ErrNotFound = errors.New("job not found")

// record is a job as the index keeps it.
type record struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Where     string    `json:"where"`
	SpecYAML  string    `json:"spec_yaml"`
	CreatedBy string    `json:"created_by,omitempty"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished,omitzero"`
	Runs      []run     `json:"runs"`
}

// run is the job on one target. Attempts live in the selfheal recorder
// under RecordID.
type run struct {
	Target    string    `json:"target"`
	RigID     string    `json:"rig_id,omitempty"`
	CommandID string    `json:"command_id,omitempty"`
	RecordID  string    `json:"record_id"`
	Status    string    `json:"status"`
	Diagnosis string    `json:"diagnosis,omitempty"`
	Error     string    `json:"error,omitempty"`
	Started   time.Time `json:"started,omitzero"`
	Finished  time.Time `json:"finished,omitzero"`
}

func (r *run) done() bool { return r.Status != StatusPending && r.Status != StatusRunning }

// status folds the runs into one: unfinished while any run is, then the
// worst outcome (canceled, failed), then healed if any run was healed.
func (rec *record) status() string {
	if len(rec.Runs) == 0 {
		return StatusPending
	}
	rank := map[string]int{"succeeded": 1, "healed": 2, "failed": 3, "canceled": 4}
	worst, unfinished, running := "succeeded", false, false
	for _, r := range rec.Runs {
		switch r.Status {
		case StatusPending:
			unfinished = true
		case StatusRunning:
			unfinished, running = true, true
		default:
			if rank[r.Status] > rank[worst] {
				worst = r.Status
			}
		}
	}
	switch {
	case running:
		return StatusRunning
	case unfinished:
		return StatusPending
	}
	return worst
}

func (rec *record) diagnosis() string {
	if len(rec.Runs) == 1 {
		if rec.Runs[0].Error != "" {
			return rec.Runs[0].Error
		}
		return rec.Runs[0].Diagnosis
	}
	var n int
	for _, r := range rec.Runs {
		if r.Status == "failed" || r.Status == "canceled" {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d runs did not pass; see each run", n, len(rec.Runs))
}

type index struct{ db *store.DB }

func (ix index) put(rec *record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", rec.ID, err)
	}
	return ix.db.Update(func(tx *store.Tx) error {
		return tx.Bucket([]byte(IndexBucket)).Put([]byte(rec.ID), b)
	})
}

func (ix index) get(id string) (*record, error) {
	var rec *record
	err := ix.db.View(func(tx *store.Tx) error {
		v := tx.Bucket([]byte(IndexBucket)).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		rec = &record{}
		return json.Unmarshal(v, rec)
	})
	return rec, err
}

// update applies fn to a stored record in one transaction.
func (ix index) update(id string, fn func(*record)) (*record, error) {
	var rec *record
	err := ix.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(IndexBucket))
		v := b.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		rec = &record{}
		if err := json.Unmarshal(v, rec); err != nil {
			return fmt.Errorf("decode job %s: %w", id, err)
		}
		fn(rec)
		out, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), out)
	})
	return rec, err
}

// list returns up to limit records, newest first (ids sort by start time).
func (ix index) list(limit int) ([]*record, error) {
	var out []*record
	err := ix.db.View(func(tx *store.Tx) error {
		c := tx.Bucket([]byte(IndexBucket)).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			rec := &record{}
			if err := json.Unmarshal(v, rec); err != nil {
				return fmt.Errorf("decode job %s: %w", k, err)
			}
			out = append(out, rec)
		}
		return nil
	})
	return out, err
}
