package server

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/gossipd"
	"github.com/quarryfleet/quarry/pkg/gossip"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// gossipController runs a controller whose gossip node listens on a free
// loopback port with the tuned profile.
func gossipController(t *testing.T, dir string) *testController {
	t.Helper()
	return startTestController(t, func(c *Config) {
		if dir != "" {
			c.DataDir = dir
		}
		c.Gossip.BindPort = 0
		c.Gossip.Profile = string(gossip.ProfileTuned)
	})
}

func gossipClient(t *testing.T, tc *testController, token string) quarryv1.GossipServiceClient {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(tc.CA().Cert)
	conn, err := grpc.NewClient(tc.GRPCAddr(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})),
		grpc.WithPerRPCCredentials(bearerCreds(token)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return quarryv1.NewGossipServiceClient(conn)
}

func roleToken(t *testing.T, tc *testController, role string) string {
	t.Helper()
	tok, err := tc.Fleet().CreateAdminToken("test-"+role, role)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// fakeRig is a gossip member that stands in for a rig's agent, built from
// what enrollment handed over, with a "version" responder.
type fakeRig struct {
	*gossip.Node
	mu     sync.Mutex
	events []gossip.FleetEvent
}

// port -1 picks a free one. A rig that comes back must use its old port:
// memberlist does not let a name move to another address while the dead
// member is remembered.
// A non-nil signer signs the fake rig's identity and answers, as the
// agent does with its certificate key.
func startFakeRig(t *testing.T, name string, enr *quarryv1.EnrollResponse, answer bool, port int, signer crypto.Signer) *fakeRig {
	t.Helper()
	n, err := gossip.New(gossip.Config{
		Identity: signer,
		NodeName: name, BindAddr: "127.0.0.1", BindPort: port,
		Join: enr.GossipJoin, Keys: enr.GossipKeys, Profile: gossip.ProfileTuned,
		TrustedKeys: []ed25519.PublicKey{enr.EventPublicKey},
		Tags:        gossip.Tags{Role: gossip.RoleAgent, RigID: name, Version: "test"},
		Logger:      quietLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRig{Node: n}
	n.HandleEvents("", gossip.EventHandlerFunc(func(e gossip.FleetEvent) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.events = append(r.events, e)
	}))
	if answer {
		n.HandleQuery("version", gossip.QueryResponderFunc(func(context.Context, gossip.QueryRequest) ([]byte, error) {
			return []byte(`{"version":"test"}`), nil
		}))
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.crash() })
	select {
	case <-n.Joined():
	case <-time.After(10 * time.Second):
		t.Fatal("fake rig did not join the controller")
	}
	return r
}

// trustRig makes the controller know the rig's certificate, as its mTLS
// stream would, and returns the key that signs for it.
func trustRig(tc *testController, ag *testAgent) crypto.Signer {
	tc.gossip.RigCertificate(ag.id.RigID(), ag.id.Leaf())
	return ag.id.Signer()
}

// crash stops without leaving, as a killed agent does.
func (r *fakeRig) crash() {
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	_ = r.Close(dead)
}

func (r *fakeRig) seen() []gossip.FleetEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func gossipStatusOf(tc *testController, rig string) string {
	r, err := tc.Fleet().Rig(rig)
	if err != nil {
		return "unknown rig"
	}
	return r.GossipStatus
}

func TestGossipEnrollmentHandsOverKeysAndAddress(t *testing.T) {
	tc := gossipController(t, "")
	ag := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	enr := ag.id.Enrollment
	if enr == nil {
		t.Fatal("no enrollment response stored")
	}
	var onDisk []string
	b, err := os.ReadFile(filepath.Join(tc.dir, gossipd.KeyringFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &onDisk); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(enr.GossipKeys, onDisk) || len(onDisk) != 1 {
		t.Fatalf("enrollment keys %v, keyring file %v", enr.GossipKeys, onDisk)
	}
	if n := tc.gossip.Node(); len(enr.GossipJoin) != 1 || enr.GossipJoin[0] != n.Addr().String() {
		t.Fatalf("gossip join %v, controller gossips on %s", enr.GossipJoin, n.Addr())
	}
	if !ed25519.PublicKey(enr.EventPublicKey).Equal(tc.gossip.EventPublicKey()) {
		t.Fatal("enrollment event key is not the controller's signing key")
	}
	for _, f := range []string{gossipd.KeyringFile, gossipd.EventKeyFile} {
		st, err := os.Stat(filepath.Join(tc.dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}

	// A restart keeps both keys: enrolled rigs must still be able to talk.
	dir := tc.dir
	tc.stop()
	tc2 := gossipController(t, dir)
	ag2 := enrollAgent(t, tc2, tc2.token(t, time.Hour, 1))
	if !slices.Equal(ag2.id.Enrollment.GossipKeys, onDisk) || !slices.Equal(ag2.id.Enrollment.EventPublicKey, enr.EventPublicKey) {
		t.Fatalf("keys changed across a restart: %v vs %v", ag2.id.Enrollment.GossipKeys, onDisk)
	}
}

func TestGossipStatusFollowsMembership(t *testing.T) {
	tc := gossipController(t, "")
	ag := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	rig := ag.id.RigID()

	r := startFakeRig(t, rig, ag.id.Enrollment, true, -1, trustRig(tc, ag))
	eventually(t, "gossip status alive", func() bool { return gossipStatusOf(tc, rig) == "alive" })
	port := int(r.Addr().Port())

	start := time.Now()
	r.crash()
	eventually(t, "gossip status failed", func() bool { return gossipStatusOf(tc, rig) == "failed" })
	// Only gossip sets this status, so seeing it proves serf detected the
	// crash; how fast is measured by the gossip benchmarks, not asserted.
	t.Logf("crash to gossip status failed: %s", time.Since(start).Round(10*time.Millisecond))

	r2 := startFakeRig(t, rig, ag.id.Enrollment, true, port, trustRig(tc, ag))
	eventually(t, "gossip status alive again", func() bool { return gossipStatusOf(tc, rig) == "alive" })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "gossip status left", func() bool { return gossipStatusOf(tc, rig) == "left" })

	// Members that are not rigs of this fleet change nothing.
	startFakeRig(t, "stranger", ag.id.Enrollment, false, -1, nil)
	if _, err := tc.Fleet().Rig("stranger"); err == nil {
		t.Fatal("a foreign member became a rig")
	}
}

func TestGossipServiceRolesEventsAndQueries(t *testing.T) {
	tc := gossipController(t, "")
	ag := enrollAgent(t, tc, tc.token(t, time.Hour, 2))
	rig := ag.id.RigID()
	answering := startFakeRig(t, rig, ag.id.Enrollment, true, -1, trustRig(tc, ag))
	silent := startFakeRig(t, "rig-silent", ag.id.Enrollment, false, -1, nil)

	viewer := gossipClient(t, tc, roleToken(t, tc, fleet.RoleViewer))
	operator := gossipClient(t, tc, roleToken(t, tc, fleet.RoleOperator))
	admin := gossipClient(t, tc, roleToken(t, tc, fleet.RoleAdmin))

	eventually(t, "three members alive", func() bool {
		m, err := viewer.ListMembers(ctx(t), &quarryv1.ListMembersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		alive := 0
		for _, mm := range m.Members {
			if mm.Status == "alive" {
				alive++
			}
		}
		return alive == 3
	})
	members, _ := viewer.ListMembers(ctx(t), &quarryv1.ListMembersRequest{})
	if !strings.HasPrefix(members.Local, "controller-") {
		t.Errorf("controller member name %q", members.Local)
	}
	for _, m := range members.Members {
		if m.Name == members.Local && m.Tags["role"] != "controller" {
			t.Errorf("controller tags %v", m.Tags)
		}
	}

	// Roles: viewers may look, not act; only admins rotate keys.
	_, err := viewer.FleetEvent(ctx(t), &quarryv1.FleetEventRequest{Kind: "pause"})
	wantStatus(t, err, codes.PermissionDenied, "")
	_, err = operator.RotateKeys(ctx(t), &quarryv1.RotateKeysRequest{Step: "rotate"})
	wantStatus(t, err, codes.PermissionDenied, "")

	// Bad input is refused with a reason.
	for _, tt := range []struct {
		name string
		call func() error
		want string
	}{
		{"unknown kind", func() error {
			_, err := operator.FleetEvent(ctx(t), &quarryv1.FleetEventRequest{Kind: "reboot"})
			return err
		}, "pause or resume"},
		{"bad selector", func() error {
			_, err := operator.FleetEvent(ctx(t), &quarryv1.FleetEventRequest{Kind: "pause", Selector: "role"})
			return err
		}, "key=glob"},
		{"unknown query", func() error {
			s, err := operator.FleetQuery(ctx(t), &quarryv1.FleetQueryRequest{Name: "secrets"})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, "temps, hashrate or version"},
		{"query timeout too long", func() error {
			s, err := operator.FleetQuery(ctx(t), &quarryv1.FleetQueryRequest{Name: "version", TimeoutMs: 3_600_000})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, "up to"},
		{"key made elsewhere", func() error {
			_, err := admin.RotateKeys(ctx(t), &quarryv1.RotateKeysRequest{Step: "install", Key: "not-base64!"})
			return err
		}, "generates itself"},
		{"rotate with a key", func() error {
			_, err := admin.RotateKeys(ctx(t), &quarryv1.RotateKeysRequest{Step: "rotate", Key: "abc"})
			return err
		}, "pass none"},
		{"unknown step", func() error {
			_, err := admin.RotateKeys(ctx(t), &quarryv1.RotateKeysRequest{Step: "shred"})
			return err
		}, "want rotate"},
	} {
		t.Run(tt.name, func(t *testing.T) { wantStatus(t, tt.call(), codes.InvalidArgument, tt.want) })
	}

	resp, err := operator.FleetEvent(ctx(t), &quarryv1.FleetEventRequest{Kind: "pause", Selector: "name=" + rig})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.Targets, []string{rig}) {
		t.Fatalf("targets %v, want [%s]", resp.Targets, rig)
	}
	eventually(t, "the selected rig receives the signed event", func() bool { return len(answering.seen()) == 1 })
	if e := answering.seen()[0]; e.Kind != "pause" || e.IDString() != resp.EventId || !strings.Contains(string(e.Body), "test-operator") {
		t.Fatalf("event %+v body %s", e.Envelope, e.Body)
	}
	// A second event, for the silent rig alone, travels behind the first:
	// once it has arrived, the first would have too, had it been picked.
	if _, err := operator.FleetEvent(ctx(t), &quarryv1.FleetEventRequest{Kind: "resume", Selector: "name=rig-silent"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the silent rig receives its own event", func() bool { return len(silent.seen()) > 0 })
	if evs := silent.seen(); len(evs) != 1 || evs[0].Kind != "resume" {
		t.Fatalf("a rig the selector did not pick got %d events: %v", len(evs), evs)
	}

	stream, err := operator.FleetQuery(ctx(t), &quarryv1.FleetQueryRequest{Name: "version", TimeoutMs: 1500})
	if err != nil {
		t.Fatal(err)
	}
	var answers []*quarryv1.FleetQueryAnswer
	var summary *quarryv1.FleetQuerySummary
	for summary == nil {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if a := msg.GetAnswer(); a != nil {
			answers = append(answers, a)
		}
		summary = msg.GetSummary()
	}
	if len(answers) != 1 || answers[0].From != rig || string(answers[0].Payload) != `{"version":"test"}` {
		t.Fatalf("answers %v", answers)
	}
	slices.Sort(summary.Expected)
	if !slices.Equal(summary.Expected, []string{rig, "rig-silent"}) || !slices.Equal(summary.Missing, []string{"rig-silent"}) {
		t.Fatalf("summary %v", summary)
	}

	// Every call is audited, refusals included.
	audit, err := adminConn(t, tc, "").ListAudit(ctx(t), &quarryv1.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range audit.Entries {
		if strings.HasPrefix(e.Action, "gossip.") {
			got[e.Action+" "+e.Who]++
		}
	}
	for _, want := range []string{"gossip.event.pause test-operator", "gossip.query.version test-operator", "gossip.members test-viewer", "gossip.keys.shred test-admin"} {
		if got[want] == 0 {
			t.Errorf("no audit entry %q in %v", want, got)
		}
	}
}

// Rotation hands the new key to connected rigs over their gRPC stream
// (the rig here applies it as the agent does), then switches the
// controller; a rig that reconnects later gets it in its Welcome.
func TestGossipKeyRotationReachesMembersAndReconnectingRigs(t *testing.T) {
	tc := gossipController(t, "")
	ag := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	r := startFakeRig(t, ag.id.RigID(), ag.id.Enrollment, true, -1, trustRig(tc, ag))
	eventually(t, "rig alive", func() bool { return gossipStatusOf(tc, ag.id.RigID()) == "alive" })
	old := ag.id.Enrollment.GossipKeys[0]

	pushed := make(chan []string, 4)
	runLink := func() func() {
		ctx2, cancel := context.WithCancel(context.Background())
		c := &link.Client{Addr: tc.GRPCAddr(), ServerName: "127.0.0.1", Identity: ag.id, Buffer: ag.buf, Log: quietLog(),
			OnSettings: func(s *quarryv1.AgentSettings) {
				if err := r.SetKeyring(s.GossipKeys); err != nil {
					t.Errorf("rig SetKeyring: %v", err)
				}
				pushed <- s.GossipKeys
			}}
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx2) }()
		return func() { cancel(); <-done }
	}
	stop := runLink()
	select {
	case <-pushed: // the Welcome
	case <-time.After(10 * time.Second):
		t.Fatal("no welcome")
	}

	admin := gossipClient(t, tc, roleToken(t, tc, fleet.RoleAdmin))
	resp, err := admin.RotateKeys(ctx(t), &quarryv1.RotateKeysRequest{Step: "rotate"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Steps) != 1 || resp.Steps[0].Nodes != 1 || resp.Steps[0].Responses != 1 || resp.Steps[0].Errors != 0 {
		t.Fatalf("steps %v, want the one connected rig handed the key", resp.Steps)
	}
	ctlKeys := tc.gossip.Node().Keys()
	if len(ctlKeys) != 1 || ctlKeys[0] == old {
		t.Fatalf("controller keyring after rotation: %d keys, old primary kept: %v", len(ctlKeys), ctlKeys[0] == old)
	}
	if got := r.LocalKeys(); !slices.Equal(got, ctlKeys) {
		t.Fatalf("the rig holds %v, want the pushed %v", got, ctlKeys)
	}
	if resp.KeyringFingerprints[0] != gossip.KeyFingerprint(ctlKeys[0]) || resp.Steps[0].KeyFingerprint != gossip.KeyFingerprint(ctlKeys[0]) {
		t.Fatalf("fingerprints %v / %v", resp.KeyringFingerprints, resp.Steps)
	}
	var onDisk []string
	b, _ := os.ReadFile(filepath.Join(tc.dir, gossipd.KeyringFile))
	if err := json.Unmarshal(b, &onDisk); err != nil || !slices.Equal(onDisk, ctlKeys) {
		t.Fatalf("keyring file %v, want %v (%v)", onDisk, ctlKeys, err)
	}
	eventually(t, "rig still alive on the new key", func() bool {
		return memberStatusOf(tc, ag.id.RigID()) == "alive"
	})

	// A rig that reconnects gets the current keyring in its Welcome.
	stop()
	drain(pushed)
	stop = runLink()
	defer stop()
	select {
	case keys := <-pushed:
		if !slices.Equal(keys, ctlKeys) {
			t.Fatalf("welcome keys %v, want %v", keys, ctlKeys)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no welcome")
	}
}

func drain(ch chan []string) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func memberStatusOf(tc *testController, name string) string {
	for _, m := range tc.gossip.Node().Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return "absent"
}

func TestGossipPortTakenLeavesTheControllerRunning(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port, _ := strconv.Atoi(strings.TrimPrefix(l.Addr().String(), "127.0.0.1:"))
	tc := startTestController(t, func(c *Config) { c.Gossip.BindPort = port })

	_, err = gossipClient(t, tc, roleToken(t, tc, fleet.RoleViewer)).ListMembers(ctx(t), &quarryv1.ListMembersRequest{})
	wantStatus(t, err, codes.Unavailable, "gossip is not running")
	ag := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	if len(ag.id.Enrollment.GossipKeys) != 0 || len(ag.id.Enrollment.GossipJoin) != 0 {
		t.Fatalf("enrollment handed over gossip without a gossip node: %v", ag.id.Enrollment)
	}

	off := startTestController(t, func(c *Config) { c.Gossip.Enabled = false })
	_, err = gossipClient(t, off, roleToken(t, off, fleet.RoleViewer)).ListMembers(ctx(t), &quarryv1.ListMembersRequest{})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("gossip off: %v", err)
	}
	if _, err := os.Stat(filepath.Join(off.dir, gossipd.KeyringFile)); err == nil {
		t.Fatal("keyring created with gossip off")
	}
}

// A rig recorded alive that gossip no longer knows (it died while the
// controller was down, so nobody reports it failed) becomes "unknown" once
// the cluster has had time to settle; members gossip knows keep theirs.
func TestGossipReconcileMarksStaleRigsUnknown(t *testing.T) {
	tc := gossipController(t, "")
	stale := enrollAgent(t, tc, tc.token(t, time.Hour, 1)).id.RigID()
	ag := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	live := ag.id.RigID()
	startFakeRig(t, live, ag.id.Enrollment, false, -1, trustRig(tc, ag))
	eventually(t, "live rig alive", func() bool { return gossipStatusOf(tc, live) == "alive" })
	if err := tc.Fleet().UpdateRig(stale, func(r *quarryv1.Rig) { r.GossipStatus = "alive" }); err != nil {
		t.Fatal(err)
	}

	tc.gossip.Reconcile(time.Now()) // too soon after start: left alone
	if got := gossipStatusOf(tc, stale); got != "alive" {
		t.Fatalf("stale rig %q before the settle time", got)
	}
	tc.gossip.Reconcile(time.Now().Add(gossipd.Settle))
	if got := gossipStatusOf(tc, stale); got != "unknown" {
		t.Fatalf("stale rig %q after the settle time, want unknown", got)
	}
	if got := gossipStatusOf(tc, live); got != "alive" {
		t.Fatalf("live rig %q", got)
	}
}

// A member named after an enrolled rig but holding only the gossip key
// (its tags unsigned, or signed with some other key) is not taken for the
// rig: its status is "unverified", it is shown so in ListMembers, and its
// query answer is dropped, not attributed to the rig.
func TestGossipImpostorIsNotTheRig(t *testing.T) {
	tc := gossipController(t, "")
	for _, tt := range []struct {
		name   string
		signer func(t *testing.T) crypto.Signer
	}{
		{"unsigned", func(*testing.T) crypto.Signer { return nil }},
		{"signed with another key", func(t *testing.T) crypto.Signer {
			other := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
			return other.id.Signer()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ag := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
			rig := ag.id.RigID()
			tc.gossip.RigCertificate(rig, ag.id.Leaf()) // the real rig has connected once
			before := tc.gossip.Unverified()
			r := startFakeRig(t, rig, ag.id.Enrollment, true, -1, tt.signer(t))
			eventually(t, "gossip status unverified", func() bool { return gossipStatusOf(tc, rig) == "unverified" })
			viewer := gossipClient(t, tc, roleToken(t, tc, fleet.RoleViewer))
			ml, err := viewer.ListMembers(ctx(t), &quarryv1.ListMembersRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ml.Members {
				if m.Name == rig && (m.Verified || m.Unverified == "") {
					t.Fatalf("impostor listed as verified: %v", m)
				}
			}
			operator := gossipClient(t, tc, roleToken(t, tc, fleet.RoleOperator))
			st, err := operator.FleetQuery(ctx(t), &quarryv1.FleetQueryRequest{Name: "version", Selector: "name=" + rig, TimeoutMs: 2000})
			if err != nil {
				t.Fatal(err)
			}
			var sum *quarryv1.FleetQuerySummary
			for {
				msg, err := st.Recv()
				if err != nil {
					break
				}
				if a := msg.GetAnswer(); a != nil {
					t.Fatalf("impostor's answer attributed to %s: %s", a.From, a.Payload)
				}
				if s := msg.GetSummary(); s != nil {
					sum = s
				}
			}
			if sum == nil || !slices.Contains(sum.Unverified, rig) {
				t.Fatalf("summary %v does not report the unverified answer", sum)
			}
			if tc.gossip.Unverified() <= before {
				t.Fatal("unverified claims not counted")
			}
			r.crash()
		})
	}
}
