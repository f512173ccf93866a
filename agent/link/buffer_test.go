package link

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"

	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func openBuffer(t *testing.T, path string, max int) (*Buffer, *bolt.DB) {
	t.Helper()
	db := testsupport.OpenDB(t, path)
	b, err := OpenBuffer(db, max, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return b, db
}

func TestBufferSequencesSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	b, db := openBuffer(t, path, 100)
	for i := 1; i <= 5; i++ {
		seq, err := b.Append(&quarryv1.Report{})
		if err != nil || seq != uint64(i) {
			t.Fatalf("append %d: seq %d err %v", i, seq, err)
		}
	}
	if err := b.AckUpTo(3); err != nil {
		t.Fatal(err)
	}
	db.Close()

	b, db = openBuffer(t, path, 100)
	defer db.Close()
	if b.Len() != 2 || b.Acked() != 3 {
		t.Fatalf("after restart: len %d acked %d", b.Len(), b.Acked())
	}
	seq, _ := b.Append(&quarryv1.Report{})
	if seq != 6 {
		t.Fatalf("sequence restarted at %d, want 6", seq)
	}
	got, err := b.Range(1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Seq != 4 || got[2].Seq != 6 {
		t.Fatalf("range %v", got)
	}
}

func TestBufferDropsOldestWhenFullAndCounts(t *testing.T) {
	b, db := openBuffer(t, filepath.Join(t.TempDir(), "a.db"), 3)
	defer db.Close()
	for range 5 {
		if _, err := b.Append(&quarryv1.Report{}); err != nil {
			t.Fatal(err)
		}
	}
	if b.Len() != 3 || b.Dropped() != 2 {
		t.Fatalf("len %d dropped %d; want 3 and 2", b.Len(), b.Dropped())
	}
	got, _ := b.Range(0, 10)
	if got[0].Seq != 3 {
		t.Fatalf("oldest kept is %d, want 3", got[0].Seq)
	}
}

// Events wait durably, survive a restart, and travel in exactly one
// report each, at most eventsPerReport at a time; a full queue drops the
// oldest and the next report says so.
func TestEventsAreDurableAndSentOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	b, db := openBuffer(t, path, 100)
	for i := range eventsPerReport + 3 {
		if err := b.AddEvent(&quarryv1.Event{Kind: "k", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	b, db = openBuffer(t, path, 100)
	if n := b.PendingEvents(); n != eventsPerReport+3 {
		t.Fatalf("%d events pending after a restart, want %d", n, eventsPerReport+3)
	}
	own := &quarryv1.Report{Events: []*quarryv1.Event{{Kind: "own"}}}
	if _, err := b.Append(own); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(&quarryv1.Report{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(&quarryv1.Report{}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	b, db = openBuffer(t, path, 100)
	defer db.Close()
	got, err := b.Range(1, 10)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, r := range got {
		for _, e := range r.Events {
			msgs = append(msgs, e.Message)
		}
	}
	if len(got) != 3 || len(got[0].Events) != eventsPerReport || got[0].Events[0].Kind != "own" || len(got[1].Events) != 4 || len(got[2].Events) != 0 {
		t.Fatalf("events per report %d/%d/%d", len(got[0].Events), len(got[1].Events), len(got[2].Events))
	}
	for i, m := range msgs[1:] {
		if m != fmt.Sprint(i) {
			t.Fatalf("event %d is %q: events lost, repeated or reordered: %q", i, m, msgs)
		}
	}
	if n := b.PendingEvents(); n != 0 {
		t.Fatalf("%d events still pending", n)
	}

	for i := range maxPendingEvents + 2 {
		if err := b.AddEvent(&quarryv1.Event{Kind: "flood", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	r := &quarryv1.Report{}
	if _, err := b.Append(r); err != nil {
		t.Fatal(err)
	}
	if r.Events[0].Kind != "events_dropped" || !strings.Contains(r.Events[0].Message, "2 older events") || r.Events[1].Message != "2" {
		t.Fatalf("after a flood the report starts %v %v", r.Events[0], r.Events[1])
	}
}

func TestCommandsRunOnce(t *testing.T) {
	b, db := openBuffer(t, filepath.Join(t.TempDir(), "a.db"), 3)
	defer db.Close()
	_, seen, err := b.BeginCommand("c1")
	if err != nil || seen {
		t.Fatalf("first delivery seen=%v err=%v", seen, err)
	}
	// Redelivered before a result was stored: the agent died mid-command.
	res, seen, _ := b.BeginCommand("c1")
	if !seen || res.Status != quarryv1.CommandStatus_COMMAND_STATUS_FAILED {
		t.Fatalf("interrupted command: seen=%v res=%v", seen, res)
	}
	if err := b.FinishCommand(&quarryv1.CommandResult{CommandId: "c1", Status: quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, Output: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	res, seen, _ = b.BeginCommand("c1")
	if !seen || string(res.Output) != "ok" {
		t.Fatalf("redelivery: seen=%v res=%v", seen, res)
	}
	if err := b.PruneCommands(-time.Second); err != nil {
		t.Fatal(err)
	}
	if _, seen, _ = b.BeginCommand("c1"); seen {
		t.Fatal("pruned command still remembered")
	}
}

func TestBackoffIsBoundedAndJittered(t *testing.T) {
	base, maxWait := 500*time.Millisecond, 30*time.Second
	if d := Backoff(1, base, maxWait, 0); d != base/4 {
		t.Fatalf("attempt 1 with r=0: %s", d)
	}
	if d := Backoff(3, base, maxWait, 0.999); d < 1900*time.Millisecond || d > 2200*time.Millisecond {
		t.Fatalf("attempt 3 with r≈1: %s, want about 2s", d)
	}
	if d := Backoff(50, base, maxWait, 0.999); d > maxWait+base/4 {
		t.Fatalf("attempt 50: %s exceeds the cap", d)
	}
}

func BenchmarkAppend(b *testing.B) {
	buf, db := openBufferB(b)
	defer db.Close()
	r := &quarryv1.Report{Host: &quarryv1.HostStats{CpuPercent: 10}}
	for b.Loop() {
		if _, err := buf.Append(r); err != nil {
			b.Fatal(err)
		}
	}
}

func openBufferB(b *testing.B) (*Buffer, *bolt.DB) {
	db, err := store.Open(filepath.Join(b.TempDir(), "a.db"))
	if err != nil {
		b.Fatal(err)
	}
	buf, err := OpenBuffer(db, 1<<20, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	return buf, db
}

// Buffers sharing one database batch their command records; each still
// remembers its own commands, and a batched transaction that runs a
// record again must not report a first delivery as seen.
func TestSharedBuffersRunCommandsOnce(t *testing.T) {
	db := testsupport.OpenDB(t, filepath.Join(t.TempDir(), "shared.db"))
	defer db.Close()
	const n = 40
	bufs := make([]*Buffer, n)
	for i := range bufs {
		b, err := OpenBufferPrefixed(db, fmt.Sprintf("rig-%d/", i), 3, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		bufs[i] = b
	}
	each := func(f func(i int, b *Buffer) error) {
		t.Helper()
		var g errgroup.Group
		for i, b := range bufs {
			g.Go(func() error { return f(i, b) })
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	each(func(i int, b *Buffer) error {
		if _, seen, err := b.BeginCommand("c1"); err != nil || seen {
			return fmt.Errorf("buffer %d: first delivery seen=%v err=%v", i, seen, err)
		}
		return nil
	})
	each(func(i int, b *Buffer) error {
		if res, seen, err := b.BeginCommand("c1"); err != nil || !seen || res.Status != quarryv1.CommandStatus_COMMAND_STATUS_FAILED {
			return fmt.Errorf("buffer %d: interrupted command seen=%v res=%v err=%v", i, seen, res, err)
		}
		return b.FinishCommand(&quarryv1.CommandResult{CommandId: "c1", Status: quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, Output: fmt.Appendf(nil, "ok %d", i)})
	})
	each(func(i int, b *Buffer) error {
		res, seen, err := b.BeginCommand("c1")
		if err != nil || !seen || string(res.Output) != fmt.Sprintf("ok %d", i) {
			return fmt.Errorf("buffer %d: redelivery seen=%v res=%v err=%v, want its own result", i, seen, res, err)
		}
		if _, seen, err := b.BeginCommand(fmt.Sprintf("only-%d", i)); err != nil || seen {
			return fmt.Errorf("buffer %d: its own new command seen=%v err=%v", i, seen, err)
		}
		return nil
	})
	// Each buffer knows only its own commands.
	if _, seen, err := bufs[0].BeginCommand("only-1"); err != nil || seen {
		t.Fatalf("buffer 0 saw buffer 1's command: seen=%v err=%v", seen, err)
	}
	testsupport.CheckDB(t, db)
}
