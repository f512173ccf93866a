package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/ctl"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/snapshot"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// quarryctl runs the real command tree against tc with token.
func quarryctl(t *testing.T, tc *testController, token string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := ctl.NewRoot(&out, &errb)
	root.SetArgs(append([]string{"--controller", tc.GRPCAddr(), "--token", token, "--ca", filepath.Join(tc.dir, "ca.crt"), "--config", filepath.Join(t.TempDir(), "none.yaml")}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String() + errb.String(), err
}

func localAdmin(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestSnapshotSaveAndRestore takes a snapshot while a rig reports, then
// restores it into a fresh controller: the same rig, reports and tokens
// come back, and the database it replaced is kept.
func TestSnapshotSaveAndRestore(t *testing.T) {
	tc := startTestController(t, func(c *Config) { c.Gossip.Enabled = false })
	a := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	a.run(t, tc, nil)
	a.report(t, 5)
	rigID := a.id.RigID()
	eventually(t, "five reports committed", func() bool {
		r, err := tc.Fleet().Rig(rigID)
		return err == nil && r.Reports >= 5
	})
	opTok, err := tc.Fleet().CreateAdminToken("night-shift", fleet.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	viewTok, err := tc.Fleet().CreateAdminToken("wall", fleet.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}

	// Reports keep arriving while the copy is taken: the copy is one
	// consistent transaction, not a file copied under writes.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond) // a rig reporting fast, not a wait
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_, _ = a.buf.Append(&quarryv1.Report{TimeUnixNano: time.Now().UnixNano(), Host: &quarryv1.HostStats{CpuPercent: 12}})
			}
		}
	})
	file := filepath.Join(t.TempDir(), "quarry.snap")
	out, err := quarryctl(t, tc, localAdmin(t, tc.dir), "operator", "snapshot", "save", file)
	close(stop)
	wg.Wait()
	if err != nil || !strings.Contains(out, "saved "+file) {
		t.Fatalf("snapshot save: %v\n%s", err, out)
	}
	var savedReports uint64
	db, err := bolt.Open(file, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("the snapshot is not a bbolt file: %v", err)
	}
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		if tx.Bucket([]byte("rigs")).Get([]byte(rigID)) == nil {
			t.Errorf("the snapshot lacks rig %s", rigID)
		}
		return nil
	}); err != nil {
		t.Fatalf("snapshot consistency: %v", err)
	}
	db.Close()

	// Lower roles may neither save nor restore.
	for _, tok := range []string{opTok, viewTok} {
		denied := filepath.Join(t.TempDir(), "denied.snap")
		if out, err := quarryctl(t, tc, tok, "operator", "snapshot", "save", denied); err == nil || !strings.Contains(err.Error(), "needs role admin") {
			t.Fatalf("save by a lower role: %v\n%s", err, out)
		}
		if _, err := os.Stat(denied); !os.IsNotExist(err) {
			t.Fatalf("a refused save left a file: %v", err)
		}
		if out, err := quarryctl(t, tc, tok, "operator", "snapshot", "restore", file); err == nil || !strings.Contains(err.Error(), "needs role admin") {
			t.Fatalf("restore by a lower role: %v\n%s", err, out)
		}
	}
	r, _ := tc.Fleet().Rig(rigID)
	savedReports = r.Reports

	// A fresh controller, given the first one's CA, restores the
	// snapshot at its next start.
	dir2 := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir2, PKIDir), os.DirFS(filepath.Join(tc.dir, PKIDir))); err != nil {
		t.Fatal(err)
	}
	tc2 := startTestController(t, func(c *Config) { c.Gossip.Enabled = false; c.DataDir = dir2 })
	if _, err := tc2.Fleet().Rig(rigID); err == nil {
		t.Fatal("the fresh controller already knows the rig")
	}
	out, err = quarryctl(t, tc2, localAdmin(t, dir2), "operator", "snapshot", "restore", file)
	if err != nil || !strings.Contains(out, "1 rigs") || !strings.Contains(out, "Restart the controller") {
		t.Fatalf("snapshot restore: %v\n%s", err, out)
	}
	tc2.stop()
	tc3 := startTestController(t, func(c *Config) { c.Gossip.Enabled = false; c.DataDir = dir2 })
	got, err := tc3.Fleet().Rig(rigID)
	if err != nil {
		t.Fatalf("restored controller lacks the rig: %v", err)
	}
	if got.Reports < 5 || got.Reports > savedReports {
		t.Fatalf("restored rig has %d reports; the snapshot was taken between 5 and %d", got.Reports, savedReports)
	}
	who, err := adminConn(t, tc3, opTok).WhoAmI(ctx(t), &quarryv1.WhoAmIRequest{})
	if err != nil || who.Who != "night-shift" {
		t.Fatalf("a token of the first controller on the restored one: %v %v", who, err)
	}
	kept, _ := filepath.Glob(filepath.Join(dir2, DBFile+".before-restore-*"))
	if len(kept) != 1 {
		t.Fatalf("replaced database kept as %v, want one file", kept)
	}
	// The save is audited where it was taken (after the copy, so not in
	// it); the restore where it was staged, which the restore replaced.
	var saved, restored bool
	log, _ := tc.Fleet().AuditLog(time.Time{}, 0)
	for _, e := range log {
		saved = saved || (e.Action == "snapshot save" && e.Who == LocalAdminName && e.Result == "ok" && strings.Contains(e.Detail, "sha256="))
	}
	kdb, err := bolt.Open(kept[0], 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = kdb.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("audit")).ForEach(func(_, v []byte) error {
			restored = restored || bytes.Contains(v, []byte("snapshot restore"))
			return nil
		})
	})
	kdb.Close()
	applied := false
	log3, _ := tc3.Fleet().AuditLog(time.Time{}, 0)
	for _, e := range log3 {
		applied = applied || (e.Action == "snapshot restore applied" && strings.Contains(e.Detail, filepath.Base(kept[0])))
	}
	if !saved || !restored || !applied {
		t.Fatalf("audit: save %v, restore (in the replaced database) %v, applied at start %v", saved, restored, applied)
	}
}

