package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/pki"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Attacks on the controller's inputs: anonymous peers on the enrolment
// method, and enrolled rigs that lie or send too much. Each test performs
// the attack against the real controller binary.

func (c *controller) dbSize(t *testing.T) int64 {
	t.Helper()
	st, err := os.Stat(filepath.Join(c.dir, "quarry-data", "quarry.db"))
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// anonymous is an AgentService client with no client certificate, the
// way a peer that has no business with the fleet would connect.
func (c *controller) anonymous(t *testing.T) quarryv1.AgentServiceClient {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(c.dir, "quarry-data", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := grpc.NewClient(c.grpc, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return quarryv1.NewAgentServiceClient(conn)
}

// rogueRig enrolls with a real join token, as a compromised or modified
// rig would, and returns a client holding its certificate.
func (c *controller) rogueRig(t *testing.T, name string) quarryv1.AgentServiceClient {
	t.Helper()
	tok := c.newToken(t, "--rig-name", name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := link.Enroll(ctx, filepath.Join(t.TempDir(), "pki"), c.grpc, tok, "rogue-host")
	if err != nil {
		t.Fatalf("enroll %s: %v", name, err)
	}
	conn, err := grpc.NewClient(c.grpc, grpc.WithTransportCredentials(credentials.NewTLS(id.TLSConfig("127.0.0.1"))),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return quarryv1.NewAgentServiceClient(conn)
}

// openStream says Hello and waits for Welcome.
func openStream(t *testing.T, c quarryv1.AgentServiceClient, hello *quarryv1.Hello) quarryv1.AgentService_ConnectClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	stream, err := c.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&quarryv1.ConnectRequest{Msg: &quarryv1.ConnectRequest_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	msg, err := stream.Recv()
	if err != nil || msg.GetWelcome() == nil {
		t.Fatalf("want Welcome, got %v %v", msg, err)
	}
	return stream
}

func sendReport(stream quarryv1.AgentService_ConnectClient, r *quarryv1.Report) error {
	return stream.Send(&quarryv1.ConnectRequest{Msg: &quarryv1.ConnectRequest_Report{Report: r}})
}

// waitAck reads until the controller acknowledges seq.
func waitAck(t *testing.T, stream quarryv1.AgentService_ConnectClient, seq uint64) {
	t.Helper()
	for {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for ack %d: %v", seq, err)
		}
		if a := msg.GetAck(); a != nil && a.UpToSeq >= seq {
			return
		}
	}
}

func rigShow(t *testing.T, c *controller, name string) *quarryv1.Rig {
	t.Helper()
	out, err := c.ctl(t, "rig", "show", name, "-o", "json")
	if err != nil {
		t.Fatalf("rig show %s: %v\n%s", name, err, out)
	}
	r := &quarryv1.Rig{}
	if err := protojson.Unmarshal([]byte(out), r); err != nil {
		t.Fatalf("rig show json: %v\n%s", err, out)
	}
	return r
}

const oneMiB = 1 << 20

// Attack: an anonymous peer floods Enroll with 3 MB hostnames and bad
// tokens so that every refusal is audited, to fill the controller's disk
// and make the audit log unreadable.
func TestAttackEnrollAuditFlood(t *testing.T) {
	dir := t.TempDir()
	ctrl := startController(t, dir, freePort(t), freePort(t))
	before := ctrl.dbSize(t)
	anon := ctrl.anonymous(t)
	huge := strings.Repeat("h", 3<<20)
	limited := 0
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := anon.Enroll(ctx, &quarryv1.EnrollRequest{Token: fmt.Sprintf("qjt1.%d.bogus", i), Hostname: huge, CsrDer: []byte("x")})
		cancel()
		switch status.Code(err) {
		case codes.InvalidArgument:
			if !strings.Contains(err.Error(), "the limit is") {
				t.Fatalf("call %d: refusal does not say why: %v", i, err)
			}
		case codes.ResourceExhausted:
			limited++
		default:
			t.Fatalf("call %d: want a refusal, got %v", i, err)
		}
	}
	if limited == 0 {
		t.Fatal("20 failed enrolments from one address were never rate-limited")
	}
	if grew := ctrl.dbSize(t) - before; grew >= oneMiB {
		t.Fatalf("database grew by %d bytes from refused enrolments", grew)
	}
	out, err := ctrl.ctl(t, "audit")
	if err != nil || !strings.Contains(out, "enroll") || !strings.Contains(out, "refused") {
		t.Fatalf("audit after the flood: %v\n%.2000s", err, out)
	}
	if len(out) > 64<<10 {
		t.Fatalf("audit output is %d bytes: stored strings are not capped", len(out))
	}
	// Pages: the newest few, then the older ones by the printed token.
	out, err = ctrl.ctl(t, "audit", "--limit", "3")
	m := regexp.MustCompile(`--page-token (\S+)`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("audit --limit 3 gave no page token: %v\n%s", err, out)
	}
	if out, err = ctrl.ctl(t, "audit", "--limit", "3", "--page-token", m[1]); err != nil || !strings.Contains(out, "enroll") {
		t.Fatalf("audit next page: %v\n%s", err, out)
	}
	if out, err = ctrl.ctl(t, "audit", "--page-token", "not-a-token"); err == nil || !strings.Contains(out, "page token") {
		t.Fatalf("bad page token: %v\n%s", err, out)
	}
	ctrl.stop()
}

// Attack: an enrolled rig sends reports with a 3.5 MB GPU bus id to fill
// the controller's disk and break 'rigs list' for everyone.
func TestAttackOversizeReport(t *testing.T) {
	dir := t.TempDir()
	ctrl := startController(t, dir, freePort(t), freePort(t))
	good := startAgent(t, t.TempDir(), ctrl.grpc, ctrl.newToken(t, "--rig-name", "good"))
	eventually(t, "good rig reporting", time.Minute, func() bool {
		r, _ := rigByName(t, ctrl.rigs(t), "good")
		return r.Online && r.Reports != "" && r.Reports != "0"
	})
	rogue := ctrl.rogueRig(t, "rogue")
	before := ctrl.dbSize(t)
	stream := openStream(t, rogue, &quarryv1.Hello{Hostname: "rogue-host", Version: "x"})
	huge := strings.Repeat("b", 3500<<10)
	var sendErr error
	for seq := uint64(1); seq <= 30 && sendErr == nil; seq++ {
		sendErr = sendReport(stream, &quarryv1.Report{Seq: seq, TimeUnixNano: time.Now().UnixNano(), Gpus: []*quarryv1.GPUStats{{BusId: huge}}})
	}
	_, err := stream.Recv()
	for err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "bus_id") {
		t.Fatalf("want InvalidArgument naming bus_id, got %v", err)
	}
	// The other rig keeps committing.
	lastSeq := func() uint64 {
		r, _ := rigByName(t, ctrl.rigs(t), "good")
		n, _ := strconv.ParseUint(r.LastSeq, 10, 64)
		return n
	}
	then := lastSeq()
	eventually(t, "good rig still committing", time.Minute, func() bool { return lastSeq() > then })
	if grew := ctrl.dbSize(t) - before; grew >= oneMiB {
		t.Fatalf("database grew by %d bytes from refused reports", grew)
	}
	if rr, ok := rigByName(t, ctrl.rigs(t), "rogue"); !ok || (rr.Reports != "" && rr.Reports != "0") {
		t.Fatalf("rogue rig: %+v", rr)
	}
	if out, err := ctrl.ctl(t, "rigs", "list"); err != nil || !strings.Contains(out, "good") {
		t.Fatalf("rigs list: %v\n%s", err, out)
	}
	good.stop()
	ctrl.stop()
}

// Attack: a fleet large enough that one ListRigs answer would exceed the
// gRPC message limit. quarryctl must page through it.
func TestAttackRigListPaging(t *testing.T) {
	dir := t.TempDir()
	const n = 1200
	// A database with many rigs, written before the controller starts.
	db, err := store.Open(filepath.Join(dir, "quarry-data", "quarry.db"), fleet.Buckets...)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("rigs"))
		for i := range n {
			id := fmt.Sprintf("rig-%06d", i)
			v, _ := proto.Marshal(&quarryv1.Rig{Id: id, Name: fmt.Sprintf("bulk-%06d", i), Hostname: "h"})
			if err := b.Put([]byte(id), v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ctrl := startController(t, dir, freePort(t), freePort(t))
	rigs := ctrl.rigs(t)
	seen := map[string]bool{}
	for _, r := range rigs {
		seen[r.ID] = true
	}
	if len(rigs) != n || len(seen) != n {
		t.Fatalf("rigs list returned %d rigs (%d distinct), want %d", len(rigs), len(seen), n)
	}
	ctrl.stop()
}

// Attack: a rig claims tags (site=cheap) in its Hello to move itself into
// another selector group or a cheaper electricity site, and dates its
// reports a year ahead to stop its billing meter.
func TestAttackRigClaimsTagsAndFutureTime(t *testing.T) {
	dir := t.TempDir()
	ctrl := startController(t, dir, freePort(t), freePort(t))
	rogue := ctrl.rogueRig(t, "claimer")
	stream := openStream(t, rogue, &quarryv1.Hello{Hostname: "rogue-host", Inventory: &quarryv1.Inventory{Tags: map[string]string{"site": "cheap", "customer": "someone-else"}}})
	future := time.Now().Add(365 * 24 * time.Hour)
	if err := sendReport(stream, &quarryv1.Report{Seq: 1, TimeUnixNano: future.UnixNano()}); err != nil {
		t.Fatal(err)
	}
	waitAck(t, stream, 1)
	r := rigShow(t, ctrl, "claimer")
	if r.Tags["site"] != "cheap" {
		t.Fatalf("reported tags not kept as information: %v", r.Tags)
	}
	if len(r.Labels) != 0 {
		t.Fatalf("a rig's own claim became a label: %v", r.Labels)
	}
	if seen := time.Unix(0, r.LastSeenUnixNano); seen.After(time.Now().Add(fleet.DefaultMaxClockSkew)) {
		t.Fatalf("future-dated report stored as %v", seen)
	}
	out, _ := ctrl.ctl(t, "rig", "show", "claimer")
	if !strings.Contains(out, "Reported tags:") || !strings.Contains(out, "informational") {
		t.Fatalf("rig show does not mark reported tags as such:\n%s", out)
	}

	// Labels are the operator's: a viewer is refused, an operator sets
	// them, and both are audited.
	viewer := adminToken(t, ctrl, "vic", "viewer")
	if out, err := ctrl.ctl(t, "--token", viewer, "rig", "label", "claimer", "site=hydro"); err == nil || !strings.Contains(out, "needs role operator") {
		t.Fatalf("viewer set a label: %v %s", err, out)
	}
	operator := adminToken(t, ctrl, "olga", "operator")
	if out, err := ctrl.ctl(t, "--token", operator, "rig", "label", "claimer", "site=hydro", "tier=a"); err != nil || !strings.Contains(out, "site=hydro") {
		t.Fatalf("operator label: %v %s", err, out)
	}
	if out, err := ctrl.ctl(t, "--token", operator, "rig", "label", "claimer", "tier-"); err != nil || strings.Contains(out, "tier=") {
		t.Fatalf("operator label remove: %v %s", err, out)
	}
	if r := rigShow(t, ctrl, "claimer"); r.Labels["site"] != "hydro" || len(r.Labels) != 1 || r.Tags["site"] != "cheap" {
		t.Fatalf("labels %v tags %v", r.Labels, r.Tags)
	}
	out, err := ctrl.ctl(t, "audit")
	if err != nil || !strings.Contains(out, "olga") || !strings.Contains(out, "rig label") || !strings.Contains(out, "vic") {
		t.Fatalf("label changes not audited: %v\n%s", err, out)
	}
	// The next report, dated now, is not taken as older than the clamped one.
	if err := sendReport(stream, &quarryv1.Report{Seq: 2, TimeUnixNano: time.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	waitAck(t, stream, 2)
	if r := rigShow(t, ctrl, "claimer"); r.Reports != 2 {
		t.Fatalf("reports %d", r.Reports)
	}
	ctrl.stop()
}

// Attack: two rigs with the same hostname, so that commands by name are
// ambiguous or reach the wrong rig.
func TestAttackDuplicateHostnames(t *testing.T) {
	dir := t.TempDir()
	ctrl := startController(t, dir, freePort(t), freePort(t))
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	a1 := startAgent(t, t.TempDir(), ctrl.grpc, ctrl.newToken(t))
	eventually(t, "first rig online", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), host)
		return ok && r.Online
	})
	a2 := startAgent(t, t.TempDir(), ctrl.grpc, ctrl.newToken(t))
	var second rigJSON
	eventually(t, "second rig online under a distinct name", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), host+"-2")
		second = r
		return ok && r.Online
	})
	first, _ := rigByName(t, ctrl.rigs(t), host)
	if first.ID == second.ID || first.Hostname != second.Hostname {
		t.Fatalf("first %+v second %+v", first, second)
	}
	for _, want := range []rigJSON{first, second} {
		out, err := ctrl.ctl(t, "rig", "command", want.Name, "ping", "-o", "json")
		if err != nil {
			t.Fatalf("command %s: %v\n%s", want.Name, err, out)
		}
		var rec struct {
			RigID string `json:"rigId"`
		}
		if err := json.Unmarshal([]byte(out), &rec); err != nil || rec.RigID != want.ID {
			t.Fatalf("command by name %s reached %q, want %s (%v)\n%s", want.Name, rec.RigID, want.ID, err, out)
		}
	}
	a1.stop()
	a2.stop()
	ctrl.stop()
}

