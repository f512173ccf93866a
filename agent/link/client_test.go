package link

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/quarryfleet/quarry/pkg/leaderhint"
	"github.com/quarryfleet/quarry/pkg/pki"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// reportLog is the controller group's replicated record of one rig's
// reports: every controller resumes from it, as the real ones resume from
// their shared store.
type reportLog struct {
	mu       sync.Mutex
	received []uint64
}

func (l *reportLog) last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.received) == 0 {
		return 0
	}
	return slices.Max(l.received)
}

func (l *reportLog) add(seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.received = append(l.received, seq)
}

func (l *reportLog) seqs() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.received)
}

// fakeController is a controller-like AgentService over mutual TLS: it
// welcomes, resumes from the shared log and acknowledges every report, or,
// once demoted, refuses as a standby naming the leader.
type fakeController struct {
	quarryv1.UnimplementedAgentServiceServer
	log         *reportLog
	controllers []string

	addr     string
	srv      *grpc.Server
	sessions atomic.Int32
	refusing atomic.Pointer[string]
	demoted  chan struct{}
	once     sync.Once
}

func (f *fakeController) demote(hint string) {
	f.refusing.Store(&hint)
	f.once.Do(func() { close(f.demoted) })
}

func (f *fakeController) Connect(stream quarryv1.AgentService_ConnectServer) error {
	if h := f.refusing.Load(); h != nil {
		return leaderhint.Refusal(*h)
	}
	if _, err := stream.Recv(); err != nil {
		return err
	}
	f.sessions.Add(1)
	welcome := &quarryv1.Welcome{ResumeFromSeq: f.log.last() + 1, Settings: &quarryv1.AgentSettings{Controllers: f.controllers}}
	if err := stream.Send(&quarryv1.ConnectResponse{Msg: &quarryv1.ConnectResponse_Welcome{Welcome: welcome}}); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			r := m.GetReport()
			if r == nil {
				continue
			}
			f.log.add(r.Seq)
			if err := stream.Send(&quarryv1.ConnectResponse{Msg: &quarryv1.ConnectResponse_Ack{Ack: &quarryv1.Ack{UpToSeq: r.Seq}}}); err != nil {
				errc <- err
				return
			}
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-f.demoted:
		return leaderhint.Refusal(*f.refusing.Load())
	}
}

type linkFixture struct {
	t  *testing.T
	ca *pki.CA
	id *Identity
}

func newLinkFixture(t *testing.T) *linkFixture {
	ca, err := pki.LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, csr, err := pki.NewKeyAndRequest("rig-1")
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.SignRequest(csr, "rig-1", "rig", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeIdentity(dir, key, der, ca.CertDER); err != nil {
		t.Fatal(err)
	}
	id, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &linkFixture{t: t, ca: ca, id: id}
}

// listen reserves a loopback address for a controller started later, so
// controllers can name each other before they serve.
func (fx *linkFixture) listen() net.Listener {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fx.t.Fatal(err)
	}
	return lis
}

func (fx *linkFixture) serve(lis net.Listener, log *reportLog, controllers []string) *fakeController {
	t := fx.t
	der, key, err := fx.ca.IssueServer([]string{"127.0.0.1"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: fx.ca.Pool(), MinVersion: tls.VersionTLS13,
	}
	f := &fakeController{log: log, controllers: controllers, addr: lis.Addr().String(), demoted: make(chan struct{})}
	f.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	quarryv1.RegisterAgentServiceServer(f.srv, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = f.srv.Serve(lis) }()
	t.Cleanup(func() { f.srv.Stop(); <-done })
	return f
}

// TestFailoverKeepsReportSequence: a rig whose controller steps down (or
// dies) carries on with the next one, and every report arrives exactly
// once, in order, across the move.
func TestFailoverKeepsReportSequence(t *testing.T) {
	for _, mode := range []string{"refuses with hint", "dies"} {
		t.Run(mode, func(t *testing.T) {
			fx := newLinkFixture(t)
			lisA, lisB, lisDead := fx.listen(), fx.listen(), fx.listen()
			dead := lisDead.Addr().String()
			lisDead.Close()
			group := []string{lisA.Addr().String(), dead, lisB.Addr().String()}
			log := &reportLog{}
			a := fx.serve(lisA, log, group)
			b := fx.serve(lisB, log, group)

			stateDir := t.TempDir()
			configured := []string{a.addr}
			if mode == "dies" {
				// A dead leader gives no hint: the rig must already know
				// the others, from configuration.
				configured = []string{a.addr, dead, b.addr}
			}
			ctrls, err := NewControllers(configured, stateDir)
			if err != nil {
				t.Fatal(err)
			}
			buf, _ := openBuffer(t, filepath.Join(t.TempDir(), "agent.db"), 1000)
			c := &Client{Controllers: ctrls, Identity: fx.id, Buffer: buf, Log: slog.New(slog.DiscardHandler),
				// A long backoff: moving to the hinted leader must not
				// wait for it.
				BackoffBase: 20 * time.Second, BackoffMax: 20 * time.Second}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })

			appendReports := func(n int) {
				for range n {
					if _, err := buf.Append(&quarryv1.Report{}); err != nil {
						t.Fatal(err)
					}
				}
			}
			appendReports(5)
			testsupport.Eventually(t, "first reports acknowledged by the first controller", 10*time.Second, func() bool { return buf.Acked() == 5 })
			if mode == "refuses with hint" {
				testsupport.Eventually(t, "learned controllers", 5*time.Second, func() bool { return len(ctrls.List()) == 3 })
			}

			switch mode {
			case "refuses with hint":
				a.demote(b.addr)
			case "dies":
				a.srv.Stop()
			}
			// Reports buffered while the link moves.
			appendReports(5)
			start := time.Now()
			testsupport.Poll(t, "every report acknowledged after the move", 4*time.Second, func() (bool, string) {
				return buf.Acked() == 10, fmt.Sprint(log.seqs())
			})
			if b.sessions.Load() == 0 {
				t.Error("the second controller never had a session")
			}
			if time.Since(start) > 4*time.Second {
				t.Error("the move waited for a backoff")
			}
			want := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
			if got := log.seqs(); !slices.Equal(got, want) {
				t.Errorf("controllers received %v, want each of 1..10 once, in order", got)
			}
			if got := ctrls.Current(); got != b.addr {
				t.Errorf("current controller %s, want %s", got, b.addr)
			}

			// The learned list survives a restart.
			again, err := NewControllers([]string{a.addr}, stateDir)
			if err != nil {
				t.Fatal(err)
			}
			if mode == "refuses with hint" && !slices.Equal(again.List(), group) {
				t.Errorf("reloaded controllers %v, want %v", again.List(), group)
			}
		})
	}
}