// TestSnapshotRestoreRefusesBadUploads: nothing is staged from an upload
// that is damaged, not a database, or not a controller's database.
func TestSnapshotRestoreRefusesBadUploads(t *testing.T) {
	tc := startTestController(t, func(c *Config) { c.Gossip.Enabled = false })
	client := quarryv1.NewOperatorServiceClient(adminConnRaw(t, tc, localAdmin(t, tc.dir)))
	var good bytes.Buffer
	if _, err := snapshot.Save(context.Background(), tc.db, &good); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(t.TempDir(), "other.db")
	odb, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := odb.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("unrelated")); return err }); err != nil {
		t.Fatal(err)
	}
	odb.Close()
	other, err := os.ReadFile(foreign)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	for _, c := range []struct {
		name       string
		data       []byte
		size       int64
		sha        string
		noLast     bool
		wantDetail string
	}{
		{name: "garbage", data: bytes.Repeat([]byte("not bbolt"), 3000), wantDetail: "not a bbolt database"},
		{name: "first half", data: good.Bytes()[:good.Len()/2], wantDetail: "invalid snapshot"},
		{name: "wrong sha256", data: good.Bytes(), sha: strings.Repeat("0", 64), wantDetail: "sender sent"},
		{name: "wrong size", data: good.Bytes(), size: 1, wantDetail: "sender sent"},
		{name: "another program's bbolt file", data: other, wantDetail: "not a Quarry controller database"},
		{name: "no closing message", data: good.Bytes(), noLast: true, wantDetail: "without its closing message"},
	} {
		t.Run(c.name, func(t *testing.T) {
			stream, err := client.RestoreSnapshot(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			for b := c.data; len(b) > 0; {
				k := min(len(b), 64<<10)
				if err := stream.Send(&quarryv1.RestoreSnapshotRequest{Data: b[:k]}); err != nil {
					break // refused early; the reason comes with CloseAndRecv
				}
				b = b[k:]
			}
			if !c.noLast {
				size, sha := int64(len(c.data)), sum(c.data)
				if c.size != 0 {
					size = c.size
				}
				if c.sha != "" {
					sha = c.sha
				}
				_ = stream.Send(&quarryv1.RestoreSnapshotRequest{Last: true, Size: size, Sha256: sha})
			}
			_, err = stream.CloseAndRecv()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.wantDetail) {
				t.Fatalf("got %v, want InvalidArgument mentioning %q", err, c.wantDetail)
			}
			left, _ := filepath.Glob(filepath.Join(tc.dir, DBFile+".*"))
			if len(left) != 0 {
				t.Fatalf("a refused upload left %v", left)
			}
		})
	}
}
