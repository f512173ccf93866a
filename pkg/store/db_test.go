package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

// mirror stands in for the group: it applies each change set to the
// leader's own file and to a follower's, the way a replicated log would.
type mirror struct {
	mu    sync.Mutex
	files []*bolt.DB
	fail  error
	logs  [][]byte
}

func (m *mirror) Replicate(ops []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	for _, f := range m.files {
		if err := f.Update(func(tx *bolt.Tx) error { return store.ApplyOps(tx, ops) }); err != nil {
			return err
		}
	}
	m.logs = append(m.logs, bytes.Clone(ops))
	return nil
}

func (m *mirror) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.logs)
}

// cluster is a replicated leader, a follower fed by the same change sets,
// and a local-mode file given the same writes, which the other two must
// match.
type cluster struct {
	leader   *store.DB
	follower *bolt.DB
	local    *store.DB
	rep      *mirror
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	leader := testsupport.OpenStore(t, filepath.Join(dir, "leader.db"), "top")
	follower := testsupport.OpenDB(t, filepath.Join(dir, "follower.db"), "top")
	local := testsupport.OpenStore(t, filepath.Join(dir, "local.db"), "top")
	rep := &mirror{files: []*bolt.DB{leader.Bolt(), follower}}
	leader.SetReplicator(rep)
	return &cluster{leader: leader, follower: follower, local: local, rep: rep}
}

// update runs fn on both the replicated and the local file.
func (c *cluster) update(t *testing.T, fn func(*store.Tx) error) {
	t.Helper()
	if err := c.leader.Update(fn); err != nil {
		t.Fatalf("replicated update: %v", err)
	}
	if err := c.local.Update(fn); err != nil {
		t.Fatalf("local update: %v", err)
	}
}

func (c *cluster) assertSame(t *testing.T) string {
	t.Helper()
	want := dump(t, c.local.Bolt())
	if got := dump(t, c.leader.Bolt()); got != want {
		t.Errorf("leader differs from local mode:\n got %s\nwant %s", got, want)
	}
	if got := dump(t, c.follower); got != want {
		t.Errorf("follower differs from local mode:\n got %s\nwant %s", got, want)
	}
	return want
}

// dump lists every bucket, sequence, key and value in the file.
func dump(t *testing.T, db *bolt.DB) string {
	t.Helper()
	var sb strings.Builder
	var walk func(prefix string, b *bolt.Bucket) error
	walk = func(prefix string, b *bolt.Bucket) error {
		fmt.Fprintf(&sb, "%s seq=%d\n", prefix, b.Sequence())
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(prefix+"/"+string(k), b.Bucket(k))
			}
			fmt.Fprintf(&sb, "%s %q=%q\n", prefix, k, v)
			return nil
		})
	}
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walk(string(name), b) })
	}); err != nil {
		t.Fatalf("dump %s: %v", db.Path(), err)
	}
	return sb.String()
}

func put(tx *store.Tx, k, v string) error {
	return tx.Bucket([]byte("top")).Put([]byte(k), []byte(v))
}

