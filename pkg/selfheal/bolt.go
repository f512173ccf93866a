package selfheal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/quarryfleet/quarry/pkg/store"
)

// JobsBucket is the top-level bbolt bucket BoltRecorder writes.
const JobsBucket = "jobs"

// BoltRecorder stores jobs and attempts as JSON in bucket "jobs": one
// nested bucket per job id, holding key "job" and keys "attempt/NNNN".
type BoltRecorder struct {
	db *store.DB
}

var _ Recorder = (*BoltRecorder)(nil)

// NewBoltRecorder records into a plain bbolt file (the agent's own).
func NewBoltRecorder(db *bbolt.DB) (*BoltRecorder, error) {
	return NewRecorder(store.NewDB(db))
}

// NewRecorder records into db, whose writes may be replicated (the
// controller's); it creates the jobs bucket if needed.
func NewRecorder(db *store.DB) (*BoltRecorder, error) {
	if err := db.EnsureBuckets(JobsBucket); err != nil {
		return nil, fmt.Errorf("create %s bucket: %w", JobsBucket, err)
	}
	return &BoltRecorder{db: db}, nil
}

func (r *BoltRecorder) jobBucket(tx *store.Tx, id string) (*store.Bucket, error) {
	if id == "" {
		return nil, errors.New("empty job id")
	}
	return tx.Bucket([]byte(JobsBucket)).CreateBucketIfNotExists([]byte(id))
}

// RecordJob writes (or overwrites) the job record.
func (r *BoltRecorder) RecordJob(ctx context.Context, j Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	buf, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encode job: %w", err)
	}
	return r.db.Update(func(tx *store.Tx) error {
		b, err := r.jobBucket(tx, j.ID)
		if err != nil {
			return fmt.Errorf("job bucket: %w", err)
		}
		return b.Put([]byte("job"), buf)
	})
}

// RecordAttempt appends an attempt to the job.
func (r *BoltRecorder) RecordAttempt(ctx context.Context, jobID string, a Attempt) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	buf, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode attempt: %w", err)
	}
	return r.db.Update(func(tx *store.Tx) error {
		b, err := r.jobBucket(tx, jobID)
		if err != nil {
			return fmt.Errorf("job bucket: %w", err)
		}
		return b.Put(fmt.Appendf(nil, "attempt/%04d", a.Number), buf)
	})
}

// ErrJobNotFound is returned by Load for an unknown id.
var ErrJobNotFound = errors.New("job not found")

// Load returns a job and its attempts in order.
func (r *BoltRecorder) Load(ctx context.Context, id string) (Job, []Attempt, error) {
	if err := ctx.Err(); err != nil {
		return Job{}, nil, err
	}
	var j Job
	var as []Attempt
	err := r.db.View(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(JobsBucket)).Bucket([]byte(id))
		if b == nil {
			return fmt.Errorf("%w: %s", ErrJobNotFound, id)
		}
		if err := json.Unmarshal(b.Get([]byte("job")), &j); err != nil {
			return fmt.Errorf("decode job %s: %w", id, err)
		}
		c := b.Cursor()
		prefix := []byte("attempt/")
		for k, v := c.Seek(prefix); k != nil && len(k) > len(prefix) && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
			var a Attempt
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode %s of job %s: %w", k, id, err)
			}
			as = append(as, a)
		}
		return nil
	})
	return j, as, err
}

// List returns every job record, oldest id first (ids sort by start time).
func (r *BoltRecorder) List(ctx context.Context) ([]Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Job
	err := r.db.View(func(tx *store.Tx) error {
		return tx.Bucket([]byte(JobsBucket)).ForEachBucket(func(k []byte) error {
			var j Job
			if err := json.Unmarshal(tx.Bucket([]byte(JobsBucket)).Bucket(k).Get([]byte("job")), &j); err != nil {
				return fmt.Errorf("decode job %s: %w", k, err)
			}
			out = append(out, j)
			return nil
		})
	})
	return out, err
}