// TestHintOutsideKnownListIgnored: a standby naming an address the rig
// does not know is not followed.
func TestHintOutsideKnownListIgnored(t *testing.T) {
	ctrls, err := NewControllers([]string{"a:1", "b:2", "c:3"}, "")
	if err != nil {
		t.Fatal(err)
	}
	tried := map[string]bool{"a:1": true}
	if next, done := ctrls.advance("a:1", "evil:666", tried); next != "b:2" || done {
		t.Errorf("advance with unknown hint = %s, %v; want b:2, false", next, done)
	}
	tried["b:2"] = true
	if next, done := ctrls.advance("b:2", "a:1", tried); next != "c:3" || done {
		t.Errorf("advance with hint already tried = %s, %v; want c:3, false", next, done)
	}
	if next, done := ctrls.advance("a:1", "c:3", map[string]bool{"a:1": true}); next != "c:3" || done {
		t.Errorf("advance with known hint = %s, %v; want c:3, false", next, done)
	}
	tried["c:3"] = true
	if next, done := ctrls.advance("c:3", "", tried); next != "a:1" || !done {
		t.Errorf("advance at end of round = %s, %v; want a:1, true", next, done)
	}
	if slices.Contains(ctrls.List(), "evil:666") {
		t.Error("a hint was added to the known list")
	}
}

// TestLearnCapsAndValidates: the list comes from the network, so only
// well-formed addresses are kept, up to MaxControllers.
func TestLearnCapsAndValidates(t *testing.T) {
	dir := t.TempDir()
	ctrls, err := NewControllers([]string{"ctl-1:7443", "ctl-2:7443"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	var garbage []string
	for i := range 100 {
		switch i % 5 {
		case 0:
			garbage = append(garbage, fmt.Sprintf("ctl-%d:7443", i))
		case 1:
			garbage = append(garbage, strings.Repeat("x", 300)+":7443")
		case 2:
			garbage = append(garbage, fmt.Sprintf("no-port-%d", i))
		case 3:
			garbage = append(garbage, fmt.Sprintf("bad port-%d:99999", i))
		case 4:
			garbage = append(garbage, ":7443", "ctl-1:7443", "host:0", "evil\n:1")
		}
	}
	if _, err := ctrls.Learn(garbage); err != nil {
		t.Fatal(err)
	}
	check := func(list []string) {
		t.Helper()
		if len(list) != MaxControllers {
			t.Errorf("%d controllers kept, want %d", len(list), MaxControllers)
		}
		if list[0] != "ctl-1:7443" || list[1] != "ctl-2:7443" {
			t.Errorf("configured controllers not first: %v", list[:2])
		}
		for _, a := range list {
			if err := CheckAddr(a); err != nil || !strings.HasPrefix(a, "ctl-") {
				t.Errorf("kept %q (%v)", a, err)
			}
		}
	}
	check(ctrls.List())
	reloaded, err := NewControllers([]string{"ctl-1:7443", "ctl-2:7443"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	check(reloaded.List())
	if grew, _ := reloaded.Learn([]string{"ctl-200:7443"}); grew {
		t.Error("the list grew past the cap")
	}
}

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:7443", true},
		{"ctl.example.net:7443", true},
		{"[::1]:7443", true},
		{"ctl.example.net", false},
		{":7443", false},
		{"ctl:port", false},
		{"ctl:0", false},
		{"ctl:70000", false},
		{"a b:1", false},
		{strings.Repeat("a", 300) + ":1", false},
	} {
		if err := CheckAddr(tc.addr); (err == nil) != tc.ok {
			t.Errorf("CheckAddr(%q) = %v, want ok %v", tc.addr, err, tc.ok)
		}
	}
}
