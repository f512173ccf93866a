package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/pki"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// connectErr opens a stream, says Hello and returns the first error.
func connectErr(t *testing.T, c quarryv1.AgentServiceClient, rigID string) error {
	t.Helper()
	s, err := c.Connect(ctx(t))
	if err != nil {
		return err
	}
	if err := s.Send(&quarryv1.ConnectRequest{Msg: &quarryv1.ConnectRequest_Hello{Hello: &quarryv1.Hello{RigId: rigID}}}); err != nil {
		_, err = s.Recv()
		return err
	}
	m, err := s.Recv()
	if err != nil {
		return err
	}
	if m.GetWelcome() == nil {
		t.Fatalf("expected Welcome, got %v", m)
	}
	return nil
}

func wantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(err.Error(), substr) {
		t.Fatalf("got %v; want %s containing %q", err, code, substr)
	}
}

func TestAgentWithoutValidCertificateIsRefused(t *testing.T) {
	tc := startTestController(t, nil)
	a := enrollAgent(t, tc, tc.token(t, time.Hour, 1))

	t.Run("no certificate", func(t *testing.T) {
		err := connectErr(t, rigConn(t, tc, &tls.Config{}), a.id.RigID())
		wantCode(t, err, codes.Unauthenticated, "client certificate")
	})

	t.Run("certificate from another CA", func(t *testing.T) {
		other, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		key, csr, err := pki.NewKeyAndRequest("x")
		if err != nil {
			t.Fatal(err)
		}
		der, err := other.SignRequest(csr, a.id.RigID(), pki.OURig, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		err = connectErr(t, rigConn(t, tc, &tls.Config{Certificates: []tls.Certificate{cert}}), a.id.RigID())
		if err == nil || status.Code(err) == codes.OK {
			t.Fatal("a certificate from another CA was accepted")
		}
		if tc.Fleet().Online(a.id.RigID()) {
			t.Fatal("rig shown online through a foreign certificate")
		}
	})

	t.Run("certificate for a rig that never enrolled", func(t *testing.T) {
		key, csr, _ := pki.NewKeyAndRequest("x")
		der, err := tc.CA().SignRequest(csr, "rig-000000000000", pki.OURig, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		err = connectErr(t, rigConn(t, tc, &tls.Config{Certificates: []tls.Certificate{cert}}), "")
		wantCode(t, err, codes.PermissionDenied, "not enrolled")
	})

	t.Run("claiming another rig's id", func(t *testing.T) {
		b := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
		err := connectErr(t, rigConn(t, tc, a.id.TLSConfig("127.0.0.1")), b.id.RigID())
		wantCode(t, err, codes.PermissionDenied, "certificate is for")
		if tc.Fleet().Online(b.id.RigID()) {
			t.Fatal("impersonated rig shown online")
		}
	})

	t.Run("admin certificate on the rig channel", func(t *testing.T) {
		key, csr, _ := pki.NewKeyAndRequest("x")
		der, _ := tc.CA().SignRequest(csr, a.id.RigID(), pki.OUAdmin, time.Hour, time.Now())
		cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		err := connectErr(t, rigConn(t, tc, &tls.Config{Certificates: []tls.Certificate{cert}}), "")
		wantCode(t, err, codes.PermissionDenied, "not a rig certificate")
	})
}

func TestJoinTokens(t *testing.T) {
	tc := startTestController(t, nil)
	enroll := func(tok string) error {
		_, err := link.Enroll(context.Background(), filepath.Join(t.TempDir(), "pki"), tc.GRPCAddr(), tok, "h")
		return err
	}
	single := tc.token(t, time.Hour, 1)
	if err := enroll(single); err != nil {
		t.Fatalf("first use of a single-use token: %v", err)
	}
	cases := []struct {
		name, token, want string
	}{
		{"reused single-use token", single, "used up"},
		{"expired token", tc.token(t, time.Nanosecond, 5), "expired"},
		{"unknown token", "qjt1.0123456789ab.0123456789abcdef0123456789abcdef." + tc.CA().Hash(), "unknown"},
		{"malformed token", "let-me-in", "malformed join token"},
		{"token pinned to another CA", "qjt1.0123456789ab.0123456789abcdef0123456789abcdef.sha256:" + strings.Repeat("ab", 32), "does not match the join token's pin"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := enroll(c.token)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want error containing %q", err, c.want)
			}
		})
	}
	multi := tc.token(t, time.Hour, 2)
	for i := range 2 {
		if err := enroll(multi); err != nil {
			t.Fatalf("use %d of a two-use token: %v", i+1, err)
		}
	}
	if err := enroll(multi); err == nil || !strings.Contains(err.Error(), "used up") {
		t.Fatalf("third use of a two-use token: %v", err)
	}
	if n := len(tc.Fleet().Rigs()); n != 3 {
		t.Fatalf("%d rigs enrolled, want 3", n)
	}
}

