package fleet

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

func TestAdminTokenLifecycle(t *testing.T) {
	clock := testsupport.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	f, db := openFleet(t, filepath.Join(t.TempDir(), "f.db"), Options{Now: clock.Now})
	defer db.Close()
	defer f.Close()

	tok, exp, err := f.IssueAdminToken("alice", RoleOperator, 0, "root")
	if err != nil {
		t.Fatal(err)
	}
	if want := clock.Now().Add(DefaultAdminTokenTTL); !exp.Equal(want) {
		t.Fatalf("default expiry %s, want %s", exp, want)
	}
	if _, _, err := f.IssueAdminToken("alice", RoleAdmin, time.Hour, "root"); !errors.Is(err, ErrAdminTokenExists) {
		t.Fatalf("second token of one name: %v", err)
	}
	for _, bad := range []string{"", "a\x1b]0;x\x07", strings.Repeat("n", 129)} {
		if _, _, err := f.IssueAdminToken(bad, RoleViewer, 0, "root"); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	if name, role, err := f.CheckAdminToken(tok); err != nil || name != "alice" || role != RoleOperator {
		t.Fatalf("check: %s %s %v", name, role, err)
	}
	ts, err := f.AdminTokens()
	if err != nil || len(ts) != 1 || ts[0].Name != "alice" || ts[0].CreatedBy != "root" || !ts[0].LastUsed.Equal(clock.Now()) || !ts[0].Expires.Equal(exp) {
		t.Fatalf("list: %+v %v", ts, err)
	}

	// Last use is written at most once a minute.
	used := ts[0].LastUsed
	clock.Advance(30 * time.Second)
	_, _, _ = f.CheckAdminToken(tok)
	if ts, _ := f.AdminTokens(); !ts[0].LastUsed.Equal(used) {
		t.Fatalf("last use rewritten within a minute: %s", ts[0].LastUsed)
	}
	clock.Advance(31 * time.Second)
	_, _, _ = f.CheckAdminToken(tok)
	if ts, _ := f.AdminTokens(); !ts[0].LastUsed.Equal(clock.Now()) {
		t.Fatalf("last use not updated after a minute: %s", ts[0].LastUsed)
	}

	// Expiry and revocation take effect on the next check.
	short, _, err := f.IssueAdminToken("bob", RoleViewer, time.Hour, "root")
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if _, _, err := f.CheckAdminToken(short); !errors.Is(err, ErrAdminTokenExpired) {
		t.Fatalf("expired token: %v", err)
	}
	if err := f.RevokeAdminToken("alice"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.CheckAdminToken(tok); !errors.Is(err, ErrAdminTokenInvalid) {
		t.Fatalf("revoked token: %v", err)
	}
	if err := f.RevokeAdminToken("alice"); !errors.Is(err, ErrAdminTokenUnknown) {
		t.Fatalf("revoking twice: %v", err)
	}
	// The name is free again.
	if _, _, err := f.IssueAdminToken("alice", RoleViewer, 0, "root"); err != nil {
		t.Fatalf("reuse a revoked name: %v", err)
	}
}

// A token stored before tokens expired keeps working after an upgrade and
// gets the default lifetime from then.
func TestAdminTokenMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.db")
	clock := testsupport.NewClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	f, db := openFleet(t, path, Options{Now: clock.Now})
	tok := adminTokenPrefix + "00112233445566778899aabbccddeeff0011223344556677"
	old, _ := json.Marshal(map[string]string{"name": "legacy", "role": RoleAdmin})
	if err := db.Update(func(tx *store.Tx) error { return tx.Bucket([]byte(bucketAdmins)).Put(bearerKey(tok), old) }); err != nil {
		t.Fatal(err)
	}
	f.Close()
	db.Close()

	f, db = openFleet(t, path, Options{Now: clock.Now})
	defer db.Close()
	defer f.Close()
	if name, _, err := f.CheckAdminToken(tok); err != nil || name != "legacy" {
		t.Fatalf("legacy token after upgrade: %s %v", name, err)
	}
	ts, _ := f.AdminTokens()
	if len(ts) != 1 || !ts[0].Expires.Equal(clock.Now().Add(DefaultAdminTokenTTL)) {
		t.Fatalf("legacy token expiry: %+v", ts)
	}
	clock.Advance(DefaultAdminTokenTTL)
	if _, _, err := f.CheckAdminToken(tok); !errors.Is(err, ErrAdminTokenExpired) {
		t.Fatalf("legacy token after its default lifetime: %v", err)
	}
}
