package link

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

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
