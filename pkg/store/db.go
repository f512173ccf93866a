package store

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// Replicator commits an encoded change set through the group and returns
// once it has been applied to this node's file by ApplyOps, or with an
// error (for example when this node is not the leader).
type Replicator interface {
	Replicate(ops []byte) error
}

// DB is the controller's bbolt database; writes can be replicated.
//
// Without a replicator every call goes straight to bbolt. With one, a
// write transaction is run against the file, recorded and rolled back, and
// the recorded change set reaches the file only through the replicator, so
// every node applies the same changes in the same order.
type DB struct {
	b   *bolt.DB
	rep atomic.Pointer[replicatorRef]

	// mu serialises replicated writes: a change set is recorded against the
	// file as it stands, so no other replicated write may land between the
	// recording and the apply, or a read-modify-write would act on stale
	// state.
	mu sync.Mutex

	batchMu sync.Mutex
	batch   *batch
}

// replicatorRef boxes the interface so it can sit behind an atomic pointer:
// the replicator may be installed while services already hold the DB.
type replicatorRef struct{ r Replicator }

// NewDB wraps an open bbolt file; with no replicator set it behaves exactly
// like the file itself.
func NewDB(b *bolt.DB) *DB { return &DB{b: b} }

// Bolt is the underlying file, for read-only uses (Stats, WriteTo, Path)
// and for the replicator's apply. A write through it bypasses replication.
func (d *DB) Bolt() *bolt.DB { return d.b }

// Close closes the underlying file.
func (d *DB) Close() error { return d.b.Close() }

// Path is the underlying file's path.
func (d *DB) Path() string { return d.b.Path() }

// SetReplicator installs r; nil returns the DB to local mode. It is meant
// to be called before the DB is written to.
func (d *DB) SetReplicator(r Replicator) {
	if r == nil {
		d.rep.Store(nil)
		return
	}
	d.rep.Store(&replicatorRef{r: r})
}

func (d *DB) replicator() Replicator {
	if ref := d.rep.Load(); ref != nil {
		return ref.r
	}
	return nil
}

// View runs fn in a read-only transaction.
func (d *DB) View(fn func(*Tx) error) error {
	return d.b.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Update runs fn in a read-write transaction. Replicated, it returns only
// after the change set has been applied to this node's file; fn's own
// error comes back unchanged and nothing is replicated.
func (d *DB) Update(fn func(*Tx) error) error {
	r := d.replicator()
	if r == nil {
		return d.b.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
	}
	return d.replicated(r, fn)
}

// replicated records fn's changes, rolls them back and hands them to r,
// all under d.mu.
func (d *DB) replicated(r Replicator, fn func(*Tx) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	ops, err := d.record(fn)
	if err != nil || ops == nil {
		return err
	}
	if err := r.Replicate(ops); err != nil {
		return fmt.Errorf("replicate change set: %w", err)
	}
	return nil
}

// record runs fn in a write transaction that is always rolled back, and
// returns the change set fn made, nil when it made none. The rollback must
// happen before the replicator runs: its apply needs the file's single
// write transaction.
func (d *DB) record(fn func(*Tx) error) ([]byte, error) {
	tx, err := d.b.Begin(true)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	rec := &recorder{}
	if err := fn(&Tx{tx: tx, rec: rec}); err != nil {
		return nil, err
	}
	return rec.encoded(), nil
}

// Tx mirrors bolt.Tx. In a replicated write it records every change it
// makes so the change can be replayed by ApplyOps.
type Tx struct {
	tx  *bolt.Tx
	rec *recorder // nil unless recording
}

// Bolt is the underlying transaction, for read-only needs such as Check.
// A change made through it is not replicated.
func (t *Tx) Bolt() *bolt.Tx { return t.tx }

// ID mirrors bolt.Tx.ID.
func (t *Tx) ID() int { return t.tx.ID() }

// Size mirrors bolt.Tx.Size.
func (t *Tx) Size() int64 { return t.tx.Size() }

// Writable mirrors bolt.Tx.Writable.
func (t *Tx) Writable() bool { return t.tx.Writable() }

// WriteTo mirrors bolt.Tx.WriteTo: a consistent copy of the whole file.
func (t *Tx) WriteTo(w io.Writer) (int64, error) { return t.tx.WriteTo(w) }

// Check mirrors bolt.Tx.Check.
func (t *Tx) Check(options ...bolt.CheckOption) <-chan error { return t.tx.Check(options...) }

// Cursor mirrors bolt.Tx.Cursor: it walks the top-level bucket names.
func (t *Tx) Cursor() *Cursor {
	c := t.tx.Cursor()
	return &Cursor{c: c, b: &Bucket{b: c.Bucket(), tx: t}}
}

// Bucket mirrors bolt.Tx.Bucket; a missing bucket is nil.
func (t *Tx) Bucket(name []byte) *Bucket {
	return t.wrap(t.tx.Bucket(name), nil, name)
}

// CreateBucket mirrors bolt.Tx.CreateBucket.
func (t *Tx) CreateBucket(name []byte) (*Bucket, error) {
	b, err := t.tx.CreateBucket(name)
	if err != nil {
		return nil, err
	}
	bk := t.wrap(b, nil, name)
	t.rec.createBucket(bk)
	return bk, nil
}

// CreateBucketIfNotExists mirrors bolt.Tx.CreateBucketIfNotExists.
func (t *Tx) CreateBucketIfNotExists(name []byte) (*Bucket, error) {
	existed := t.rec != nil && t.tx.Bucket(name) != nil
	b, err := t.tx.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, err
	}
	bk := t.wrap(b, nil, name)
	if !existed {
		t.rec.createBucket(bk)
	}
	return bk, nil
}

