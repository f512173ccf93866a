package cluster

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/quarryfleet/quarry/pkg/pki"
	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// memberlist and raft leave these for a short while after shutdown.
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*deferError).Error"),
		goleak.IgnoreTopFunction("time.Sleep"))
}

// freeAddr reserves a loopback port for a member's listener.
func freeAddr(t *testing.T) string {
	t.Helper()
	return memberPorts.Addr(t, "127.0.0.1")
}

// memberPorts: every test's members bind in this one process, so no port
// may be handed out twice.
var memberPorts = testsupport.NewPorts()

type tmember struct {
	node *Node
	db   *store.DB
	cfg  Config
}

func newMember(t *testing.T, ca *pki.CA, id string, expect int, join []string, dir string) *tmember {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	b, err := bolt.Open(filepath.Join(dir, "quarry.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db := store.NewDB(b)
	cfg := Config{NodeID: id, DataDir: dir, RaftAddr: freeAddr(t), SerfAddr: freeAddr(t), Join: join,
		BootstrapExpect: expect, GRPCAddr: "127.0.0.1:1" + id[len(id)-1:], CA: ca, DB: b, Fast: true,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	n, err := New(cfg)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	db.SetReplicator(n)
	m := &tmember{node: n, db: db, cfg: cfg}
	t.Cleanup(func() { m.stop(t) })
	return m
}

func (m *tmember) stop(t *testing.T) {
	if m.node == nil {
		return
	}
	if err := m.node.Close(); err != nil {
		t.Logf("close %s: %v", m.cfg.NodeID, err)
	}
	testsupport.CheckDB(t, m.cfg.DB)
	m.cfg.DB.Close()
	m.node = nil
}

func leaderOf(t *testing.T, ms ...*tmember) *tmember {
	t.Helper()
	var l *tmember
	testsupport.Eventually(t, "a leader", 20*time.Second, func() bool {
		for _, m := range ms {
			if m.node != nil && m.node.IsLeader() {
				l = m
				return true
			}
		}
		return false
	})
	return l
}

func put(db *store.DB, k, v string) error {
	return db.Update(func(tx *store.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("things"))
		if err != nil {
			return err
		}
		if _, err := b.NextSequence(); err != nil {
			return err
		}
		return b.Put([]byte(k), []byte(v))
	})
}

func get(db *bolt.DB, k string) (v string, seq uint64) {
	_ = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("things")); b != nil {
			v, seq = string(b.Get([]byte(k))), b.Sequence()
		}
		return nil
	})
	return v, seq
}

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestGroupReplicatesAndFailsOver: three members found through the pool
// start a group; a write on the leader is in every member's file; a
// follower refuses writes; when the leader goes, another takes over with
// everything, and writes go on.
func TestGroupReplicatesAndFailsOver(t *testing.T) {
	ca := newCA(t)
	a := newMember(t, ca, "c1", 3, nil, "")
	b := newMember(t, ca, "c2", 3, []string{a.cfg.SerfAddr}, "")
	c := newMember(t, ca, "c3", 3, []string{a.cfg.SerfAddr}, "")
	all := []*tmember{a, b, c}
	l := leaderOf(t, all...)
	if err := put(l.db, "k1", "v1"); err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		testsupport.Eventually(t, m.cfg.NodeID+" has k1", 10*time.Second, func() bool {
			v, seq := get(m.cfg.DB, "k1")
			return v == "v1" && seq == 1
		})
	}
	for _, m := range all {
		if m != l {
			if err := put(m.db, "k2", "x"); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("write on follower %s: got %v, want ErrNotLeader", m.cfg.NodeID, err)
			}
			if v, _ := get(m.cfg.DB, "k2"); v != "" {
				t.Fatalf("refused write reached %s", m.cfg.NodeID)
			}
		}
	}
	peers, err := l.node.Peers()
	if err != nil || len(peers) != 3 {
		t.Fatalf("peers: %v %v", peers, err)
	}
	testsupport.Eventually(t, "every member's address, the leader's first", 10*time.Second, func() bool {
		got := l.node.Controllers()
		return len(got) == 3 && got[0] == l.cfg.GRPCAddr
	})
	// A pool member outside the group's configuration (anyone with the
	// pool's key, a rig's gossip key included) is not handed to rigs.
	impostor := newMember(t, newCA(t), "c9", 0, []string{a.cfg.SerfAddr}, "")
	testsupport.Eventually(t, "the impostor in the pool", 10*time.Second, func() bool {
		for _, m := range l.node.members() {
			if m.id == "c9" && m.alive {
				return true
			}
		}
		return false
	})
	for _, c := range l.node.Controllers() {
		if c == impostor.cfg.GRPCAddr {
			t.Fatalf("controllers %v include a member the group never proved", l.node.Controllers())
		}
	}
	impostor.stop(t)

	l.stop(t)
	var rest []*tmember
	for _, m := range all {
		if m != l {
			rest = append(rest, m)
		}
	}
	l2 := leaderOf(t, rest...)
	if v, _ := get(l2.cfg.DB, "k1"); v != "v1" {
		t.Fatalf("new leader lost k1: %q", v)
	}
	if err := put(l2.db, "k3", "v3"); err != nil {
		t.Fatal(err)
	}
	for _, m := range rest {
		testsupport.Eventually(t, m.cfg.NodeID+" has k3", 10*time.Second, func() bool {
			v, seq := get(m.cfg.DB, "k3")
			return v == "v3" && seq == 2
		})
	}
}

