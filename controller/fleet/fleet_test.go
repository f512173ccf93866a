package fleet

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openFleet(t *testing.T, path string, opts Options) (*Fleet, *store.DB) {
	t.Helper()
	db := testsupport.OpenStore(t, path, Buckets...)
	f, err := Open(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	return f, db
}

// ingestAll hands reports over and waits for their acknowledgements.
func ingestAll(t *testing.T, f *Fleet, rig string, seqs ...uint64) []uint64 {
	t.Helper()
	var mu sync.Mutex
	var acked []uint64
	var wg sync.WaitGroup
	for _, s := range seqs {
		wg.Add(1)
		if err := f.Ingest(context.Background(), rig, &quarryv1.Report{Seq: s, TimeUnixNano: int64(s)}, func(seq uint64) {
			mu.Lock()
			acked = append(acked, seq)
			mu.Unlock()
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	return acked
}

func TestIngestDropsDuplicatesAndCountsGaps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	f, db := openFleet(t, path, Options{HistoryLen: 4})
	if err := f.RegisterRig("r1", "one", "h"); err != nil {
		t.Fatal(err)
	}
	acked := ingestAll(t, f, "r1", 1, 2, 3, 2, 3, 6, 5, 7)
	if len(acked) != 8 {
		t.Fatalf("every report, duplicate or not, is acknowledged: got %d acks", len(acked))
	}
	r, _ := f.Rig("r1")
	if r.LastSeq != 7 || r.Reports != 5 || r.SeqGaps != 2 {
		t.Fatalf("last_seq %d reports %d gaps %d; want 7, 5, 2", r.LastSeq, r.Reports, r.SeqGaps)
	}
	st := f.Stats()
	if st.Committed != 5 || st.Duplicates != 3 {
		t.Fatalf("stats %+v", st)
	}
	// Every acknowledgement, a duplicate's too, is timed.
	if n := st.AckLatency.Count(); n != 8 || st.AckLatency.Sum <= 0 {
		t.Fatalf("ack latency: %d timed, sum %v; want 8 and more than 0", n, st.AckLatency.Sum)
	}
	hist, err := f.History("r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	// History covers the last HistoryLen sequence numbers: 4..7, of which
	// 4 was never received and 5 came late (after 6) and was dropped.
	if len(hist) != 2 || hist[0].Seq != 6 || hist[1].Seq != 7 {
		var seqs []uint64
		for _, h := range hist {
			seqs = append(seqs, h.Seq)
		}
		t.Fatalf("history %v, want [6 7]", seqs)
	}
	f.Close()
	db.Close()

	// Committed state survives a restart, and duplicates stay duplicates.
	f, db = openFleet(t, path, Options{})
	defer db.Close()
	defer f.Close()
	ingestAll(t, f, "r1", 7, 8)
	r, _ = f.Rig("r1")
	if r.LastSeq != 8 || r.Reports != 6 {
		t.Fatalf("after restart: last_seq %d reports %d", r.LastSeq, r.Reports)
	}
}

func TestCommandsWaitExpireAndBelongToTheirRig(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	f, db := openFleet(t, filepath.Join(t.TempDir(), "q.db"), Options{Now: clock})
	defer db.Close()
	defer f.Close()
	for _, id := range []string{"a", "b"} {
		if err := f.RegisterRig(id, id, id); err != nil {
			t.Fatal(err)
		}
	}
	keep, err := f.QueueCommand("a", quarryv1.CommandKind_COMMAND_KIND_PING, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	short, _ := f.QueueCommand("a", quarryv1.CommandKind_COMMAND_KIND_PING, nil, time.Minute)
	if _, err := f.QueueCommand("nope", quarryv1.CommandKind_COMMAND_KIND_PING, nil, time.Minute); err == nil {
		t.Fatal("command for an unknown rig accepted")
	}
	now = now.Add(10 * time.Minute)
	pending, err := f.PendingCommands("a")
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 || pending[0].Id != keep.Command.Id {
		t.Fatalf("pending %v", pending)
	}
	rec, _ := f.Command(short.Command.Id)
	if rec.Status != quarryv1.CommandStatus_COMMAND_STATUS_EXPIRED {
		t.Fatalf("short command status %s", rec.Status)
	}
	if err := f.CompleteCommand("b", &quarryv1.CommandResult{CommandId: keep.Command.Id}); err == nil {
		t.Fatal("rig b completed rig a's command")
	}
	if err := f.CompleteCommand("a", &quarryv1.CommandResult{CommandId: keep.Command.Id, Output: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if p, _ := f.PendingCommands("a"); len(p) != 0 {
		t.Fatalf("completed command still pending: %v", p)
	}
}

func TestAuditIsOrderedAndFiltered(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	f, db := openFleet(t, filepath.Join(t.TempDir(), "q.db"), Options{Now: func() time.Time { return now }})
	defer db.Close()
	defer f.Close()
	for i, a := range []string{"one", "two", "three"} {
		now = now.Add(time.Duration(i+1) * time.Minute)
		if err := f.Audit(&quarryv1.AuditEntry{Who: "x", Action: a}); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := f.AuditLog(time.Time{}, 0)
	if len(all) != 3 || all[0].Action != "one" || all[2].Action != "three" {
		t.Fatalf("audit %v", all)
	}
	recent, _ := f.AuditLog(now.Add(-2*time.Minute), 0)
	if len(recent) != 1 || recent[0].Action != "three" {
		t.Fatalf("since filter: %v", recent)
	}
}

func BenchmarkIngestCommit(b *testing.B) { benchIngestCommit(b, false) }

// BenchmarkIngestCommitReplicated is the same commit path with each change
// set recorded and applied back to the file, as on a group's leader, less
// the group's own round trip.
func BenchmarkIngestCommitReplicated(b *testing.B) { benchIngestCommit(b, true) }

// applyBack replicates to the file the change set was recorded from.
type applyBack struct{ db *bolt.DB }

func (a applyBack) Replicate(ops []byte) error {
	return a.db.Update(func(tx *bolt.Tx) error { return store.ApplyOps(tx, ops) })
}

func benchIngestCommit(b *testing.B, replicated bool) {
	bdb, err := store.Open(filepath.Join(b.TempDir(), "q.db"), Buckets...)
	if err != nil {
		b.Fatal(err)
	}
	db := store.NewDB(bdb)
	defer db.Close()
	if replicated {
		db.SetReplicator(applyBack{db: bdb})
	}
	f, _ := Open(db, Options{})
	defer f.Close()
	const rigs = 1000
	for i := range rigs {
		_ = f.RegisterRig(rigName(i), "", "")
	}
	seq := make([]uint64, rigs)
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r := i % rigs
		seq[r]++
		wg.Add(1)
		_ = f.Ingest(context.Background(), rigName(r), &quarryv1.Report{Seq: seq[r], Host: &quarryv1.HostStats{CpuPercent: 5}}, func(uint64) { wg.Done() })
	}
	wg.Wait()
}

func rigName(i int) string {
	return "rig-" + string(rune('a'+i%26)) + string(rune('a'+(i/26)%26)) + string(rune('a'+(i/676)%26))
}

// A batch of commands commits with its audit entries: each known rig's
// command is stored and pending with an entry naming it, an unknown rig's
// request fails alone with an entry saying why, and a failed commit
// queues nothing.
func TestQueueCommandsBatch(t *testing.T) {
	f, db := openFleet(t, filepath.Join(t.TempDir(), "q.db"), Options{})
	defer db.Close()
	defer f.Close()
	for _, id := range []string{"a", "b"} {
		if err := f.RegisterRig(id, id, id); err != nil {
			t.Fatal(err)
		}
	}
	// Every entry shares one detail with a credential in it, as a
	// fleet-wide switch audits one reason for many rigs; each must be
	// stored redacted, the ones after the first included.
	const detail = "pool stratum+tcp://w.r:hunter2@host:1 pays more"
	audit := func(rig string) *quarryv1.AuditEntry {
		return &quarryv1.AuditEntry{Who: "profit-switcher", Role: "system", Action: "profit.switch", Target: rig, Detail: detail}
	}
	reqs := []CommandRequest{
		{RigID: "a", Kind: quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, Payload: []byte("sheet"), Audit: audit("a")},
		{RigID: "nope", Kind: quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, Audit: audit("nope")},
		{RigID: "b", Kind: quarryv1.CommandKind_COMMAND_KIND_STOP_MINER, Audit: audit("b")},
	}
	recs, errs := f.QueueCommands(reqs)
	if errs[0] != nil || errs[2] != nil || errs[1] == nil || recs[1] != nil {
		t.Fatalf("errors %v: want only the unknown rig's request refused", errs)
	}
	for _, k := range []int{0, 2} {
		rig := reqs[k].RigID
		p, err := f.PendingCommands(rig)
		if err != nil || len(p) != 1 || p[0].Id != recs[k].Command.Id || p[0].Kind != reqs[k].Kind {
			t.Fatalf("rig %s pending %v (%v), want its queued command", rig, p, err)
		}
	}
	log, err := f.AuditLog(time.Time{}, 0)
	if err != nil || len(log) != 3 {
		t.Fatalf("audit %v (%v), want an entry per request", log, err)
	}
	want := map[string]string{"a": "queued " + recs[0].Command.Id, "b": "queued " + recs[2].Command.Id, "nope": "error: "}
	for _, e := range log {
		if w := want[e.Target]; e.Result[:min(len(e.Result), len(w))] != w || e.TimeUnixNano == 0 {
			t.Errorf("audit for %s: %q at %d, want %q…", e.Target, e.Result, e.TimeUnixNano, w)
		}
		if w := "pool stratum+tcp://w.r:[redacted]@host:1 pays more"; e.Detail != w {
			t.Errorf("audit for %s: detail %q, want %q", e.Target, e.Detail, w)
		}
	}

	// A commit that fails (the store closed under it) fails every
	// request and stores nothing.
	path := filepath.Join(t.TempDir(), "closed.db")
	cdb := testsupport.OpenStore(t, path, Buckets...)
	g, err := Open(cdb, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.RegisterRig("a", "a", "a"); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if err := cdb.Close(); err != nil {
		t.Fatal(err)
	}
	recs, errs = g.QueueCommands([]CommandRequest{{RigID: "a", Kind: quarryv1.CommandKind_COMMAND_KIND_PING, Audit: audit("a")}})
	if recs[0] != nil || errs[0] == nil {
		t.Fatalf("a failed commit queued %v (%v)", recs[0], errs[0])
	}
	again, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := again.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket([]byte(bucketCommands)).Cursor().First(); k != nil {
			t.Errorf("command %s stored by a failed commit", k)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestLatencyHistogramBuckets(t *testing.T) {
	for _, tc := range []struct {
		d      time.Duration
		bucket int
	}{
		{0, 0},
		{500 * time.Microsecond, 0},
		{time.Millisecond, 0}, // a bucket holds what is at most its bound
		{1100 * time.Microsecond, 1},
		{40 * time.Millisecond, 5},
		{10 * time.Second, len(ackLatencyBounds) - 1},
		{11 * time.Second, len(ackLatencyBounds)}, // above every bound
	} {
		var h LatencyHistogram
		h.observe(tc.d)
		if h.Counts[tc.bucket] != 1 || h.Count() != 1 || h.Sum != tc.d {
			t.Errorf("%v: counts %v sum %v; want one in bucket %d", tc.d, h.Counts, h.Sum, tc.bucket)
		}
	}
}

// Every field of a stored rig reaches the views and copies readers get;
// a field added to Rig and not to fillView fails here.
func TestViewsCarryEveryField(t *testing.T) {
	f, db := openFleet(t, filepath.Join(t.TempDir(), "q.db"), Options{})
	defer db.Close()
	defer f.Close()
	if err := f.RegisterRig("r1", "one", "h"); err != nil {
		t.Fatal(err)
	}
	var want *quarryv1.Rig
	if err := f.UpdateRig("r1", func(r *quarryv1.Rig) {
		m := r.ProtoReflect()
		fields := m.Descriptor().Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			switch {
			case fd.Name() == "online" || fd.Name() == "revoked" || fd.Name() == "id":
				// live state and the key, set by the fleet
			case fd.IsMap():
				m.Mutable(fd).Map().Set(protoreflect.ValueOfString("k").MapKey(), protoreflect.ValueOfString("v"))
			case fd.IsList():
				l := m.Mutable(fd).List()
				l.Append(l.NewElement())
			case fd.Message() != nil:
				m.Set(fd, protoreflect.ValueOfMessage(m.NewField(fd).Message()))
			case fd.Kind() == protoreflect.StringKind:
				m.Set(fd, protoreflect.ValueOfString("x"))
			case fd.Kind() == protoreflect.BoolKind:
				m.Set(fd, protoreflect.ValueOfBool(true))
			case fd.Kind() == protoreflect.Int64Kind:
				m.Set(fd, protoreflect.ValueOfInt64(7))
			case fd.Kind() == protoreflect.Uint64Kind:
				m.Set(fd, protoreflect.ValueOfUint64(7))
			default:
				t.Fatalf("field %s: kind %s not covered by this test", fd.Name(), fd.Kind())
			}
		}
		want = proto.Clone(r).(*quarryv1.Rig)
	}); err != nil {
		t.Fatal(err)
	}
	if err := f.Revoke("r1"); err != nil {
		t.Fatal(err)
	}
	want.Revoked = true
	rigs := f.Rigs()
	if len(rigs) != 1 || !proto.Equal(rigs[0], want) {
		t.Fatalf("Rigs():\n%v\nwant\n%v", rigs, want)
	}
	var seen int
	f.EachRig(func(r *quarryv1.Rig) {
		seen++
		if !proto.Equal(r, want) {
			t.Errorf("EachRig view:\n%v\nwant\n%v", r, want)
		}
	})
	if seen != 1 {
		t.Fatalf("EachRig saw %d rigs", seen)
	}
}

// Copies of the fleet are made outside its lock while reports commit; the
// race detector checks that they share nothing that changes.
func TestRigsWhileIngesting(t *testing.T) {
	f, db := openFleet(t, filepath.Join(t.TempDir(), "q.db"), Options{MaxEvents: 3})
	defer db.Close()
	defer f.Close()
	for i := range 4 {
		if err := f.RegisterRig(fmt.Sprintf("r%d", i), fmt.Sprintf("rig%d", i), "h"); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seq := uint64(1); seq <= 200; seq++ {
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Add(1)
				rep := &quarryv1.Report{Seq: seq, Gpus: []*quarryv1.GPUStats{{Name: "g", PowerW: proto.Float64(float64(seq))}},
					Miners: []*quarryv1.MinerStats{{Miner: "m", Hashrate: float64(seq), State: "running"}},
					Events: []*quarryv1.Event{{Message: fmt.Sprint(seq)}}}
				if err := f.Ingest(context.Background(), fmt.Sprintf("r%d", i), rep, func(uint64) { wg.Done() }); err != nil {
					t.Error(err)
					wg.Done()
				}
			}
			wg.Wait()
			if _, err := f.SetLabels("r0", map[string]string{"n": fmt.Sprint(seq)}, nil); err != nil {
				t.Error(err)
			}
		}
	}()
	var last uint64
	for {
		select {
		case <-done:
			rigs := f.Rigs()
			if rigs[0].LastSeq != 200 || len(rigs[0].Events) != 3 || rigs[0].Labels["n"] != "200" {
				t.Fatalf("after ingest: seq %d, %d events, label %q", rigs[0].LastSeq, len(rigs[0].Events), rigs[0].Labels["n"])
			}
			if last == 0 {
				t.Log("no copy was taken while reports committed")
			}
			return
		default:
		}
		rigs := f.Rigs()
		for _, r := range rigs {
			if len(r.Events) > 3 {
				t.Fatalf("rig %s copied with %d events", r.Name, len(r.Events))
			}
			r.Gpus = nil // a copy is the caller's to change
		}
		last = rigs[0].LastSeq
	}
}

// mirrorTo replicates a change set to the leader's file and a follower's.
type mirrorTo []*bolt.DB

func (m mirrorTo) Replicate(ops []byte) error {
	for _, db := range m {
		if err := db.Update(func(tx *bolt.Tx) error { return store.ApplyOps(tx, ops) }); err != nil {
			return err
		}
	}
	return nil
}

// The fleet's own writes (enrolment, batched report commits with history
// pruning, commands, tokens, audit) replicated to a follower leave it with
// the leader's content, and the leader's cache agrees with its file.
func TestReplicatedFleetMatchesFollower(t *testing.T) {
	dir := t.TempDir()
	db := testsupport.OpenStore(t, filepath.Join(dir, "leader.db"), Buckets...)
	follower := testsupport.OpenDB(t, filepath.Join(dir, "follower.db"), Buckets...)
	db.SetReplicator(mirrorTo{db.Bolt(), follower})
	f, err := Open(db, Options{HistoryLen: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := f.RegisterRig(rigName(i), rigName(i), "h"); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for seq := uint64(1); seq <= 6; seq++ {
		for i := range 4 {
			wg.Add(1)
			if err := f.Ingest(context.Background(), rigName(i), &quarryv1.Report{Seq: seq, Host: &quarryv1.HostStats{CpuPercent: 5}}, func(uint64) { wg.Done() }); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	if _, errs := f.QueueCommands([]CommandRequest{{RigID: rigName(0), Kind: quarryv1.CommandKind_COMMAND_KIND_PING}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if _, _, err := f.CreateToken("", time.Hour, 1, "", "test"); err != nil {
		t.Fatal(err)
	}
	if err := f.Audit(&quarryv1.AuditEntry{Who: "x", Action: "y"}); err != nil {
		t.Fatal(err)
	}
	if h, err := f.History(rigName(1), 0); err != nil || len(h) != 3 {
		t.Fatalf("history %d entries (%v), want the last 3", len(h), err)
	}
	f.Close()
	if got, want := dumpFile(t, follower), dumpFile(t, db.Bolt()); got != want {
		t.Errorf("follower differs from leader:\n got %s\nwant %s", got, want)
	}
}

func dumpFile(t *testing.T, db *bolt.DB) string {
	t.Helper()
	var out []byte
	var walk func(prefix string, b *bolt.Bucket) error
	walk = func(prefix string, b *bolt.Bucket) error {
		out = fmt.Appendf(out, "%s seq=%d\n", prefix, b.Sequence())
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(prefix+"/"+string(k), b.Bucket(k))
			}
			out = fmt.Appendf(out, "%s %q=%q\n", prefix, k, v)
			return nil
		})
	}
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walk(string(name), b) })
	}); err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestCommitDelaySharesOneCommit: reports arriving within the delay share
// one transaction; a full batch does not wait for the delay, and a clean
// close commits what is waiting.
func TestCommitDelaySharesOneCommit(t *testing.T) {
	t.Run("within the delay", func(t *testing.T) {
		f, _ := openFleet(t, filepath.Join(t.TempDir(), "q.db"), Options{CommitDelay: 300 * time.Millisecond})
		defer f.Close()
		if err := f.RegisterRig("r1", "one", "h"); err != nil {
			t.Fatal(err)
		}
		if acked := ingestAll(t, f, "r1", 1, 2, 3, 4); len(acked) != 4 {
			t.Fatalf("acked %v", acked)
		}
		if st := f.Stats(); st.Committed != 4 || st.Batches != 1 {
			t.Fatalf("4 reports in %d batches (%d committed), want 1", st.Batches, st.Committed)
		}
	})
	t.Run("a full batch commits at once", func(t *testing.T) {
		f, _ := openFleet(t, filepath.Join(t.TempDir(), "q.db"), Options{CommitDelay: time.Hour, MaxBatch: 3})
		defer f.Close()
		if err := f.RegisterRig("r1", "one", "h"); err != nil {
			t.Fatal(err)
		}
		for s := uint64(1); s <= 3; s++ {
			if err := f.Ingest(context.Background(), "r1", &quarryv1.Report{Seq: s}, nil); err != nil {
				t.Fatal(err)
			}
		}
		testsupport.Poll(t, "the full batch committed", 30*time.Second, func() (bool, string) {
			st := f.Stats()
			return st.Committed == 3, fmt.Sprintf("%+v", st)
		})
	})
	t.Run("close commits what waits", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "q.db")
		f, db := openFleet(t, path, Options{CommitDelay: time.Hour})
		if err := f.RegisterRig("r1", "one", "h"); err != nil {
			t.Fatal(err)
		}
		var acks atomic.Int64
		for s := uint64(1); s <= 3; s++ {
			if err := f.Ingest(context.Background(), "r1", &quarryv1.Report{Seq: s}, func(uint64) { acks.Add(1) }); err != nil {
				t.Fatal(err)
			}
		}
		if st := f.Stats(); st.Batches != 0 {
			t.Fatalf("committed before the delay: %+v", st)
		}
		f.Close()
		if acks.Load() != 3 {
			t.Fatalf("%d of 3 acknowledged by close", acks.Load())
		}
		f2, err := Open(db, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer f2.Close()
		if r, _ := f2.Rig("r1"); r.LastSeq != 3 {
			t.Fatalf("after close the file holds seq %d, want 3", r.LastSeq)
		}
	})
}

// TestHistoryRollupsKeepEachReportsOwnParts: the committer builds every
// rollup in the same memory; a report with fewer GPUs, no host or no miner
// after a fuller one must not inherit the fuller one's parts.
func TestHistoryRollupsKeepEachReportsOwnParts(t *testing.T) {
	f, _ := openFleet(t, filepath.Join(t.TempDir(), "q.db"), Options{})
	defer f.Close()
	if err := f.RegisterRig("r1", "one", "h"); err != nil {
		t.Fatal(err)
	}
	temp := func(v float64) *float64 { return &v }
	gpus := func(n int, c float64) []*quarryv1.GPUStats {
		var out []*quarryv1.GPUStats
		for i := range n {
			out = append(out, &quarryv1.GPUStats{Index: uint32(i), BusId: fmt.Sprintf("0000:%02x:00.0", i+1), TemperatureC: temp(c + float64(i)), Name: "not kept"})
		}
		return out
	}
	reports := []*quarryv1.Report{
		{Seq: 1, Host: &quarryv1.HostStats{CpuPercent: 40, Load5: 9}, Gpus: gpus(6, 60), Miners: []*quarryv1.MinerStats{{Miner: "lolminer", Coin: "etc", Hashrate: 3e8, Pool: "not kept"}}},
		{Seq: 2, Gpus: gpus(4, 70)},
		{Seq: 3, Host: &quarryv1.HostStats{CpuPercent: 7}},
	}
	for _, r := range reports {
		var wg sync.WaitGroup
		wg.Add(1)
		if err := f.Ingest(context.Background(), "r1", r, func(uint64) { wg.Done() }); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
	hist, err := f.History("r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 {
		t.Fatalf("%d history records, want 3", len(hist))
	}
	h1, h2, h3 := hist[0], hist[1], hist[2]
	if len(h1.Gpus) != 6 || h1.Gpus[5].GetTemperatureC() != 65 || h1.Gpus[0].Name != "" || h1.Host.GetCpuPercent() != 40 || h1.Host.GetLoad5() != 0 ||
		len(h1.Miners) != 1 || h1.Miners[0].Hashrate != 3e8 || h1.Miners[0].Pool != "" {
		t.Errorf("first rollup: %v", h1)
	}
	if len(h2.Gpus) != 4 || h2.Gpus[3].GetTemperatureC() != 73 || h2.Host != nil || len(h2.Miners) != 0 {
		t.Errorf("second rollup kept another report's parts: %v", h2)
	}
	if len(h3.Gpus) != 0 || h3.Host.GetCpuPercent() != 7 || len(h3.Miners) != 0 {
		t.Errorf("third rollup kept another report's parts: %v", h3)
	}
}

// BenchmarkIngestSteadyHistory commits reports for 1,000 rigs whose
// history windows are full, so each report also ages out the oldest.
func BenchmarkIngestSteadyHistory(b *testing.B) {
	db := testsupport.OpenStore(b, filepath.Join(b.TempDir(), "q.db"), Buckets...)
	f, _ := Open(db, Options{HistoryLen: 32})
	defer f.Close()
	const rigs = 1000
	seq := make([]uint64, rigs)
	report := func(r int, wg *sync.WaitGroup) {
		seq[r]++
		wg.Add(1)
		_ = f.Ingest(context.Background(), rigName(r), &quarryv1.Report{Seq: seq[r], Host: &quarryv1.HostStats{CpuPercent: 5},
			Gpus: []*quarryv1.GPUStats{{Index: 0, BusId: "0000:01:00.0"}, {Index: 1, BusId: "0000:02:00.0"}}}, func(uint64) { wg.Done() })
	}
	var wg sync.WaitGroup
	for i := range rigs {
		_ = f.RegisterRig(rigName(i), "", "")
	}
	for range 40 {
		for r := range rigs {
			report(r, &wg)
		}
	}
	wg.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		report(i%rigs, &wg)
	}
	wg.Wait()
}