// A replicated write leaves the leader, a follower fed its change sets
// and a local-mode file with the same content, and fn reads its own
// writes as it would without replication.
func TestReplicatedMatchesLocal(t *testing.T) {
	cases := []struct {
		name  string
		setup func(*store.Tx) error
		write func(*store.Tx) error
	}{
		{name: "puts", write: func(tx *store.Tx) error {
			for i := range 50 {
				if err := put(tx, fmt.Sprintf("k%02d", i), strings.Repeat("v", i)); err != nil {
					return err
				}
			}
			if got := tx.Bucket([]byte("top")).Get([]byte("k07")); string(got) != "vvvvvvv" {
				return fmt.Errorf("own write not visible: %q", got)
			}
			return put(tx, "empty", "")
		}},
		{name: "overwrite and delete", setup: func(tx *store.Tx) error {
			return errors.Join(put(tx, "a", "1"), put(tx, "b", "2"), put(tx, "c", "3"))
		}, write: func(tx *store.Tx) error {
			b := tx.Bucket([]byte("top"))
			if err := errors.Join(b.Put([]byte("a"), []byte("one")), b.Delete([]byte("b")), b.Delete([]byte("missing"))); err != nil {
				return err
			}
			if b.Get([]byte("b")) != nil {
				return errors.New("deleted key still visible")
			}
			return nil
		}},
		{name: "nested buckets", write: func(tx *store.Tx) error {
			a, err := tx.CreateBucketIfNotExists([]byte("a"))
			if err != nil {
				return err
			}
			b, err := a.CreateBucket([]byte("b"))
			if err != nil {
				return err
			}
			c, err := b.CreateBucketIfNotExists([]byte("c"))
			if err != nil {
				return err
			}
			if err := errors.Join(c.Put([]byte("deep"), []byte("x")), a.Put([]byte("shallow"), []byte("y"))); err != nil {
				return err
			}
			// A bucket found again by name writes to the same place.
			return tx.Bucket([]byte("a")).Bucket([]byte("b")).Put([]byte("mid"), []byte("z"))
		}},
		{name: "sequences", setup: func(tx *store.Tx) error {
			_, err := tx.Bucket([]byte("top")).CreateBucket([]byte("seq"))
			return err
		}, write: func(tx *store.Tx) error {
			b := tx.Bucket([]byte("top")).Bucket([]byte("seq"))
			for range 3 {
				n, err := b.NextSequence()
				if err != nil {
					return err
				}
				if err := b.Put(store.U64(n), []byte("x")); err != nil {
					return err
				}
			}
			return tx.Bucket([]byte("top")).SetSequence(41)
		}},
		{name: "cursor deletes", setup: func(tx *store.Tx) error {
			for i := range 20 {
				if err := put(tx, fmt.Sprintf("k%02d", i), "v"); err != nil {
					return err
				}
			}
			return nil
		}, write: func(tx *store.Tx) error {
			c := tx.Bucket([]byte("top")).Cursor()
			i := 0
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				if i%3 == 0 {
					if err := c.Delete(); err != nil {
						return err
					}
				}
				i++
			}
			c = tx.Bucket([]byte("top")).Cursor()
			if k, _ := c.Seek([]byte("k10")); k != nil {
				if err := c.Delete(); err != nil {
					return err
				}
			}
			if k, _ := c.Last(); k != nil {
				return c.Delete()
			}
			return nil
		}},
		{name: "bucket deletes and recreation", setup: func(tx *store.Tx) error {
			a, err := tx.CreateBucket([]byte("a"))
			if err != nil {
				return err
			}
			b, err := a.CreateBucket([]byte("b"))
			if err != nil {
				return err
			}
			return errors.Join(b.Put([]byte("k"), []byte("v")), a.Put([]byte("k"), []byte("v")))
		}, write: func(tx *store.Tx) error {
			if err := tx.Bucket([]byte("a")).DeleteBucket([]byte("b")); err != nil {
				return err
			}
			if err := tx.DeleteBucket([]byte("a")); err != nil {
				return err
			}
			a, err := tx.CreateBucket([]byte("a"))
			if err != nil {
				return err
			}
			return a.Put([]byte("again"), []byte("v"))
		}},
		{name: "ignored failures are not recorded", write: func(tx *store.Tx) error {
			top := tx.Bucket([]byte("top"))
			if err := top.Put(nil, []byte("v")); err == nil {
				return errors.New("empty key accepted")
			}
			if _, err := tx.CreateBucket([]byte("top")); err == nil {
				return errors.New("existing bucket created again")
			}
			return top.Put([]byte("ok"), []byte("v"))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			if tc.setup != nil {
				c.update(t, tc.setup)
			}
			before := c.assertSame(t)
			c.update(t, tc.write)
			if after := c.assertSame(t); after == before {
				t.Errorf("write changed nothing:\n%s", after)
			}
		})
	}
}