func TestValidAgentEndToEndAndRevocation(t *testing.T) {
	var streams agentStreams
	tc := startTestController(t, nil, streams.options()...)
	a := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	a.report(t, 5)
	a.run(t, tc, pingHandler{})
	rig := a.id.RigID()
	eventually(t, "reports committed", func() bool { return tc.Fleet().LastSeq(rig) == 5 })

	admin := adminConn(t, tc, "")
	resp, err := admin.SendCommand(ctx(t), &quarryv1.SendCommandRequest{Rig: rig, Kind: quarryv1.CommandKind_COMMAND_KIND_PING})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "command result", func() bool {
		r, err := tc.Fleet().Command(resp.CommandId)
		return err == nil && r.Status == quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED && string(r.Output) == "pong"
	})

	if _, err := admin.RevokeRig(ctx(t), &quarryv1.RevokeRigRequest{Rig: rig}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "revoked rig's stream closed", func() bool { return !tc.Fleet().Online(rig) })
	a.report(t, 3)
	// The agent keeps retrying; none of its attempts may get through.
	before := streams.refused.Load()
	eventually(t, "the agent's retries refused", func() bool { return streams.refused.Load() >= before+2 })
	if tc.Fleet().Online(rig) || tc.Fleet().LastSeq(rig) != 5 {
		t.Fatalf("revoked rig got back in: online=%v last_seq=%d", tc.Fleet().Online(rig), tc.Fleet().LastSeq(rig))
	}
	err = connectErr(t, rigConn(t, tc, a.id.TLSConfig("127.0.0.1")), rig)
	wantCode(t, err, codes.PermissionDenied, "revoked")

	// Revocation survives a controller restart.
	a.stop()
	tc.stop()
	tc2 := restartController(t, tc)
	err = connectErr(t, rigConn(t, tc2, a.id.TLSConfig("127.0.0.1")), rig)
	wantCode(t, err, codes.PermissionDenied, "revoked")
}

func restartController(t *testing.T, old *testController, extra ...grpc.ServerOption) *testController {
	t.Helper()
	return startTestController(t, func(c *Config) {
		c.DataDir = old.dir
		c.GRPCAddr = old.GRPCAddr()
	}, extra...)
}

type pingHandler struct{}

func (pingHandler) HandleCommand(_ context.Context, cmd *quarryv1.Command) ([]byte, error) {
	if cmd.Kind == quarryv1.CommandKind_COMMAND_KIND_PING {
		return []byte("pong"), nil
	}
	return nil, status.Error(codes.Unimplemented, "no")
}

// capture records every message the controller receives.
type capture struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (c *capture) add(m any) {
	if pm, ok := m.(proto.Message); ok {
		b, _ := proto.Marshal(pm)
		c.mu.Lock()
		c.msgs = append(c.msgs, b)
		c.mu.Unlock()
	}
}

type recordingStream struct {
	grpc.ServerStream
	c *capture
}

func (s recordingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.c.add(m)
	}
	return err
}

func (c *capture) options() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			c.add(req)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, recordingStream{ss, c})
		}),
	}
}

func keyMaterial(t *testing.T, dir string) [][]byte {
	t.Helper()
	pemBytes, err := os.ReadFile(filepath.Join(dir, "pki", "rig.key"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ek := k.(*ecdsa.PrivateKey)
	d, err := ek.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{pemBytes, blk.Bytes, d}
}

// The rig's private key never travels: not at enrollment, not in reports,
// not at renewal.
func TestPrivateKeyNeverSentAndRenewalKeepsStream(t *testing.T) {
	var cap capture
	tc := startTestController(t, func(c *Config) { c.AgentCertTTL = 3 * time.Second }, cap.options()...)
	a := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	secrets := keyMaterial(t, a.dir)
	firstSerial := a.id.Leaf().SerialNumber
	a.run(t, tc, pingHandler{})

	// Report steadily across at least one renewal.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				_, _ = a.buf.Append(&quarryv1.Report{TimeUnixNano: time.Now().UnixNano()})
			}
		}
	}()
	eventually(t, "certificate renewed", func() bool { return a.id.Leaf().SerialNumber.Cmp(firstSerial) != 0 })
	secrets = append(secrets, keyMaterial(t, a.dir)...)
	rig := a.id.RigID()
	renewedAt := tc.Fleet().LastSeq(rig)
	eventually(t, "reports go on after the renewal", func() bool { return tc.Fleet().LastSeq(rig) >= renewedAt+5 })
	close(stop)
	<-done
	var made uint64
	eventually(t, "all reports committed", func() bool {
		made = uint64(a.buf.Acked())
		return a.buf.Len() == 0 && tc.Fleet().LastSeq(rig) >= made && made > 0
	})
	r, _ := tc.Fleet().Rig(rig)
	if r.Reports != r.LastSeq || r.SeqGaps != 0 {
		t.Fatalf("renewal lost or duplicated reports: reports=%d last_seq=%d gaps=%d", r.Reports, r.LastSeq, r.SeqGaps)
	}
	a.stop()

	cap.mu.Lock()
	defer cap.mu.Unlock()
	if len(cap.msgs) < 10 {
		t.Fatalf("captured only %d messages", len(cap.msgs))
	}
	for _, m := range cap.msgs {
		for _, s := range secrets {
			if bytes.Contains(m, s) {
				t.Fatalf("a message to the controller contains private key material")
			}
		}
	}
}

