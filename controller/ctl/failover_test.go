package ctl

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/pkg/leaderhint"
	"github.com/quarryfleet/quarry/pkg/pki"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

const testToken = "admin-token"

// group is a CA and the controllers of a test, all on loopback over TLS.
type group struct {
	t      *testing.T
	ca     *pki.CA
	caFile string
}

func newGroup(t *testing.T) *group {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &group{t: t, ca: ca, caFile: filepath.Join(dir, "ca.crt")}
}

// serve starts a TLS gRPC server configured by opts and returns its
// address and a count of the calls it received.
func (g *group) serve(register func(*grpc.Server), opts ...grpc.ServerOption) (string, *atomic.Int32) {
	t := g.t
	der, key, err := g.ca.IssueServer([]string{"127.0.0.1"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	calls := &atomic.Int32{}
	count := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		calls.Add(1)
		return h(ctx, req)
	}
	countStream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		calls.Add(1)
		return h(srv, ss)
	}
	opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})),
		grpc.ChainUnaryInterceptor(count), grpc.ChainStreamInterceptor(countStream))
	srv := grpc.NewServer(opts...)
	if register != nil {
		register(srv)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String(), calls
}

// leader serves WhoAmI to the test token.
func (g *group) leader() (string, *atomic.Int32) {
	return g.serve(func(s *grpc.Server) { quarryv1.RegisterFleetServiceServer(s, whoAmIServer{}) })
}

// standby refuses every call, naming hint as the leader.
func (g *group) standby(hint string) (string, *atomic.Int32) {
	return g.serve(nil, grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error { return leaderhint.Refusal(hint) }))
}