// fn's error comes back unchanged and nothing is replicated; a write that
// changes nothing is not replicated either.
func TestFailedOrEmptyWriteReplicatesNothing(t *testing.T) {
	c := newCluster(t)
	before := c.assertSame(t)
	boom := errors.New("boom")
	err := c.leader.Update(func(tx *store.Tx) error {
		if err := put(tx, "k", "v"); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Update = %v, want fn's own error", err)
	}
	if err := c.leader.Update(func(tx *store.Tx) error {
		_ = tx.Bucket([]byte("top")).Get([]byte("k"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := c.rep.count(); n != 0 {
		t.Errorf("%d change sets replicated, want none", n)
	}
	if got := c.assertSame(t); got != before {
		t.Errorf("file changed:\n%s", got)
	}
}

// A replicator's refusal leaves the file as it was and reaches the caller.
func TestReplicatorErrorLeavesFileUnchanged(t *testing.T) {
	c := newCluster(t)
	before := c.assertSame(t)
	notLeader := errors.New("not the leader")
	c.rep.fail = notLeader
	err := c.leader.Update(func(tx *store.Tx) error { return put(tx, "k", "v") })
	if !errors.Is(err, notLeader) {
		t.Fatalf("Update = %v, want it to wrap %v", err, notLeader)
	}
	if got := dump(t, c.leader.Bolt()); got != before {
		t.Errorf("leader changed:\n%s", got)
	}
	err = c.leader.Batch(func(tx *store.Tx) error { return put(tx, "k", "v") })
	if !errors.Is(err, notLeader) {
		t.Fatalf("Batch = %v, want it to wrap %v", err, notLeader)
	}
	if got := dump(t, c.leader.Bolt()); got != before {
		t.Errorf("leader changed:\n%s", got)
	}
}

// Concurrent batched writes share change sets; the one that fails fails
// alone and every other caller's write is applied when it returns.
func TestBatchOneFailing(t *testing.T) {
	for _, replicated := range []bool{true, false} {
		t.Run(fmt.Sprintf("replicated=%v", replicated), func(t *testing.T) {
			c := newCluster(t)
			db := c.local
			if replicated {
				db = c.leader
			}
			const n = 40
			boom := errors.New("boom")
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					errs[i] = db.Batch(func(tx *store.Tx) error {
						if err := put(tx, fmt.Sprintf("k%02d", i), "v"); err != nil {
							return err
						}
						if i == 7 {
							return boom
						}
						return nil
					})
					if errs[i] == nil {
						// Applied by the time Batch returns.
						_ = db.View(func(tx *store.Tx) error {
							if tx.Bucket([]byte("top")).Get(fmt.Appendf(nil, "k%02d", i)) == nil {
								t.Errorf("k%02d not visible after Batch returned", i)
							}
							return nil
						})
					}
				})
			}
			wg.Wait()
			var keys []string
			_ = db.View(func(tx *store.Tx) error {
				return tx.Bucket([]byte("top")).ForEach(func(k, _ []byte) error {
					keys = append(keys, string(k))
					return nil
				})
			})
			sort.Strings(keys)
			for i, err := range errs {
				if (i == 7) != errors.Is(err, boom) || (i != 7 && err != nil) {
					t.Errorf("call %d: %v", i, err)
				}
			}
			if len(keys) != n-1 || strings.Contains(strings.Join(keys, ","), "k07") {
				t.Errorf("keys %v", keys)
			}
			if replicated {
				if got, want := dump(t, c.follower), dump(t, c.leader.Bolt()); got != want {
					t.Errorf("follower differs:\n got %s\nwant %s", got, want)
				}
				if sets := c.rep.count(); sets >= n-1 {
					t.Errorf("%d change sets for %d calls: nothing was batched", sets, n)
				}
			}
		})
	}
}

// Local mode forwards to bbolt: a write commits directly and no
// replicator is involved.
func TestLocalMode(t *testing.T) {
	db := testsupport.OpenStore(t, filepath.Join(t.TempDir(), "q.db"), "top")
	if err := db.Update(func(tx *store.Tx) error { return put(tx, "k", "v") }); err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *store.Tx) error {
		if tx.Writable() {
			return errors.New("view is writable")
		}
		if tx.Bucket([]byte("missing")) != nil {
			return errors.New("missing bucket is not nil")
		}
		if got := tx.Bucket([]byte("top")).Get([]byte("k")); string(got) != "v" {
			return fmt.Errorf("got %q", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// recordedLogs runs writes through a replicated DB and returns the change
// sets it produced, for the decoder's tests and the fuzzer's seeds.
func recordedLogs(t testing.TB) [][]byte {
	dir := t.TempDir()
	db := testsupport.OpenStore(t, filepath.Join(dir, "q.db"), "top")
	rep := &mirror{files: []*bolt.DB{db.Bolt()}}
	db.SetReplicator(rep)
	writes := []func(*store.Tx) error{
		func(tx *store.Tx) error { return errors.Join(put(tx, "a", "1"), put(tx, "b", "")) },
		func(tx *store.Tx) error {
			a, err := tx.CreateBucketIfNotExists([]byte("a"))
			if err != nil {
				return err
			}
			b, err := a.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			n, err := b.NextSequence()
			if err != nil {
				return err
			}
			return errors.Join(b.Put(store.U64(n), []byte("x")), tx.Bucket([]byte("top")).Delete([]byte("a")))
		},
		func(tx *store.Tx) error {
			c := tx.Bucket([]byte("top")).Cursor()
			if k, _ := c.First(); k != nil {
				if err := c.Delete(); err != nil {
					return err
				}
			}
			return errors.Join(tx.Bucket([]byte("a")).DeleteBucket([]byte("b")), tx.Bucket([]byte("top")).SetSequence(9))
		},
	}
	for _, w := range writes {
		if err := db.Update(w); err != nil {
			t.Fatal(err)
		}
	}
	return rep.logs
}

// Malformed change sets are refused with ErrBadOps before anything is
// written; a state that lacks a bucket refuses the change set too.
func TestApplyOpsRefuses(t *testing.T) {
	logs := recordedLogs(t)
	db := testsupport.OpenDB(t, filepath.Join(t.TempDir(), "q.db"), "top")
	bad := map[string][]byte{
		"empty":          nil,
		"version":        {9, 1, 1, 1, 'k', 0},
		"kind":           {1, 77, 1, 0},
		"repeated first": {1, 1, 0, 1, 'k', 0},
		"long key":       {1, 2, 2, 3, 't', 'o', 'p', 200, 1},
		"deep path":      {1, 2, 255, 255, 255, 255, 15},
		"bad varint":     {1, 5, 1, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255},
		"truncated":      logs[1][:len(logs[1])-1],
	}
	for name, ops := range bad {
		t.Run(name, func(t *testing.T) {
			err := db.Update(func(tx *bolt.Tx) error { return store.ApplyOps(tx, ops) })
			if !errors.Is(err, store.ErrBadOps) {
				t.Fatalf("ApplyOps = %v, want ErrBadOps", err)
			}
		})
	}
	// The second change set writes into bucket a, which the first does
	// not create.
	err := db.Update(func(tx *bolt.Tx) error { return store.ApplyOps(tx, logs[2]) })
	if err == nil || errors.Is(err, store.ErrBadOps) {
		t.Fatalf("ApplyOps on a state without bucket a = %v, want a state error", err)
	}
}

func FuzzApplyOps(f *testing.F) {
	for _, l := range recordedLogs(f) {
		f.Add(l)
	}
	db := testsupport.OpenDB(f, filepath.Join(f.TempDir(), "q.db"), "top", "a")
	f.Fuzz(func(t *testing.T, ops []byte) {
		tx, err := db.Begin(true)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		_ = store.ApplyOps(tx, ops)
	})
}
