package store

import (
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Batch runs fn like Update, but concurrent callers share one transaction
// and, replicated, one change set. As with bolt.DB.Batch, fn may run more
// than once and must be idempotent in its effects outside the database. A
// caller returns only once its change is applied (or has failed). Batch
// size and delay follow the underlying file's MaxBatchSize and
// MaxBatchDelay so both modes are tuned in one place.
func (d *DB) Batch(fn func(*Tx) error) error {
	r := d.replicator()
	if r == nil {
		return d.b.Batch(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
	}
	errCh := make(chan error, 1)
	d.batchMu.Lock()
	if d.batch == nil || len(d.batch.calls) >= d.b.MaxBatchSize {
		d.batch = &batch{d: d, r: r}
		d.batch.timer = time.AfterFunc(d.b.MaxBatchDelay, d.batch.trigger)
	}
	d.batch.calls = append(d.batch.calls, call{fn: fn, err: errCh})
	if len(d.batch.calls) >= d.b.MaxBatchSize {
		go d.batch.trigger()
	}
	d.batchMu.Unlock()

	err := <-errCh
	if errors.Is(err, errTrySolo) {
		err = d.Update(fn)
	}
	return err
}

type call struct {
	fn  func(*Tx) error
	err chan<- error
}

type batch struct {
	d     *DB
	r     Replicator
	timer *time.Timer
	start sync.Once
	calls []call
}

func (b *batch) trigger() { b.start.Do(b.run) }

// run commits the batch as one change set. A call that fails is taken out
// and told to run alone, so its error is its own and the others still
// commit together.
func (b *batch) run() {
	b.d.batchMu.Lock()
	b.timer.Stop()
	if b.d.batch == b {
		b.d.batch = nil
	}
	b.d.batchMu.Unlock()

	for len(b.calls) > 0 {
		failIdx := -1
		err := b.d.replicated(b.r, func(tx *Tx) error {
			for i, c := range b.calls {
				if err := safelyCall(c.fn, tx); err != nil {
					failIdx = i
					return err
				}
			}
			return nil
		})
		if failIdx >= 0 {
			c := b.calls[failIdx]
			b.calls[failIdx], b.calls = b.calls[len(b.calls)-1], b.calls[:len(b.calls)-1]
			c.err <- errTrySolo
			continue
		}
		for _, c := range b.calls {
			c.err <- err
		}
		return
	}
}

// errTrySolo tells a batched caller to run its function alone.
var errTrySolo = errors.New("batch function failed and is run alone")

// safelyCall turns a panic in fn into an error so one caller's panic does
// not take the whole batch down; the caller's solo run panics again in its
// own goroutine.
func safelyCall(fn func(*Tx) error, tx *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("batch function panicked: %v", p)
		}
	}()
	return fn(tx)
}
