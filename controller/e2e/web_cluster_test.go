package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// freePortNumber is a free local port as a bare number, for the settings
// that take one.
func freePortNumber(t *testing.T) string {
	t.Helper()
	return localPorts.Port(t, "127.0.0.1")
}

// shows waits until the element's text contains want, hidden or not. The
// page redraws its cards every few seconds while the group changes, so
// the element is looked up and read in one script on every try.
func shows(sel, want string) chromedp.Action[chromedp.Void] {
	return waitJS(fmt.Sprintf(`(document.querySelector(%q)?.textContent || "").includes(%q)`, sel, want))
}

// The Controllers page: a controller running alone says so; the same data
// dir started as a one-member group shows ctl-1 leading with its term and
// log indexes, and follows the log. A second member joins; a viewer and an
// operator see it but get no Remove button, and the bridge refuses their
// calls however they are made; the admin removes it from the page.
func TestControllersPageInBrowser(t *testing.T) {
	dir := t.TempDir()
	viewer := viewerToken(t, dir)
	grpcAddr, httpAddr := freePort(t), freePort(t)
	alone := startController(t, dir, grpcAddr, httpAddr, "-gossip-port", freePortNumber(t))
	operator := adminToken(t, alone, "night-shift", "operator")
	admin := readAdminToken(t, dir)
	b := openBrowser(t, dir, httpAddr, 4*time.Minute)
	shots := screenshotDir(t)

	b.signIn(admin, "local-admin · admin")
	b.do("alone",
		clickIn(`#nav a[data-page="controllers"]`),
		waitJS(`location.hash === "#/controllers"`),
		shows("#controllers-alone", "This controller runs alone (no cluster section)"),
	)
	if n := evalIn[int](b, "alone tables", `document.querySelectorAll("#page-controllers table, #page-controllers button").length`); n != 0 {
		t.Errorf("a controller running alone shows %d group tables or buttons", n)
	}
	alone.stop()

	// The same data dir becomes the first member of a group, as the
	// README has an operator do it.
	cfg := filepath.Join(dir, "controller.yaml")
	serf := freePort(t)
	yaml := fmt.Sprintf("gossip: {bind_port: %s}\ncluster: {node_id: ctl-1, raft_addr: %s, serf_addr: %s, bootstrap_expect: 1}\n",
		freePortNumber(t), freePort(t), serf)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	member := startController(t, dir, grpcAddr, httpAddr, "-config", cfg)

	const leaderState = `#controllers-table tr[data-peer="ctl-1"] [data-k="state"]`
	b.signIn(admin, "local-admin · admin")
	b.do("group",
		chromedp.Navigate(b.base+"#/controllers"),
		shows(`[data-k="leader"]`, "ctl-1"),
		shows(leaderState, "leader"),
		shows(`#controllers-table tr[data-peer="ctl-1"] [data-k="alive"]`, "alive"),
		shows(`#controllers-table tr[data-peer="ctl-1"] [data-k="voter"]`, "yes"),
		shows(`[data-k="quorum"]`, "1 of 1 voters alive"),
	)
	for _, k := range []string{"term", "last-index", "commit-index"} {
		text := evalIn[string](b, k, `document.querySelector('[data-k="`+k+`"]').textContent`)
		if n, err := strconv.ParseUint(text, 10, 64); err != nil || n == 0 {
			t.Errorf("%s shows %q, want a number above 0", k, text)
		}
	}
	row := evalIn[[]string](b, "leader row", `[...document.querySelectorAll('#controllers-table tr[data-peer="ctl-1"] td')].map((td) => td.textContent)`)
	if len(row) < 8 || row[1] == "" || row[2] != grpcAddr || row[6] == "0" || row[6] == "unknown" || row[7] != "0" {
		t.Errorf("leader row %q: want its raft address, gRPC address %s, its applied index and no lag", row, grpcAddr)
	}
	// An admin may remove members, but not the one leading.
	if n := evalIn[int](b, "admin buttons", `document.querySelectorAll("#controllers-table button").length`); n != 0 {
		t.Errorf("an admin gets %d Remove buttons in a group of one: the leader cannot remove itself", n)
	}
	if got := b.rpcStatus("ClusterService/RemovePeer", `{"id": "ctl-1"}`); got != 409 {
		t.Errorf("admin removing the leader: HTTP %d, want 409", got)
	}
	if got := b.rpcStatus("ClusterService/RemovePeer", `{"id": "ctl-9"}`); got != 404 {
		t.Errorf("admin removing a member that is not there: HTTP %d, want 404", got)
	}
	// The page follows the group by itself: a write through the log (a
	// new token) shows up as a later last index without a reload.
	last := evalIn[string](b, "last index", `document.querySelector('[data-k="last-index"]').textContent`)
	adminToken(t, member, "wall-two", "viewer")
	b.do("follows the log", waitJS(`BigInt(document.querySelector('[data-k="last-index"]')?.textContent || "0") > `+last+`n`))

	// A second member joins, sharing the CA and the gossip keys as the
	// README says members must.
	second := filepath.Join(dir, "ctl-2")
	testsupport.CopyTree(t, filepath.Join(dir, "quarry-data", "pki"), filepath.Join(second, "quarry-data", "pki"))
	for _, f := range []string{"gossip-keyring.json", "gossip-event.key"} {
		k, err := os.ReadFile(filepath.Join(dir, "quarry-data", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(second, "quarry-data", f), k, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg2 := filepath.Join(second, "controller.yaml")
	yaml2 := fmt.Sprintf("gossip: {bind_port: %s}\ncluster: {node_id: ctl-2, raft_addr: %s, serf_addr: %s, bootstrap_expect: 0, join: [%s]}\n",
		freePortNumber(t), freePort(t), freePort(t), serf)
	if err := os.WriteFile(cfg2, []byte(yaml2), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, second, "quarry-controller", "-grpc-addr", freePort(t), "-http-addr", freePort(t), "-report-interval", "1s", "-config", cfg2)
	testsupport.Poll(t, "ctl-2 a live voter", 60*time.Second, func() (bool, string) {
		out, err := member.ctl(t, "operator", "raft", "list-peers", "-o", "json")
		if err != nil {
			return false, out
		}
		p := &quarryv1.ListPeersResponse{}
		if err := protojson.Unmarshal([]byte(out), p); err != nil {
			return false, out
		}
		return len(p.Peers) == 2 && p.Peers[1].Id == "ctl-2" && p.Peers[1].Alive && p.Peers[1].Voter, out
	})
	const follower = `#controllers-table tr[data-peer="ctl-2"]`

	// With a follower in the list, a viewer and an operator still get
	// no Remove button, and the bridge refuses their calls.
	for _, who := range []struct{ token, name string }{{viewer, "wall-screen · viewer"}, {operator, "night-shift · operator"}} {
		b.signIn(who.token, who.name)
		b.do(who.name,
			chromedp.Navigate(b.base+"#/controllers"),
			shows(leaderState, "leader"),
			shows(follower+` [data-k="state"]`, "follower"),
			shows(`[data-k="quorum"]`, "2 of 2 voters alive"),
		)
		if n := evalIn[int](b, "buttons", `document.querySelectorAll("#page-controllers button").length`); n != 0 {
			t.Errorf("%s sees %d buttons on the Controllers page", who.name, n)
		}
		if n := evalIn[int](b, "columns", `document.querySelectorAll("#controllers-table thead th").length`); n != 8 {
			t.Errorf("%s sees %d columns, want 8 (no action column)", who.name, n)
		}
		for _, id := range []string{"ctl-2", "ctl-9"} {
			if got := b.rpcStatus("ClusterService/RemovePeer", `{"id": "`+id+`"}`); got != 403 {
				t.Errorf("%s removing %s: HTTP %d, want 403", who.name, id, got)
			}
		}
	}

	// The admin removes the follower: one click arms, the second acts.
	b.signIn(admin, "local-admin · admin")
	b.do("follower listed",
		chromedp.Navigate(b.base+"#/controllers"),
		shows(follower+` [data-k="alive"]`, "alive"),
		waitJS(`!!document.querySelector('`+follower+` button[data-remove="ctl-2"]')`),
	)
	applied := evalIn[[]string](b, "follower progress", `["applied", "lag"].map((k) => document.querySelector('`+follower+` [data-k="' + k + '"]').textContent)`)
	if applied[0] == "0" || (applied[0] == "unknown") != (applied[1] == "unknown") {
		t.Errorf("follower shows applied index %q and lag %q: unknown must read unknown in both, never 0", applied[0], applied[1])
	}
	if n := evalIn[int](b, "leader button", `document.querySelectorAll('#controllers-table tr[data-peer="ctl-1"] button').length`); n != 0 {
		t.Error("the leader has a Remove button")
	}
	b.screenshots(shots, "dashboard-controllers", "#/controllers", waitJS(`!!document.querySelector('`+follower+` button[data-remove="ctl-2"]')`))
	b.do("remove ctl-2",
		clickIn(follower+` button[data-remove="ctl-2"]`),
		shows(follower+` button[data-remove="ctl-2"]`, "Confirm remove"),
		clickIn(follower+` button[data-remove="ctl-2"]`),
		shows("#controllers-result", "Removed ctl-2"),
		waitJS(`!document.querySelector('`+follower+`')`),
		shows(`[data-k="quorum"]`, "1 of 1 voters alive"),
	)
	if out, err := member.ctl(t, "audit", "--action", "raft"); err != nil || !strings.Contains(out, "raft remove-peer") || !strings.Contains(out, "ctl-2") {
		t.Errorf("the page's removal is not audited: %v\n%s", err, out)
	}
	member.stop()
}