// deadAddr is an address nothing listens on.
func deadAddr(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

type whoAmIServer struct {
	quarryv1.UnimplementedFleetServiceServer
}

func (whoAmIServer) WhoAmI(ctx context.Context, _ *quarryv1.WhoAmIRequest) (*quarryv1.WhoAmIResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+testToken {
		return nil, status.Error(codes.Unauthenticated, "bad token")
	}
	return &quarryv1.WhoAmIResponse{Who: "admin", Role: "admin"}, nil
}

func (g *group) run(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	root := NewRoot(&out, &errOut)
	root.SetArgs(append([]string{"--ca", g.caFile, "--token", testToken, "--config", filepath.Join(g.t.TempDir(), "none.yaml"), "--data-dir", g.t.TempDir()}, args...))
	err := root.ExecuteContext(g.t.Context())
	return out.String(), err
}

func TestFailoverFollowsHintToLeader(t *testing.T) {
	g := newGroup(t)
	dead := deadAddr(t)
	leader, leaderCalls := g.leader()
	standby, standbyCalls := g.standby(leader)
	out, err := g.run("--controller", dead+","+standby+","+leader, "whoami")
	if err != nil {
		t.Fatalf("whoami: %v", err)
	}
	if !strings.Contains(out, "admin (role admin)") {
		t.Errorf("output %q", out)
	}
	if standbyCalls.Load() != 1 || leaderCalls.Load() != 1 {
		t.Errorf("standby saw %d calls, leader %d; want 1 each", standbyCalls.Load(), leaderCalls.Load())
	}
}

func TestFailoverRepeatedFlag(t *testing.T) {
	g := newGroup(t)
	leader, _ := g.leader()
	standby, _ := g.standby(leader)
	if _, err := g.run("--controller", standby, "--controller", leader, "whoami"); err != nil {
		t.Fatalf("whoami: %v", err)
	}
}

// TestFailoverHintOutsideListNotFollowed: a standby pointing elsewhere
// must not get the token sent to a server of its choosing.
func TestFailoverHintOutsideListNotFollowed(t *testing.T) {
	g := newGroup(t)
	rogue, rogueCalls := g.leader()
	leader, leaderCalls := g.leader()
	standby, _ := g.standby(rogue)
	if _, err := g.run("--controller", standby+","+leader, "whoami"); err != nil {
		t.Fatalf("whoami: %v", err)
	}
	if rogueCalls.Load() != 0 || leaderCalls.Load() != 1 {
		t.Errorf("rogue saw %d calls, leader %d; want 0 and 1", rogueCalls.Load(), leaderCalls.Load())
	}

	_, err := g.run("--controller", standby, "whoami")
	if err == nil || !strings.Contains(err.Error(), "standby") || !strings.Contains(err.Error(), rogue) {
		t.Errorf("single standby: %v; want it to say the controller is a standby and name the hint", err)
	}
	if rogueCalls.Load() != 0 {
		t.Errorf("rogue saw %d calls", rogueCalls.Load())
	}
}

func TestFailoverAllFailNamesEach(t *testing.T) {
	g := newGroup(t)
	dead := deadAddr(t)
	blind, _ := g.standby("")
	hinting, hintingCalls := g.standby(blind)
	_, err := g.run("--controller", dead+","+hinting+","+blind, "whoami")
	if err == nil {
		t.Fatal("whoami succeeded with no leader")
	}
	msg := err.Error()
	for _, want := range []string{"tried 3", dead + ": unreachable", hinting + ": not the leader (leader is at " + blind + ")", blind + ": not the leader (leader unknown)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if hintingCalls.Load() != 1 {
		t.Errorf("hinting standby saw %d calls (want 1: each address once per call)", hintingCalls.Load())
	}
}

// TestFailoverKeepsChosen: once a controller served, later calls of the
// same process go to it first.
func TestFailoverKeepsChosen(t *testing.T) {
	g := newGroup(t)
	leader, leaderCalls := g.leader()
	standby, standbyCalls := g.standby(leader)
	a := &App{Opts: Options{Controllers: []string{standby, leader}, Token: testToken, CAFile: g.caFile,
		ConfigPath: filepath.Join(t.TempDir(), "none.yaml"), DataDir: t.TempDir(), Output: "table", Timeout: 10 * time.Second},
		Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}
	for range 3 {
		if _, err := fetch(a, t.Context(), quarryv1.NewFleetServiceClient, quarryv1.FleetServiceClient.WhoAmI, &quarryv1.WhoAmIRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if standbyCalls.Load() != 1 || leaderCalls.Load() != 3 {
		t.Errorf("standby saw %d calls, leader %d; want 1 and 3", standbyCalls.Load(), leaderCalls.Load())
	}
}

// TestFailoverOtherErrorsReturn: an answer from a serving controller is the
// call's answer, not a reason to try the next one.
func TestFailoverOtherErrorsReturn(t *testing.T) {
	g := newGroup(t)
	first, firstCalls := g.leader()
	second, secondCalls := g.leader()
	var out, errOut bytes.Buffer
	root := NewRoot(&out, &errOut)
	root.SetArgs([]string{"--ca", g.caFile, "--token", "wrong", "--config", filepath.Join(t.TempDir(), "none.yaml"), "--data-dir", t.TempDir(), "--controller", first + "," + second, "whoami"})
	err := root.ExecuteContext(t.Context())
	if err == nil || !strings.Contains(err.Error(), "not authenticated") {
		t.Fatalf("whoami with a wrong token: %v", err)
	}
	if firstCalls.Load() != 1 || secondCalls.Load() != 0 {
		t.Errorf("first saw %d calls, second %d; want 1 and 0", firstCalls.Load(), secondCalls.Load())
	}
}

func TestResolveListFromConfigFile(t *testing.T) {
	g := newGroup(t)
	cfg := filepath.Join(t.TempDir(), "quarryctl.yaml")
	if err := os.WriteFile(cfg, []byte("controller: a:1, b:2\ntoken: t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Options{ConfigPath: cfg, CAFile: g.caFile, DataDir: t.TempDir()}
	r, err := o.resolve()
	if err != nil || strings.Join(r.addrs, "|") != "a:1|b:2" {
		t.Errorf("resolve = %q, %v; want a:1|b:2", r.addrs, err)
	}
	o.Controllers = []string{"c:3"}
	if r, _ := o.resolve(); strings.Join(r.addrs, "|") != "c:3" {
		t.Errorf("flag did not win over the file: %q", r.addrs)
	}
	o.Controllers = []string{"nocolon"}
	if _, err := o.resolve(); err == nil {
		t.Error("an address without a port was accepted")
	}
}

func TestSplitAddrs(t *testing.T) {
	got := splitAddrs([]string{" a:1, b:2 ,,a:1", "c:3"})
	if strings.Join(got, "|") != "a:1|b:2|c:3" {
		t.Errorf("splitAddrs = %q", got)
	}
}