// DeleteBucket mirrors bolt.Tx.DeleteBucket.
func (t *Tx) DeleteBucket(name []byte) error {
	if err := t.tx.DeleteBucket(name); err != nil {
		return err
	}
	t.rec.deleteBucket(nil, name)
	return nil
}

// ForEach mirrors bolt.Tx.ForEach.
func (t *Tx) ForEach(fn func(name []byte, b *Bucket) error) error {
	return t.tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		return fn(name, t.wrap(b, nil, name))
	})
}

// wrap gives b a wrapper; a nil b stays nil so callers' nil checks hold.
// The bucket's path from the top is kept only while recording.
func (t *Tx) wrap(b *bolt.Bucket, parent *Bucket, name []byte) *Bucket {
	if b == nil {
		return nil
	}
	bk := &Bucket{b: b, tx: t}
	if t.rec != nil {
		var base [][]byte
		if parent != nil {
			base = parent.path
		}
		bk.path = append(base[:len(base):len(base)], clone(name))
	}
	return bk
}

// Bucket mirrors bolt.Bucket.
type Bucket struct {
	b    *bolt.Bucket
	tx   *Tx
	path [][]byte // names from the top; only while recording
}

// Tx is the transaction the bucket belongs to.
func (b *Bucket) Tx() *Tx { return b.tx }

// Writable mirrors bolt.Bucket.Writable.
func (b *Bucket) Writable() bool { return b.b.Writable() }

// Get mirrors bolt.Bucket.Get.
func (b *Bucket) Get(key []byte) []byte { return b.b.Get(key) }

// Put mirrors bolt.Bucket.Put.
func (b *Bucket) Put(key, value []byte) error {
	if err := b.b.Put(key, value); err != nil {
		return err
	}
	b.tx.rec.put(b.path, key, value)
	return nil
}

// Delete mirrors bolt.Bucket.Delete.
func (b *Bucket) Delete(key []byte) error {
	if err := b.b.Delete(key); err != nil {
		return err
	}
	b.tx.rec.delete(b.path, key)
	return nil
}

// Cursor mirrors bolt.Bucket.Cursor.
func (b *Bucket) Cursor() *Cursor { return &Cursor{c: b.b.Cursor(), b: b} }

// ForEach mirrors bolt.Bucket.ForEach.
func (b *Bucket) ForEach(fn func(k, v []byte) error) error { return b.b.ForEach(fn) }

// ForEachBucket mirrors bolt.Bucket.ForEachBucket.
func (b *Bucket) ForEachBucket(fn func(k []byte) error) error { return b.b.ForEachBucket(fn) }

// Bucket mirrors bolt.Bucket.Bucket; a missing bucket is nil.
func (b *Bucket) Bucket(name []byte) *Bucket { return b.tx.wrap(b.b.Bucket(name), b, name) }