// fileWith opens a bbolt file at path holding key=val, written as a
// single controller writes.
func fileWith(t *testing.T, path, key, val string) *bolt.DB {
	t.Helper()
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := put(store.NewDB(b), key, val); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSingleControllerSeedsGroup: a data dir that ran alone starts a group
// with bootstrap_expect 1; a fresh member joining gets its state, and a
// restart of the first member replays to the same state.
func TestSingleControllerSeedsGroup(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	fileWith(t, filepath.Join(dir, "quarry.db"), "old", "state").Close()

	// Not alone: refused, and the file is untouched.
	cfgDir := t.TempDir()
	b2, _ := bolt.Open(filepath.Join(dir, "quarry.db"), 0o600, nil)
	_, err := New(Config{NodeID: "c1", DataDir: cfgDir, RaftAddr: freeAddr(t), SerfAddr: freeAddr(t), BootstrapExpect: 3, CA: ca, DB: b2, Fast: true})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("bootstrap_expect to 1")) {
		t.Fatalf("a data dir with state joined a 3-member start: %v", err)
	}
	if v, _ := get(b2, "old"); v != "state" {
		t.Fatal("refused start changed the file")
	}
	b2.Close()

	a := newMember(t, ca, "c1", 1, nil, dir)
	l := leaderOf(t, a)
	// The controller starts on the leadership signal, which comes after
	// the seed is applied.
	select {
	case up := <-l.node.Leadership():
		if !up {
			t.Fatal("lost leadership")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no leadership signal")
	}
	if err := put(l.db, "new", "write"); err != nil {
		t.Fatal(err)
	}
	j := newMember(t, ca, "c2", 0, []string{a.cfg.SerfAddr}, "")
	testsupport.Eventually(t, "the joining member has the seeded and the new state", 20*time.Second, func() bool {
		v1, _ := get(j.cfg.DB, "old")
		v2, _ := get(j.cfg.DB, "new")
		return v1 == "state" && v2 == "write"
	})
	peers, _ := l.node.Peers()
	if len(peers) != 2 {
		t.Fatalf("peers after join: %+v", peers)
	}
}

// TestRigCertificateCannotJoin: the member transport refuses a rig's
// certificate from the same CA and a controller certificate of another CA.
func TestRigCertificateCannotJoin(t *testing.T) {
	ca := newCA(t)
	a := newMember(t, ca, "c1", 1, nil, "")
	leaderOf(t, a)
	key, csr, err := pki.NewKeyAndRequest("rig-1")
	if err != nil {
		t.Fatal(err)
	}
	rigDER, err := ca.SignRequest(csr, "rig-1", pki.OURig, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other := newCA(t)
	otherDER, otherKey, err := other.IssuePeer("c9", []string{"127.0.0.1"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cert tls.Certificate
	}{
		{"rig certificate", tls.Certificate{Certificate: [][]byte{rigDER}, PrivateKey: key}},
		{"other CA's controller", tls.Certificate{Certificate: [][]byte{otherDER}, PrivateKey: otherKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := peerTLS(ca, tc.cert)
			// Under TLS 1.3 the client finishes its handshake before the
			// member checks the client's certificate: the refusal shows
			// on the first read.
			c, err := tls.Dial("tcp", a.cfg.RaftAddr, conf)
			if err == nil {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("member accepted the connection: %v", err)
			}
			// And the verification alone says why.
			if _, err := verifyPeer(ca.Pool(), tc.cert.Certificate); err == nil {
				t.Fatal("verifyPeer accepted it")
			} else {
				t.Log(err)
			}
		})
	}
	// A proper member certificate proves its id.
	der, k, _ := ca.IssuePeer("c7", []string{"127.0.0.1"}, time.Hour, time.Now())
	id, err := probePeer(peerTLS(ca, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}), ca.Pool(), a.cfg.RaftAddr, 2*time.Second)
	if err != nil || id != "c1" {
		t.Fatal(fmt.Errorf("probe of c1: id %q err %w", id, err))
	}
}

// capture keeps the change sets a replicated store records, applying none.
type capture struct{ sets [][]byte }

func (c *capture) Replicate(ops []byte) error {
	c.sets = append(c.sets, append([]byte(nil), ops...))
	return nil
}

// TestApplyBatchKeepsSeedOrder: a member catching up may get the seed and
// the first change sets after it in one batch; they apply in log order,
// so the seed does not wipe what came after it.
func TestApplyBatchKeepsSeedOrder(t *testing.T) {
	dir := t.TempDir()
	src := fileWith(t, filepath.Join(dir, "src.db"), "seeded", "yes")
	img, err := image(src)
	if err != nil {
		t.Fatal(err)
	}
	rec := store.NewDB(src)
	c := &capture{}
	rec.SetReplicator(c)
	for _, k := range []string{"after-1", "after-2"} {
		if err := put(rec, k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	src.Close()

	dst, err := bolt.Open(filepath.Join(dir, "dst.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	// The bucket exists already (say, the member's own buckets): the
	// change sets would apply before the seed without an error, and the
	// seed would then replace them.
	if err := dst.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("things")); return err }); err != nil {
		t.Fatal(err)
	}
	f := &fsm{db: dst, dir: dir, log: slog.New(slog.DiscardHandler)}
	logs := []*raft.Log{
		{Index: 3, Type: raft.LogCommand, Data: append([]byte{entrySeed}, img...)},
		{Index: 4, Type: raft.LogCommand, Data: append([]byte{entryOps}, c.sets[0]...)},
		{Index: 5, Type: raft.LogCommand, Data: append([]byte{entryOps}, c.sets[1]...)},
	}
	for i, r := range f.ApplyBatch(logs) {
		if err, _ := r.(error); err != nil {
			t.Fatalf("entry %d: %v", logs[i].Index, err)
		}
	}
	for _, k := range []string{"seeded", "after-1", "after-2"} {
		if v, _ := get(dst, k); v == "" {
			t.Errorf("%s missing after the batch", k)
		}
	}
	if _, seq := get(dst, "after-2"); seq != 2 {
		t.Errorf("sequence %d after the batch, want 2", seq)
	}
}
