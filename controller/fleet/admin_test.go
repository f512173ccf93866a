package fleet

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/pki"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestJoinTokenListAndRevoke(t *testing.T) {
	clock := testsupport.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	f, db := openFleet(t, filepath.Join(t.TempDir(), "f.db"), Options{Now: clock.Now})
	defer db.Close()
	defer f.Close()
	const ca = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

	short, _, err := f.CreateToken(ca, time.Hour, 1, "rig-a", "alice")
	if err != nil {
		t.Fatal(err)
	}
	long, _, err := f.CreateToken(ca, 2*time.Hour, 3, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	ts, err := f.JoinTokens()
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 {
		t.Fatalf("listed %d tokens, want 2: %+v", len(ts), ts)
	}
	pl, _ := pki.ParseToken(long)
	ps, _ := pki.ParseToken(short)
	if ts[0].ID != pl.ID || ts[0].UsesLeft != 3 || ts[0].CreatedBy != "bob" || !ts[0].Expires.Equal(clock.Now().Add(2*time.Hour)) {
		t.Errorf("first (latest expiry) token %+v", ts[0])
	}
	if ts[1].ID != ps.ID || ts[1].RigName != "rig-a" || ts[1].UsesLeft != 1 {
		t.Errorf("second token %+v", ts[1])
	}
	for _, tk := range ts {
		for _, secret := range []string{pl.Secret, ps.Secret} {
			if strings.Contains(fmt.Sprintf("%+v", tk), secret) {
				t.Fatalf("listing holds a token secret: %+v", tk)
			}
		}
	}

	if err := f.RevokeToken(ps.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Redeem(short, ca, "host"); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("enrolment with a revoked token: %v, want %v", err, ErrTokenUnknown)
	}
	if f.TokenUsable(short) {
		t.Error("a revoked token is usable")
	}
	if _, _, err := f.Redeem(long, ca, "host"); err != nil {
		t.Fatalf("the other token stopped working: %v", err)
	}
	for _, id := range []string{ps.ID, "", "nope"} {
		if err := f.RevokeToken(id); !errors.Is(err, ErrJoinTokenUnknown) {
			t.Errorf("revoke %q: %v, want %v", id, err, ErrJoinTokenUnknown)
		}
	}
	if ts, _ := f.JoinTokens(); len(ts) != 1 || ts[0].UsesLeft != 2 {
		t.Errorf("after revoke and one use: %+v", ts)
	}
}

func TestAuditQueryFilters(t *testing.T) {
	clock := testsupport.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	f, db := openFleet(t, filepath.Join(t.TempDir(), "f.db"), Options{Now: clock.Now})
	defer db.Close()
	defer f.Close()
	start := clock.Now()
	// 30 entries a minute apart: alice creates tokens, bob revokes rigs,
	// carol reads the log, in turn.
	for i := range 30 {
		e := &quarryv1.AuditEntry{Role: RoleAdmin, Result: "ok"}
		switch i % 3 {
		case 0:
			e.Who, e.Action, e.Target = "alice", "token create", fmt.Sprintf("rig-%02d", i)
		case 1:
			e.Who, e.Action, e.Target = "bob", "rig revoke", fmt.Sprintf("rig-%02d", i)
		case 2:
			e.Who, e.Action, e.Target = "carol", "audit list", ""
		}
		if err := f.Audit(e); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
	}
	at := func(min int) time.Time { return start.Add(time.Duration(min) * time.Minute) }

	cases := []struct {
		name string
		q    AuditFilter
		want []string // targets or callers, oldest first
	}{
		{"who", AuditFilter{Who: "ALI", Since: at(20)}, []string{"alice/rig-21", "alice/rig-24", "alice/rig-27"}},
		{"action", AuditFilter{Action: "revoke", Until: at(7)}, []string{"bob/rig-01", "bob/rig-04", "bob/rig-07"}},
		{"target", AuditFilter{Target: "rig-1"}, []string{"bob/rig-10", "alice/rig-12", "bob/rig-13", "alice/rig-15", "bob/rig-16", "alice/rig-18", "bob/rig-19"}},
		{"range", AuditFilter{Since: at(10), Until: at(12)}, []string{"bob/rig-10", "carol/", "alice/rig-12"}},
		{"all together", AuditFilter{Who: "bob", Action: "rig", Target: "2", Since: at(20), Until: at(25)}, []string{"bob/rig-22", "bob/rig-25"}},
		{"none", AuditFilter{Who: "mallory"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Pages of two: every page holds only matches, and the
			// pages together hold all of them in order.
			var got []string
			token := ""
			for pages := 0; ; pages++ {
				es, next, err := f.AuditQuery(tc.q, 2, token)
				if err != nil {
					t.Fatal(err)
				}
				if len(es) > 2 || pages > 20 {
					t.Fatalf("page of %d after %d pages", len(es), pages)
				}
				var page []string
				for _, e := range es {
					page = append(page, e.Who+"/"+e.Target)
				}
				got = append(page, got...)
				if next == "" {
					break
				}
				token = next
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	for _, bad := range []AuditFilter{
		{Who: strings.Repeat("w", maxAuditFilter+1)},
		{Since: at(10), Until: at(5)},
	} {
		if _, _, err := f.AuditQuery(bad, 10, ""); !errors.Is(err, ErrBadAuditFilter) {
			t.Errorf("filter %.40v: %v, want %v", bad, err, ErrBadAuditFilter)
		}
	}
}
