package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/quarryfleet/quarry/pkg/store"
)

// Log entry kinds, the first byte of every command entry.
const (
	// entryOps carries one change set recorded by a replicated store
	// write (store.ApplyOps).
	entryOps byte = 1
	// entrySeed carries a whole database image: the state of a single
	// controller that became the first member of a new group. It is
	// applied once, as the group's first command.
	entrySeed byte = 2
)

// metaBucket is the group's own bookkeeping inside the replicated file.
// It is written only by the state machine, so every member has the same.
var (
	metaBucket = []byte("_cluster")
	keySeeded  = []byte("seeded")
)

// fsm is the replicated state machine: the controller's bbolt file. Every
// member applies the same entries in the same order to its own file, so
// the leader's controller reads what the group committed.
type fsm struct {
	db  *bolt.DB
	dir string // for restore's temporary files
	log *slog.Logger
}

var _ raft.BatchingFSM = (*fsm)(nil)

func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies the entries raft delivers together in one bbolt
// transaction, so one fsync covers them all. Should one fail (it cannot
// for entries a leader recorded against the same state, but a bug must
// not take the others with it) they are applied one by one.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	var cmds []int
	onlyOps := true
	for i, l := range logs {
		if l.Type != raft.LogCommand || len(l.Data) == 0 {
			continue
		}
		if l.Data[0] == entryOps {
			cmds = append(cmds, i)
		} else {
			onlyOps = false // a seed replaces the state: order matters
		}
	}
	together := len(cmds) > 1 && onlyOps && f.db.Update(func(tx *bolt.Tx) error {
		for _, i := range cmds {
			if err := store.ApplyOps(tx, logs[i].Data[1:]); err != nil {
				return err
			}
		}
		return nil
	}) == nil
	for i, l := range logs {
		if l.Type != raft.LogCommand || len(l.Data) == 0 {
			continue
		}
		switch l.Data[0] {
		case entryOps:
			if together {
				continue // applied above
			}
			out[i] = f.db.Update(func(tx *bolt.Tx) error { return store.ApplyOps(tx, l.Data[1:]) })
		case entrySeed:
			out[i] = f.seed(l.Data[1:], l.Index)
		default:
			out[i] = fmt.Errorf("log entry %d: unknown kind %d", l.Index, l.Data[0])
		}
		if err, ok := out[i].(error); ok && err != nil {
			f.log.Error("apply log entry", "index", l.Index, "err", err)
		}
	}
	return out
}

// seed replaces the state with a first member's database, once.
func (f *fsm) seed(image []byte, index uint64) error {
	seeded := false
	if err := f.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(metaBucket); b != nil && b.Get(keySeeded) != nil {
			seeded = true
		}
		return nil
	}); err != nil {
		return err
	}
	if seeded {
		return nil
	}
	if err := f.replace(bytes.NewReader(image)); err != nil {
		return err
	}
	return f.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		return b.Put(keySeeded, store.U64(index)) // the same on every member
	})
}

// Snapshot captures a read transaction now; Persist writes it while the
// state machine goes on applying.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &snapshot{tx: tx}, nil
}

// Restore replaces the whole state with a snapshot's. The file stays open
// (the controller holds it): the snapshot is copied into it in one write
// transaction.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.replace(rc)
}

func (f *fsm) replace(r io.Reader) error {
	tmp, err := os.CreateTemp(f.dir, "restore-*.db")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return fmt.Errorf("restore: write image: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	src, err := bolt.Open(tmp.Name(), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("restore: open image: %w", err)
	}
	defer src.Close()
	return src.View(func(stx *bolt.Tx) error {
		return f.db.Update(func(dtx *bolt.Tx) error {
			if err := clearTx(dtx); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			return stx.ForEach(func(name []byte, sb *bolt.Bucket) error {
				db, err := dtx.CreateBucket(name)
				if err != nil {
					return fmt.Errorf("restore: bucket %s: %w", name, err)
				}
				return copyBucket(db, sb)
			})
		})
	})
}

// copyBucket copies every key, nested bucket and sequence of src into dst.
func copyBucket(dst, src *bolt.Bucket) error {
	if err := dst.SetSequence(src.Sequence()); err != nil {
		return err
	}
	return src.ForEach(func(k, v []byte) error {
		if v != nil {
			return dst.Put(bytes.Clone(k), bytes.Clone(v))
		}
		sub := src.Bucket(k)
		nd, err := dst.CreateBucket(bytes.Clone(k))
		if err != nil {
			return err
		}
		return copyBucket(nd, sub)
	})
}

// clearAll deletes every bucket.
func clearAll(db *bolt.DB) error { return db.Update(clearTx) }

func clearTx(tx *bolt.Tx) error {
	var names [][]byte
	if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		names = append(names, bytes.Clone(name))
		return nil
	}); err != nil {
		return err
	}
	for _, n := range names {
		if err := tx.DeleteBucket(n); err != nil {
			return fmt.Errorf("clear %s: %w", n, err)
		}
	}
	return nil
}

// hasData reports whether the file holds any key outside empty buckets:
// a data dir that ran as a single controller.
func hasData(db *bolt.DB) (bool, error) {
	found := false
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if bytes.Equal(name, metaBucket) {
				return nil
			}
			if k, _ := b.Cursor().First(); k != nil {
				found = true
			}
			return nil
		})
	})
	return found, err
}

// image returns a consistent copy of the whole file.
func image(db *bolt.DB) ([]byte, error) {
	var buf bytes.Buffer
	err := db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(&buf)
		return err
	})
	return buf.Bytes(), err
}

type snapshot struct{ tx *bolt.Tx }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.tx.WriteTo(sink); err != nil {
		return errors.Join(fmt.Errorf("persist snapshot: %w", err), sink.Cancel())
	}
	return sink.Close()
}

func (s *snapshot) Release() { _ = s.tx.Rollback() }
