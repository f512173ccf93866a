package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/controller/snapshot"
	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestMain(m *testing.M) {
	// A restore checks the received file in a child process of the
	// running program, which in these tests is the test binary.
	if len(os.Args) > 1 && os.Args[1] == snapshot.CheckCommand {
		os.Exit(snapshot.RunCheck(os.Args[2:], os.Stdout))
	}
	goleak.VerifyTestMain(m,
		// grpc's and net/http's background goroutines end shortly after
		// their owners close; these are the known long-lived ones.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// memberlist's last probe can outlive Shutdown by up to one probe
		// timeout; it holds no resources and ends on its own.
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
		// serf.Create starts its internal query handler before it creates
		// memberlist and leaves it running when that fails (the gossip port
		// is taken, here by another package's test): a goroutine of the
		// library's, which the node that failed to start never owned.
		goleak.IgnoreTopFunction("github.com/hashicorp/serf/serf.(*serfQueries).stream"),
	)
}

type testController struct {
	*Controller
	cancel context.CancelFunc
	done   chan error
	dir    string
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func startTestController(t testing.TB, mutate func(*Config), extra ...grpc.ServerOption) *testController {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.ShutdownGrace = 2 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg, "test", quietLog(), extra...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tc := &testController{Controller: c, cancel: cancel, done: make(chan error, 1), dir: cfg.DataDir}
	go func() { tc.done <- c.Serve(ctx) }()
	t.Cleanup(tc.stop)
	return tc
}

// agentStreams watches the controller's AgentService streams: how many
// it refused and how often it sent each command.
type agentStreams struct {
	refused atomic.Int32
	mu      sync.Mutex
	sent    map[string]int
}

func (w *agentStreams) options() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if info.FullMethod != quarryv1.AgentService_Connect_FullMethodName {
			return h(srv, ss)
		}
		err := h(srv, sendWatch{ss, w})
		if status.Code(err) == codes.PermissionDenied {
			w.refused.Add(1)
		}
		return err
	})}
}

// timesSent is how often the command went out to a rig.
func (w *agentStreams) timesSent(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sent[id]
}

type sendWatch struct {
	grpc.ServerStream
	w *agentStreams
}

func (s sendWatch) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if r, ok := m.(*quarryv1.ConnectResponse); ok && err == nil && r.GetCommand() != nil {
		s.w.mu.Lock()
		if s.w.sent == nil {
			s.w.sent = map[string]int{}
		}
		s.w.sent[r.GetCommand().Id]++
		s.w.mu.Unlock()
	}
	return err
}

func (tc *testController) stop() {
	if tc.cancel == nil {
		return
	}
	tc.cancel()
	<-tc.done
	tc.cancel = nil
}

func (tc *testController) token(t *testing.T, ttl time.Duration, uses uint32) string {
	t.Helper()
	tok, _, err := tc.Fleet().CreateToken(tc.CA().Hash(), ttl, uses, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// testAgent is a real agent link (buffer in a real bbolt file, real gRPC
// client) running in the test process.
type testAgent struct {
	id     *link.Identity
	buf    *link.Buffer
	db     *bolt.DB
	cancel context.CancelFunc
	done   chan error
	dir    string
}

func enrollAgent(t *testing.T, tc *testController, token string) *testAgent {
	t.Helper()
	dir := t.TempDir()
	id, err := link.Enroll(context.Background(), filepath.Join(dir, "pki"), tc.GRPCAddr(), token, "test-host")
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	db, err := store.Open(filepath.Join(dir, "agent.db"), link.Buckets...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	buf, err := link.OpenBuffer(db, 10000, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return &testAgent{id: id, buf: buf, db: db, dir: dir}
}

func (a *testAgent) run(t *testing.T, tc *testController, handler link.CommandHandler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.done = make(chan error, 1)
	c := &link.Client{Addr: tc.GRPCAddr(), ServerName: "127.0.0.1", Identity: a.id, Buffer: a.buf, Handler: handler, Log: quietLog(), BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
	go func() { a.done <- c.Run(ctx) }()
	t.Cleanup(a.stop)
}

func (a *testAgent) stop() {
	if a.cancel != nil {
		a.cancel()
		<-a.done
		a.cancel = nil
	}
}

func (a *testAgent) report(t *testing.T, n int) {
	t.Helper()
	for range n {
		if _, err := a.buf.Append(&quarryv1.Report{TimeUnixNano: time.Now().UnixNano(), Host: &quarryv1.HostStats{CpuPercent: 12}}); err != nil {
			t.Fatal(err)
		}
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, what, 30*time.Second, cond)
}

// adminConn dials FleetService with the local admin token, or with the
// given token if not empty.
func adminConn(t testing.TB, tc *testController, token string) quarryv1.FleetServiceClient {
	t.Helper()
	if token == "" {
		b, err := os.ReadFile(filepath.Join(tc.dir, AdminTokenFile))
		if err != nil {
			t.Fatal(err)
		}
		token = strings.TrimSpace(string(b))
	}
	pool := x509.NewCertPool()
	pool.AddCert(tc.CA().Cert)
	conn, err := grpc.NewClient(tc.GRPCAddr(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})),
		grpc.WithPerRPCCredentials(bearerCreds(token)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return quarryv1.NewFleetServiceClient(conn)
}

type bearerCreds string

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearerCreds) RequireTransportSecurity() bool { return true }

// rigConn dials AgentService with an arbitrary TLS client configuration.
func rigConn(t *testing.T, tc *testController, cfg *tls.Config) quarryv1.AgentServiceClient {
	t.Helper()
	if cfg.RootCAs == nil && !cfg.InsecureSkipVerify {
		pool := x509.NewCertPool()
		pool.AddCert(tc.CA().Cert)
		cfg.RootCAs = pool
		cfg.ServerName = "127.0.0.1"
	}
	conn, err := grpc.NewClient(tc.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return quarryv1.NewAgentServiceClient(conn)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func adminConnRaw(t *testing.T, tc *testController, token string) *grpc.ClientConn {
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
	return conn
}

func credsFor(a *testAgent) credentials.TransportCredentials {
	return credentials.NewTLS(a.id.TLSConfig("127.0.0.1"))
}