// CreateBucket mirrors bolt.Bucket.CreateBucket.
func (b *Bucket) CreateBucket(name []byte) (*Bucket, error) {
	c, err := b.b.CreateBucket(name)
	if err != nil {
		return nil, err
	}
	bk := b.tx.wrap(c, b, name)
	b.tx.rec.createBucket(bk)
	return bk, nil
}

// CreateBucketIfNotExists mirrors bolt.Bucket.CreateBucketIfNotExists.
func (b *Bucket) CreateBucketIfNotExists(name []byte) (*Bucket, error) {
	// An existing bucket is no change, and leaving it out keeps a write
	// that only makes sure of its buckets from needing the group.
	existed := b.tx.rec != nil && b.b.Bucket(name) != nil
	c, err := b.b.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, err
	}
	bk := b.tx.wrap(c, b, name)
	if !existed {
		b.tx.rec.createBucket(bk)
	}
	return bk, nil
}

// DeleteBucket mirrors bolt.Bucket.DeleteBucket.
func (b *Bucket) DeleteBucket(name []byte) error {
	if err := b.b.DeleteBucket(name); err != nil {
		return err
	}
	b.tx.rec.deleteBucket(b.path, name)
	return nil
}

// Sequence mirrors bolt.Bucket.Sequence.
func (b *Bucket) Sequence() uint64 { return b.b.Sequence() }

// SetSequence mirrors bolt.Bucket.SetSequence.
func (b *Bucket) SetSequence(v uint64) error {
	if err := b.b.SetSequence(v); err != nil {
		return err
	}
	b.tx.rec.setSequence(b.path, v)
	return nil
}

// NextSequence mirrors bolt.Bucket.NextSequence. It is recorded as the
// value it produced, so every node ends with the same sequence.
func (b *Bucket) NextSequence() (uint64, error) {
	n, err := b.b.NextSequence()
	if err != nil {
		return 0, err
	}
	b.tx.rec.setSequence(b.path, n)
	return n, nil
}

// Stats mirrors bolt.Bucket.Stats.
func (b *Bucket) Stats() bolt.BucketStats { return b.b.Stats() }

// Cursor mirrors bolt.Cursor.
type Cursor struct {
	c *bolt.Cursor
	b *Bucket
	// key is the key the cursor last returned: bolt does not expose the
	// current key, and a recorded Delete must name it.
	key []byte
}

// Bucket is the bucket the cursor walks.
func (c *Cursor) Bucket() *Bucket { return c.b }

func (c *Cursor) at(k, v []byte) ([]byte, []byte) {
	c.key = k
	return k, v
}

// First mirrors bolt.Cursor.First.
func (c *Cursor) First() ([]byte, []byte) { return c.at(c.c.First()) }

// Last mirrors bolt.Cursor.Last.
func (c *Cursor) Last() ([]byte, []byte) { return c.at(c.c.Last()) }

// Next mirrors bolt.Cursor.Next.
func (c *Cursor) Next() ([]byte, []byte) { return c.at(c.c.Next()) }

// Prev mirrors bolt.Cursor.Prev.
func (c *Cursor) Prev() ([]byte, []byte) { return c.at(c.c.Prev()) }

// Seek mirrors bolt.Cursor.Seek.
func (c *Cursor) Seek(seek []byte) ([]byte, []byte) { return c.at(c.c.Seek(seek)) }

// Delete mirrors bolt.Cursor.Delete.
func (c *Cursor) Delete() error {
	rec := c.b.tx.rec
	var key []byte
	if rec != nil {
		// The key may point into the node the delete rewrites.
		key = clone(c.key)
	}
	if err := c.c.Delete(); err != nil {
		return err
	}
	rec.delete(c.b.path, key)
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// EnsureBuckets creates the named top-level buckets if they are missing.
// Buckets that exist already cost no write, so a node that is not the
// leader can open a file whose buckets are in place.
func (d *DB) EnsureBuckets(buckets ...string) error {
	var missing []string
	if err := d.View(func(tx *Tx) error {
		for _, b := range buckets {
			if tx.Bucket([]byte(b)) == nil {
				missing = append(missing, b)
			}
		}
		return nil
	}); err != nil || len(missing) == 0 {
		return err
	}
	return d.Update(func(tx *Tx) error {
		for _, b := range missing {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
}