// Attack: an Enroll with a certificate request whose signature does not
// verify, to spend a single-use join token or create a rig without
// proving possession of a key.
func TestAttackBadCSRSignature(t *testing.T) {
	dir := t.TempDir()
	ctrl := startController(t, dir, freePort(t), freePort(t))
	tok := ctrl.newToken(t, "--rig-name", "once")
	_, csr, err := pki.NewKeyAndRequest("once")
	if err != nil {
		t.Fatal(err)
	}
	csr[len(csr)-1] ^= 0x01 // the last byte of the signature
	parsed, err := x509.ParseCertificateRequest(csr)
	if err != nil || parsed.CheckSignature() == nil {
		t.Fatalf("test request should parse and fail its signature check: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = ctrl.anonymous(t).Enroll(ctx, &quarryv1.EnrollRequest{Token: tok, CsrDer: csr, Hostname: "h"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("want InvalidArgument about the signature, got %v", err)
	}
	if rigs := ctrl.rigs(t); len(rigs) != 0 {
		t.Fatalf("a rig was created: %+v", rigs)
	}
	if _, err := link.Enroll(ctx, filepath.Join(t.TempDir(), "pki"), ctrl.grpc, tok, "h"); err != nil {
		t.Fatalf("the single-use token was spent by the refused request: %v", err)
	}
	if _, ok := rigByName(t, ctrl.rigs(t), "once"); !ok {
		t.Fatal("enrolled rig missing")
	}
	ctrl.stop()
}