func TestRolesForEveryAdminMethod(t *testing.T) {
	tc := startTestController(t, nil)
	roles := tc.Roles()
	var methods []string
	for svc, info := range tc.GRPCServer().GetServiceInfo() {
		if svc == quarryv1.AgentService_ServiceDesc.ServiceName || svc == quarryv1.MinerDownloadService_ServiceDesc.ServiceName || strings.HasPrefix(svc, "grpc.") {
			continue
		}
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			if _, ok := roles[full]; !ok {
				t.Errorf("%s has no role decision", full)
			}
			methods = append(methods, full)
		}
	}
	if len(methods) < 9 {
		t.Fatalf("only %d admin methods found", len(methods))
	}
	tokens := map[string]string{}
	for _, role := range []string{fleet.RoleViewer, fleet.RoleOperator, fleet.RoleAdmin} {
		tok, err := tc.Fleet().CreateAdminToken("user-"+role, role)
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = tok
	}
	streaming := map[string]bool{}
	for svc, info := range tc.GRPCServer().GetServiceInfo() {
		for _, m := range info.Methods {
			if m.IsServerStream || m.IsClientStream {
				streaming["/"+svc+"/"+m.Name] = true
			}
		}
	}
	for _, method := range methods {
		for role, tok := range tokens {
			allowed := fleet.RoleRank(role) >= fleet.RoleRank(roles[method])
			err := invokeEmpty(t, tc, tok, method, streaming[method])
			denied := status.Code(err) == codes.PermissionDenied && strings.Contains(err.Error(), "needs role")
			if allowed && (denied || status.Code(err) == codes.Unauthenticated) {
				t.Errorf("%s as %s: refused (%v) but the role allows it", method, role, err)
			}
			if !allowed {
				if !denied || !strings.Contains(err.Error(), "needs role "+roles[method]) {
					t.Errorf("%s as %s: got %v, want PermissionDenied naming role %s", method, role, err, roles[method])
				}
			}
		}
	}
	// And without any credential at all.
	err := invokeEmpty(t, tc, "qat1.nope", quarryv1.FleetService_ListRigs_FullMethodName, false)
	wantCode(t, err, codes.Unauthenticated, "not valid")

	// Every method that acts (needs more than viewer) is audited, and the
	// admin's calls above each left their entry, failed ones included.
	audited := tc.Audited()
	entries, err := tc.Fleet().AuditLog(time.Time{}, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range methods {
		action, ok := audited[method]
		if !ok {
			if fleet.RoleRank(roles[method]) > fleet.RoleRank(fleet.RoleViewer) {
				t.Errorf("%s needs role %s but is not audited", method, roles[method])
			}
			continue
		}
		found := false
		for _, e := range entries {
			found = found || (e.Who == "user-admin" && strings.HasPrefix(e.Action, action) && e.Result != "")
		}
		if !found {
			t.Errorf("%s: no audit entry %q by user-admin", method, action)
		}
	}
}

func invokeEmpty(t *testing.T, tc *testController, token, method string, stream bool) error {
	t.Helper()
	conn := adminConnRaw(t, tc, token)
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !stream {
		return conn.Invoke(c, method, &quarryv1.GetVersionRequest{}, &quarryv1.GetVersionResponse{})
	}
	s, err := conn.NewStream(c, &grpc.StreamDesc{ServerStreams: true}, method)
	if err != nil {
		return err
	}
	if err := s.SendMsg(&quarryv1.GetVersionRequest{}); err != nil {
		return err
	}
	_ = s.CloseSend()
	err = s.RecvMsg(&quarryv1.GetVersionResponse{})
	if err != nil && status.Code(err) == codes.DeadlineExceeded {
		return nil // allowed and streaming until the deadline
	}
	return err
}
