package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/controller/cluster"
	"github.com/quarryfleet/quarry/controller/web"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// group stands in for the leader's ClusterService: a fixed view of three
// members, one of which has not yet said how far it applied the log.
type group struct {
	quarryv1.UnimplementedClusterServiceServer
	mu      sync.Mutex
	removed []string
}

func (g *group) ListPeers(context.Context, *quarryv1.ListPeersRequest) (*quarryv1.ListPeersResponse, error) {
	return &quarryv1.ListPeersResponse{LeaderId: "ctl-1", Term: 4, LastIndex: 120, CommitIndex: 119, Peers: []*quarryv1.RaftPeer{
		{Id: "ctl-1", RaftAddr: "10.0.0.1:7300", GrpcAddr: "10.0.0.1:7443", Voter: true, Leader: true, Alive: true, AppliedIndex: 120},
		{Id: "ctl-2", RaftAddr: "10.0.0.2:7300", GrpcAddr: "10.0.0.2:7443", Voter: true, Alive: true, AppliedIndex: 117, Lag: 3},
		{Id: "ctl-3", RaftAddr: "10.0.0.3:7300", Voter: true},
	}}, nil
}

func (g *group) RemovePeer(_ context.Context, r *quarryv1.RemovePeerRequest) (*quarryv1.RemovePeerResponse, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.removed = append(g.removed, r.Id)
	return &quarryv1.RemovePeerResponse{}, nil
}

type auditLog struct {
	mu      sync.Mutex
	entries []*quarryv1.AuditEntry
}

func (a *auditLog) Audit(e *quarryv1.AuditEntry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, e)
	return nil
}

// clusterGateway is the bridge a controller builds: ClusterService's own
// role and audit tables, the service registered only when there is a group.
func clusterGateway(g *group, log *auditLog) *auth.Gateway {
	gw := auth.NewGateway(auth.Authenticator{Audit: log, Roles: cluster.ClusterRoles}, auth.Audit{Log: log, Actions: cluster.ClusterAudit})
	if g != nil {
		gw.Register(&quarryv1.ClusterService_ServiceDesc, g)
	}
	return gw
}

// The Controllers page reads the group through the bridge: every role may
// list the members, only an admin may remove one, and the bridge refuses
// the others itself (the page merely hides the button).
func TestControllersPageThroughTheBridge(t *testing.T) {
	g, log := &group{}, &auditLog{}
	e := newEnv(t, web.Options{RPC: clusterGateway(g, log)})
	viewer, operator, admin := e.login("viewer"), e.login("operator"), e.login("admin")

	var methods struct{ Methods map[string]string }
	viewer.getJSON("/api/rpc", &methods)
	if methods.Methods[quarryv1.ClusterService_ListPeers_FullMethodName] != "viewer" || methods.Methods[quarryv1.ClusterService_RemovePeer_FullMethodName] != "admin" {
		t.Errorf("the page is told the roles %v", methods.Methods)
	}

	code, body := viewer.do("POST", "/api/rpc/quarry.v1.ClusterService/ListPeers", "{}")
	if code != http.StatusOK {
		t.Fatalf("viewer ListPeers: %d %s", code, body)
	}
	// The page reads the names as the .proto spells them, and 0 where a
	// member's applied index is not known.
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"leader_id", "term", "last_index", "commit_index", "peers"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("ListPeers answer lacks %s: %s", k, body)
		}
	}
	resp := &quarryv1.ListPeersResponse{}
	if err := protojson.Unmarshal([]byte(body), resp); err != nil {
		t.Fatal(err)
	}
	if resp.LeaderId != "ctl-1" || resp.Term != 4 || len(resp.Peers) != 3 || resp.Peers[2].AppliedIndex != 0 {
		t.Errorf("ListPeers through the bridge: %v", resp)
	}
	if !strings.Contains(body, `"applied_index":"0"`) {
		t.Errorf("an unknown applied index is not sent as \"0\": %s", body)
	}

	for who, c := range map[string]*client{"viewer": viewer, "operator": operator} {
		if code, body := c.do("POST", "/api/rpc/quarry.v1.ClusterService/RemovePeer", `{"id":"ctl-3"}`); code != http.StatusForbidden || !strings.Contains(body, "PermissionDenied") {
			t.Errorf("%s RemovePeer: %d %s, want 403", who, code, body)
		}
	}
	if code, body := admin.do("POST", "/api/rpc/quarry.v1.ClusterService/RemovePeer", `{"id":"ctl-3"}`); code != http.StatusOK {
		t.Fatalf("admin RemovePeer: %d %s", code, body)
	}
	g.mu.Lock()
	removed := slices.Clone(g.removed)
	g.mu.Unlock()
	if !slices.Equal(removed, []string{"ctl-3"}) {
		t.Errorf("members removed %v, want only the admin's ctl-3", removed)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	var denied, done int
	for _, a := range log.entries {
		switch {
		case a.Action == "authorize" && a.Result == "denied":
			denied++
		case a.Action == "raft remove-peer" && a.Who == "admin-user" && a.Result == "ok":
			done++
		}
	}
	if denied != 2 || done != 1 {
		t.Errorf("audit has %d refusals and %d removals, want 2 and 1: %v", denied, done, log.entries)
	}
}

// A controller running alone has no ClusterService; the bridge passes on
// Unimplemented by its gRPC name, which is how the page tells "no group"
// from a failed call.
func TestControllersPageAlone(t *testing.T) {
	e := newEnv(t, web.Options{RPC: clusterGateway(nil, &auditLog{})})
	viewer := e.login("viewer")
	code, body := viewer.do("POST", "/api/rpc/quarry.v1.ClusterService/ListPeers", "{}")
	var answer struct{ Error, Code string }
	_ = json.Unmarshal([]byte(body), &answer)
	if code != http.StatusNotFound || answer.Code != "Unimplemented" {
		t.Errorf("ListPeers alone: %d %s, want 404 with code Unimplemented", code, body)
	}
}
