package snapshot

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/testsupport"
)

func TestStagerRefusesMoreThanItsLimit(t *testing.T) {
	dir := t.TempDir()
	st, err := NewStager(filepath.Join(dir, "quarry.db"), nil, nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(make([]byte, 600)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(make([]byte, 600)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("second write: %v, want ErrTooLarge", err)
	}
	st.Abort()
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("an aborted upload left %v", left)
	}
}

func TestSaveStopsWhenTheCallerGoesAway(t *testing.T) {
	db := testsupport.OpenStore(t, filepath.Join(t.TempDir(), "q.db"), "rigs")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if _, err := Save(ctx, db, &buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("Save with a gone caller: %v", err)
	}
	sum, err := Save(context.Background(), db, &buf)
	if err != nil || sum.Size != int64(buf.Len()) || len(sum.SHA256) != 64 {
		t.Fatalf("Save: %+v %v (%d bytes written)", sum, err, buf.Len())
	}
}

func TestApplyStagedKeepsTheReplacedDatabase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "quarry.db")
	log := slog.New(slog.DiscardHandler)
	if applied, _, err := ApplyStaged(path, time.Now(), log); applied || err != nil {
		t.Fatalf("nothing staged: applied %v, %v", applied, err)
	}
	for name, body := range map[string]string{"quarry.db": "old", "quarry.db" + StagedSuffix: "new"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	applied, kept, err := ApplyStaged(path, time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC), log)
	if !applied || err != nil || filepath.Base(kept) != "quarry.db.before-restore-20261206T080000Z" {
		t.Fatalf("applied %v kept %q err %v", applied, kept, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("database holds %q after the restore", b)
	}
	if b, _ := os.ReadFile(kept); string(b) != "old" {
		t.Fatalf("kept database holds %q", b)
	}
	if _, err := os.Stat(path + StagedSuffix); !os.IsNotExist(err) {
		t.Fatalf("staged file still there: %v", err)
	}
}
