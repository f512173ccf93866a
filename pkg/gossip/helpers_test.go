package gossip

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/testsupport"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// nextIP hands every test node its own loopback address, like serf's
// testutil.TakeIP, so nodes can keep the standard port and a restarted node
// gets its old address back. All of 127.0.0.0/8 routes to lo on Linux.
var nextIP atomic.Uint32

func takeIP() string {
	n := nextIP.Add(1)
	return netip.AddrFrom4([4]byte{127, 77, byte(n / 250), byte(n%250 + 1)}).String()
}

// testTimings are serf's own test timings: failures show in milliseconds.
func testTimings() *Timings {
	return &Timings{
		GossipInterval:      5 * time.Millisecond,
		ProbeInterval:       50 * time.Millisecond,
		ProbeTimeout:        25 * time.Millisecond,
		TCPTimeout:          100 * time.Millisecond,
		SuspicionMult:       1,
		ReapInterval:        time.Second,
		ReconnectInterval:   100 * time.Millisecond,
		LeavePropagateDelay: 20 * time.Millisecond,
		BroadcastTimeout:    500 * time.Millisecond,
		// 5 ms × 100: key operations and queries get 0.5 s on a busy 2-core box.
		QueryTimeoutMult: 100,
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("GOSSIP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testKeys struct {
	gossip string
	pub    ed25519.PublicKey
	priv   ed25519.PrivateKey
}

func newTestKeys(t testing.TB) testKeys {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return testKeys{gossip: k, pub: pub, priv: priv}
}

// recorder keeps every member event a node saw.
type recorder struct {
	mu     sync.Mutex
	events []MemberEvent
	fleet  []FleetEvent
}

func (r *recorder) HandleMember(e MemberEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) HandleEvent(e FleetEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fleet = append(r.fleet, e)
}

// saw reports whether a member event of type typ about name was recorded.
func (r *recorder) saw(typ MemberEventType, name string) bool {
	return r.count(typ, name) > 0
}

func (r *recorder) count(typ MemberEventType, name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := 0
	for _, e := range r.events {
		if e.Type != typ {
			continue
		}
		for _, m := range e.Members {
			if m.Name == name {
				c++
			}
		}
	}
	return c
}

func (r *recorder) fleetEvents() []FleetEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]FleetEvent(nil), r.fleet...)
}

type testNode struct {
	*Node
	rec *recorder
}

// startNode starts a node on a fresh loopback IP with test timings. mutate
// may adjust the config before start.
func startNode(t testing.TB, name string, keys testKeys, mutate func(*Config)) *testNode {
	t.Helper()
	cfg := Config{
		NodeName:    name,
		BindAddr:    takeIP(),
		Keys:        []string{keys.gossip},
		Profile:     ProfileCustom,
		Timings:     testTimings(),
		TrustedKeys: []ed25519.PublicKey{keys.pub},
		Tags:        Tags{Role: RoleAgent, RigID: name, Version: "0.1.0", GPUCount: 2, GPUModel: "RTX 3070", GRPC: "ready"},
		Logger:      testLogger(t),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	return startConfig(t, cfg)
}

func startConfig(t testing.TB, cfg Config) *testNode {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeName, err)
	}
	rec := &recorder{}
	n.HandleMembers(rec)
	n.HandleEvents("", rec)
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("Start(%s): %v", cfg.NodeName, err)
	}
	t.Cleanup(func() { closeNode(t, n) })
	return &testNode{Node: n, rec: rec}
}

func closeNode(t testing.TB, n *Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Canceled means the test already closed it on purpose without leaving.
	if err := n.Close(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Close(%s): %v", n.Name(), err)
	}
}

// kill stops a node without leaving, as a crashed rig would.
func kill(n *Node) {
	n.closeOnce.Do(n.shutdown)
}

func joinAll(t testing.TB, nodes ...*testNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range nodes[1:] {
		if _, err := n.Join(ctx, nodes[0].Addr().String()); err != nil {
			t.Fatalf("%s join: %v", n.Name(), err)
		}
	}
	// The test timings probe every 50 ms with a 25 ms timeout, so on a
	// loaded machine (the race detector, other packages' tests beside
	// these) a member can be suspected and come back a few times before
	// all agree; the wait is for them to agree, however long that takes
	// within the bound, and says who saw whom when they do not.
	testsupport.Poll(t, "all nodes see each other", 30*time.Second, func() (bool, string) {
		alive := make([]string, 0, len(nodes))
		ok := true
		for _, n := range nodes {
			a := n.NumAlive()
			ok = ok && a == len(nodes)
			alive = append(alive, fmt.Sprintf("%s sees %d", n.Name(), a))
		}
		return ok, fmt.Sprintf("want %d alive each: %s", len(nodes), strings.Join(alive, ", "))
	})
}

// waitFor polls cond instead of sleeping a guessed time.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, what, timeout, cond)
}

func memberStatus(n *Node, name string) string {
	for _, m := range n.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return "absent"
}

func nodeName(prefix string, i int) string { return fmt.Sprintf("%s-%02d", prefix, i) }

func newDiscard() io.Writer { return io.Discard }
