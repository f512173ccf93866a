// Package gossipd runs the controller's side of fleet gossip: its serf
// node, the keyring it hands rigs and rotates, the rig gossip status it
// records from membership, and GossipService, which sends signed fleet
// events and queries.
package gossipd

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/gossip"
	"github.com/quarryfleet/quarry/pkg/pki"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Files the gossip node keeps in the data dir, readable only by the owner.
const (
	// KeyringFile is the serf keyring (JSON array of base64 keys,
	// primary first), the format `serf agent -keyring-file` reads.
	KeyringFile = "gossip-keyring.json"
	// EventKeyFile is the ed25519 key that signs fleet events and
	// queries (PEM PKCS#8).
	EventKeyFile = "gossip-event.key"
)

// Fleet event kinds and query names agents act on.
var (
	gossipEventKinds  = []string{"pause", "resume"}
	gossipQueryNames  = []string{"temps", "hashrate", "version"}
	defaultQueryWait  = 5 * time.Second
	maxQueryWait      = time.Minute
	gossipReconcile   = 15 * time.Second
	gossipLeaveBudget = 5 * time.Second
)

// Settle is how long after start a rig still recorded alive but unknown to
// gossip is taken to be stale (it died while the controller was down, so
// no one will report it failed).
const Settle = time.Minute

// Config configures the controller's gossip node.
type Config struct {
	Enabled     bool          `yaml:"enabled" flag:"gossip-enabled" help:"run a serf gossip node for failure detection, fleet events and queries"`
	NodeName    string        `yaml:"node_name" flag:"gossip-name" help:"gossip member name (default controller-<hostname>)"`
	BindAddr    string        `yaml:"bind_addr" flag:"gossip-bind" help:"IP the gossip port listens on"`
	BindPort    int           `yaml:"bind_port" flag:"gossip-port" help:"gossip UDP and TCP port; 0 picks a free one"`
	Advertise   string        `yaml:"advertise" flag:"gossip-advertise" help:"address other members dial, IP or IP:port (behind NAT); default the bound address"`
	Join        []string      `yaml:"join" flag:"gossip-join" help:"gossip addresses host:port to join at start, comma-separated"`
	Profile     string        `yaml:"profile" flag:"gossip-profile" help:"failure detection timings: lan (serf's stock, 5-20s) or tuned (about 3s)"`
	EventMaxAge time.Duration `yaml:"event_max_age" help:"oldest signed fleet event or query this node accepts"`
}

// DefaultConfig is gossip on loopback at serf's conventional port.
func DefaultConfig() Config {
	return Config{
		Enabled:     true,
		BindAddr:    "127.0.0.1",
		BindPort:    gossip.DefaultPort,
		Profile:     string(gossip.ProfileLAN),
		EventMaxAge: 2 * time.Minute,
	}
}

// Validate names a bad gossip setting.
func (g Config) Validate() error {
	if !g.Enabled {
		return nil
	}
	if g.BindAddr == "" {
		return errors.New("gossip.bind_addr: must be set (127.0.0.1 by default; 0.0.0.0 for all interfaces)")
	}
	return gossip.Settings{BindAddr: g.BindAddr, BindPort: g.BindPort, Advertise: g.Advertise, Join: g.Join, Profile: g.Profile, EventMaxAge: g.EventMaxAge}.Validate()
}

// Runtime is the controller's gossip node and the goroutine that turns
// member events into rig gossip status.
type Runtime struct {
	cfg     Config
	dir     string
	version string
	log     *slog.Logger
	fleet   *fleet.Fleet
	keyring KeyringStore // nil: the file alone

	signer ed25519.PrivateKey
	node   atomic.Pointer[gossip.Node]
	// startErr says why gossip is not running although enabled.
	startErr atomic.Pointer[error]

	updates chan gossipStatus
	dirty   atomic.Bool
	started time.Time
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// keysMu guards handout, the keyring rigs are given over gRPC, the
	// channel closed when it changes, and what each rig's stream last
	// handed over (by primary key).
	keysMu      sync.Mutex
	handout     []string
	keysChanged chan struct{}
	sent        map[string]string
	// rotateMu makes rotations one at a time.
	rotateMu sync.Mutex

	// rigKeysMu guards rigKeys: each rig's certificate public key, as
	// presented on its mTLS stream; its gossip identity must verify with it.
	rigKeysMu sync.Mutex
	rigKeys   map[string]crypto.PublicKey
	// unverified counts member claims and answers that did not verify.
	unverified atomic.Uint64
}

// verifyMember says whether m may be taken for the rig it names: its
// identity tag must be signed with the key of the certificate that rig
// presented on its gRPC link.
func (g *Runtime) verifyMember(m gossip.Member) (bool, string) {
	if n := g.node.Load(); n != nil && m.Name == n.Name() {
		return true, ""
	}
	g.rigKeysMu.Lock()
	pub := g.rigKeys[m.Name]
	g.rigKeysMu.Unlock()
	if pub == nil {
		return false, "no certificate seen for this rig on its gRPC link since the controller started"
	}
	if err := gossip.VerifyMember(pub, m); err != nil {
		return false, err.Error()
	}
	return true, ""
}

func (g *Runtime) verifyAnswer(a gossip.Answer) error {
	g.rigKeysMu.Lock()
	pub := g.rigKeys[a.From]
	g.rigKeysMu.Unlock()
	if pub == nil {
		return errors.New("no certificate seen for this rig on its gRPC link")
	}
	return gossip.VerifyAnswer(pub, a)
}

// RigCertificate records the certificate a rig presented on its gRPC
// stream: its key must sign the rig's gossip identity.
func (g *Runtime) RigCertificate(rigID string, cert *x509.Certificate) {
	g.rigKeysMu.Lock()
	defer g.rigKeysMu.Unlock()
	g.rigKeys[rigID] = cert.PublicKey
}

// rotateDeliverWait bounds how long a rotation waits for every connected
// rig to be handed the new key before the controller switches to it; a rig
// that misses it takes it from the Welcome when it reconnects.
var rotateDeliverWait = 10 * time.Second

type gossipStatus struct{ rig, status string }

// Options is what the runtime needs from the controller.
type Options struct {
	Config  Config
	DataDir string
	Version string
	Fleet   *fleet.Fleet
	Log     *slog.Logger
	// Keyring, when set, is where the keyring lives beside the file: a
	// controller group's replicated state, so the member that leads next
	// hands rigs the key the last rotation chose, not its own old copy.
	Keyring KeyringStore
}

// KeyringStore keeps the keyring, primary first; ok is false while none
// has been stored.
type KeyringStore interface {
	LoadKeyring() (keys []string, ok bool, err error)
	SaveKeyring(keys []string) error
}

// Open loads or creates the keyring and the event signing key. The node
// itself starts in Start; GossipService answers either way.
func Open(o Options) (*Runtime, error) {
	g := &Runtime{cfg: o.Config, dir: o.DataDir, version: o.Version, log: o.Log.With("component", "gossip"), fleet: o.Fleet, updates: make(chan gossipStatus, 4096),
		keysChanged: make(chan struct{}), sent: map[string]string{}, rigKeys: map[string]crypto.PublicKey{}}
	if !g.cfg.Enabled {
		return g, nil
	}
	keys, err := g.openKeyring(o.Keyring)
	if err != nil {
		return nil, err
	}
	g.handout = keys
	g.keyring = o.Keyring
	signer, err := loadOrCreateEventKey(filepath.Join(g.dir, EventKeyFile))
	if err != nil {
		return nil, err
	}
	g.signer = signer
	return g, nil
}

// Node is the running gossip node; nil while gossip is off or did not
// start.
func (g *Runtime) Node() *gossip.Node { return g.node.Load() }

// EventPublicKey is the key rigs check fleet events and queries with; nil
// while gossip is off.
func (g *Runtime) EventPublicKey() ed25519.PublicKey {
	if g.signer == nil {
		return nil
	}
	return g.signer.Public().(ed25519.PublicKey)
}

// Unverified counts member claims and query answers that did not verify.
func (g *Runtime) Unverified() uint64 { return g.unverified.Load() }

// Server is GossipService over this runtime.
func (g *Runtime) Server() *GossipServer { return &GossipServer{g: g, log: g.log} }

// GossipRoles is the least role each GossipService method needs.
var GossipRoles = map[string]string{
	quarryv1.GossipService_ListMembers_FullMethodName: auth.RoleViewer,
	quarryv1.GossipService_FleetEvent_FullMethodName:  auth.RoleOperator,
	quarryv1.GossipService_FleetQuery_FullMethodName:  auth.RoleOperator,
	quarryv1.GossipService_RotateKeys_FullMethodName:  auth.RoleAdmin,
}

// GossipAudit is the audit action of each GossipService method: every
// call is audited, since what the gossip mesh says is a fleet's secret
// too; handlers add the event kind, query name or rotation step.
var GossipAudit = map[string]string{
	quarryv1.GossipService_ListMembers_FullMethodName: "gossip.members",
	quarryv1.GossipService_FleetEvent_FullMethodName:  "gossip.event",
	quarryv1.GossipService_FleetQuery_FullMethodName:  "gossip.query",
	quarryv1.GossipService_RotateKeys_FullMethodName:  "gossip.keys",
}

// Enrollment is what enrollment and Welcome hand to agents: the
// current keyring, the controller's gossip address and the key that signs
// fleet events. All empty while gossip is not running.
//
// The keyring handed out is the one the controller created and stored,
// never its live serf keyring, which another member's key query could
// have changed for a moment.
func (g *Runtime) Enrollment(e fleet.Enrollment) fleet.Enrollment {
	e.GossipKeys = g.handoutKeys
	e.GossipKeysChanged = g.handoutChanged
	e.GossipKeysSent = g.keysSent
	e.RigCertificate = g.RigCertificate
	e.GossipJoin = func() []string {
		if n := g.node.Load(); n != nil {
			return []string{n.Addr().String()}
		}
		return nil
	}
	if g.signer != nil {
		e.EventPubKey = g.signer.Public().(ed25519.PublicKey)
	}
	return e
}

// openKeyring returns the keyring: the stored one when a store holds
// it, written over the file the gossip node reads; otherwise the file's,
// which seeds the store.
func (g *Runtime) openKeyring(ks KeyringStore) ([]string, error) {
	path := filepath.Join(g.dir, KeyringFile)
	if ks != nil {
		keys, ok, err := ks.LoadKeyring()
		if err != nil {
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		if ok {
			for i, k := range keys {
				if _, err := gossip.DecodeKey(k); err != nil {
					return nil, fmt.Errorf("stored gossip keyring: key %d: %w", i, err)
				}
			}
			b, _ := json.Marshal(keys)
			if err := pki.WriteFileAtomic(path, b, 0o600); err != nil {
				return nil, fmt.Errorf("gossip keyring: %w", err)
			}
			return keys, nil
		}
	}
	keys, err := ensureKeyring(path)
	if err != nil || ks == nil {
		return keys, err
	}
	if err := ks.SaveKeyring(keys); err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	return keys, nil
}

// ensureKeyring returns the stored keyring, primary first, creating a
// key on first start. This file is the controller's source of truth: only
// the controller writes it, with keys it generated.
func ensureKeyring(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		var keys []string
		if err := json.Unmarshal(b, &keys); err != nil || len(keys) == 0 {
			return nil, fmt.Errorf("gossip keyring %s: not a JSON array of keys (%v)", path, err)
		}
		for i, k := range keys {
			if _, err := gossip.DecodeKey(k); err != nil {
				return nil, fmt.Errorf("gossip keyring %s: key %d: %w", path, i, err)
			}
		}
		return keys, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	k, err := gossip.GenerateKey()
	if err != nil {
		return nil, err
	}
	b, _ = json.Marshal([]string{k})
	if err := pki.WriteFileAtomic(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	return []string{k}, nil
}

func loadOrCreateEventKey(path string) (ed25519.PrivateKey, error) {
	if _, err := os.Stat(path); err == nil {
		k, err := pki.ReadKeyFile(path)
		if err != nil {
			return nil, fmt.Errorf("gossip event key %s: %w", path, err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("gossip event key %s: not an ed25519 key", path)
		}
		return ek, nil
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("gossip event key: %w", err)
	}
	b, err := pki.EncodeKey(k)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteFileAtomic(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("gossip event key: %w", err)
	}
	return k, nil
}

// Start starts the node. A node that cannot start (the port is
// taken, say) is logged as an error and reported by GossipService; the
// controller's other duties go on without it.
func (g *Runtime) Start() {
	if !g.cfg.Enabled || g.cancel != nil {
		return
	}
	n, err := g.newNode(g.version)
	if err == nil {
		err = gossip.CheckPortFree(g.cfg.BindAddr, g.cfg.BindPort)
	}
	if err == nil {
		err = n.Start(context.Background())
	}
	if err != nil {
		err = fmt.Errorf("gossip is not running: %w", err)
		g.startErr.Store(&err)
		g.log.Error("gossip node did not start; fleet events, queries and gossip failure detection are off", "err", err)
		return
	}
	g.node.Store(n)
	g.keysMu.Lock()
	g.handout = n.Keys()
	g.keysMu.Unlock()
	g.started = time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.statusLoop(ctx)
	}()
}

func (g *Runtime) newNode(version string) (*gossip.Node, error) {
	name := g.cfg.NodeName
	if name == "" {
		name = "controller-" + hostname()
	}
	port := g.cfg.BindPort
	if port == 0 {
		port = -1
	}
	advAddr, advPort, _ := gossip.ParseAdvertise(g.cfg.Advertise)
	n, err := gossip.New(gossip.Config{
		NodeName:      name,
		BindAddr:      g.cfg.BindAddr,
		BindPort:      port,
		AdvertiseAddr: advAddr,
		AdvertisePort: advPort,
		Join:          g.cfg.Join,
		Tags:          gossip.Tags{Role: gossip.RoleController, Version: version},
		KeyringFile:   filepath.Join(g.dir, KeyringFile),
		Profile:       gossip.Profile(g.cfg.Profile),
		SigningKey:    g.signer,
		TrustedKeys:   []ed25519.PublicKey{g.signer.Public().(ed25519.PublicKey)},
		EventWindow:   g.cfg.EventMaxAge,
		Logger:        g.log,
		OnKeyringTamper: func(kt gossip.KeyringTamper) {
			g.auditSystem("gossip.keyring_tamper", "undone", fmt.Sprintf("a member's key query changed the keyring to %v; restored %v", kt.Found, kt.Restored))
		},
	})
	if err != nil {
		return nil, err
	}
	n.HandleMembers(gossip.MemberHandlerFunc(g.onMembers))
	return n, nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}

// Stop leaves the cluster (quickly, without a leave when no one else
// is there to hear it) and ends the status goroutine.
func (g *Runtime) Stop() {
	if g.cancel == nil {
		return
	}
	n := g.node.Load()
	ctx, cancel := context.WithTimeout(context.Background(), gossipLeaveBudget)
	if n.NumAlive() <= 1 {
		cancel() // alone: a leave would only wait for serf's propagation delay
	}
	if err := n.Close(ctx); err != nil && n.NumAlive() > 1 {
		g.log.Warn("gossip leave", "err", err)
	}
	cancel()
	g.cancel()
	g.wg.Wait()
	g.cancel = nil
}

// onMembers runs on the gossip event loop, so it only queues.
func (g *Runtime) onMembers(e gossip.MemberEvent) {
	var st string
	switch e.Type {
	case gossip.MemberJoin, gossip.MemberUpdate:
		st = "alive"
	case gossip.MemberFailed:
		st = "failed"
	case gossip.MemberLeave, gossip.MemberReap:
		// A member removed from the cluster (a revoked rig evicted, or
		// one failed for longer than serf keeps it) is gone; serf
		// v0.10 erases an evicted member at once, with no leave or
		// failure event before the reap.
		st = "left"
	default:
		return
	}
	for _, m := range e.Members {
		if m.Tags.Role == gossip.RoleController {
			continue
		}
		st := st
		if st == "alive" {
			if ok, why := g.verifyMember(m); !ok {
				g.unverified.Add(1)
				g.log.Warn("gossip member claims a rig identity it cannot prove", "member", m.Name, "addr", m.Addr.String(), "reason", why)
				st = "unverified"
			}
		}
		select {
		case g.updates <- gossipStatus{rig: m.Name, status: st}:
		default:
			g.dirty.Store(true) // the reconcile pass catches up
		}
	}
}

// statusLoop writes member changes into the rigs' gossip status as they
// come, and reconciles every rig with serf's member list periodically and
// whenever updates were dropped.
func (g *Runtime) statusLoop(ctx context.Context) {
	t := time.NewTicker(gossipReconcile)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-g.updates:
			g.setStatus(u.rig, u.status)
		case <-t.C:
			g.Reconcile(time.Now())
		}
		if g.dirty.Swap(false) {
			g.Reconcile(time.Now())
		}
	}
}

func (g *Runtime) setStatus(rigID, st string) {
	r, err := g.fleet.Rig(rigID)
	if err != nil || r.GossipStatus == st {
		return // not a rig of this fleet (a stock serf agent, say), or unchanged
	}
	if err := g.fleet.UpdateRig(rigID, func(r *quarryv1.Rig) { r.GossipStatus = st }); err != nil {
		g.log.Warn("store gossip status", "rig", rigID, "err", err)
		return
	}
	g.log.Info("rig gossip status", "rig", rigID, "status", st, "was", r.GossipStatus)
}

// Reconcile sets every rig's gossip status from serf's member list as of
// now; the status loop calls it periodically and whenever updates were
// dropped.
func (g *Runtime) Reconcile(now time.Time) {
	n := g.node.Load()
	if n == nil {
		return
	}
	g.evictRevoked(n)
	known := map[string]bool{}
	for _, m := range n.Members() {
		known[m.Name] = true
		if m.Tags.Role == gossip.RoleController {
			continue
		}
		st := m.Status
		if st == "leaving" {
			st = "left"
		}
		if st == "alive" {
			if ok, _ := g.verifyMember(m); !ok {
				st = "unverified"
			}
		}
		g.setStatus(m.Name, st)
	}
	if now.Sub(g.started) < Settle {
		return
	}
	for _, r := range g.fleet.Rigs() {
		if r.GossipStatus == "alive" && !known[r.Id] {
			g.setStatus(r.Id, "unknown")
		}
	}
}

// gossipServer implements GossipService.
// GossipServer implements GossipService.
type GossipServer struct {
	quarryv1.UnimplementedGossipServiceServer
	g   *Runtime
	log *slog.Logger
}

var _ quarryv1.GossipServiceServer = (*GossipServer)(nil)

func (s *GossipServer) nodeOrErr() (*gossip.Node, error) {
	if n := s.g.node.Load(); n != nil {
		return n, nil
	}
	if p := s.g.startErr.Load(); p != nil {
		return nil, status.Error(codes.Unavailable, (*p).Error())
	}
	return nil, status.Error(codes.FailedPrecondition, "gossip is off on this controller (gossip.enabled)")
}

func (s *GossipServer) ListMembers(ctx context.Context, _ *quarryv1.ListMembersRequest) (resp *quarryv1.ListMembersResponse, err error) {
	n, err := s.nodeOrErr()
	if err != nil {
		return nil, err
	}
	resp = &quarryv1.ListMembersResponse{Local: n.Name()}
	for _, m := range n.Members() {
		ok, why := s.g.verifyMember(m)
		resp.Members = append(resp.Members, &quarryv1.GossipMember{Name: m.Name, Addr: m.Addr.String(), Status: m.Status, Tags: m.RawTags, Verified: ok, Unverified: why})
	}
	slices.SortFunc(resp.Members, func(a, b *quarryv1.GossipMember) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return resp, nil
}

// agentSelector defaults to every agent and checks the syntax.
func agentSelector(sel string) (string, gossip.Selector, error) {
	if sel == "" || sel == "*" {
		sel = gossip.TagRole + "=" + string(gossip.RoleAgent)
	}
	parsed, err := gossip.ParseSelector(sel)
	if err != nil {
		return "", gossip.Selector{}, status.Error(codes.InvalidArgument, err.Error())
	}
	return sel, parsed, nil
}

func (s *GossipServer) FleetEvent(ctx context.Context, req *quarryv1.FleetEventRequest) (resp *quarryv1.FleetEventResponse, err error) {
	a := auth.Note(ctx)
	a.Action, a.Target = "gossip.event."+req.GetKind(), req.GetSelector()
	if !slices.Contains(gossipEventKinds, req.GetKind()) {
		return nil, status.Errorf(codes.InvalidArgument, "event kind %q: want pause or resume", req.GetKind())
	}
	sel, parsed, err := agentSelector(req.GetSelector())
	if err != nil {
		return nil, err
	}
	n, err := s.nodeOrErr()
	if err != nil {
		return nil, err
	}
	var targets []string
	for _, m := range n.Members() {
		if m.Status == "alive" && m.Tags.Role == gossip.RoleAgent && parsed.Match(m.Name, m.RawTags) {
			targets = append(targets, m.Name)
		}
	}
	slices.Sort(targets)
	body, _ := json.Marshal(map[string]string{"by": auth.CallerFrom(ctx).Name})
	id, err := n.Broadcast(ctx, req.GetKind(), sel, body)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	a.Detail = fmt.Sprintf("event %s to %d alive agents", id, len(targets))
	return &quarryv1.FleetEventResponse{EventId: id, Targets: targets}, nil
}

func (s *GossipServer) FleetQuery(req *quarryv1.FleetQueryRequest, stream grpc.ServerStreamingServer[quarryv1.FleetQueryResponse]) (err error) {
	ctx := stream.Context()
	a := auth.Note(ctx)
	a.Action, a.Target = "gossip.query."+req.GetName(), req.GetSelector()
	if !slices.Contains(gossipQueryNames, req.GetName()) {
		return status.Errorf(codes.InvalidArgument, "query %q: want temps, hashrate or version", req.GetName())
	}
	wait := time.Duration(req.GetTimeoutMs()) * time.Millisecond
	switch {
	case wait < 0 || wait > maxQueryWait:
		return status.Errorf(codes.InvalidArgument, "timeout %s: want up to %s", wait, maxQueryWait)
	case wait == 0:
		wait = defaultQueryWait
	}
	sel, parsed, err := agentSelector(req.GetSelector())
	if err != nil {
		return err
	}
	n, err := s.nodeOrErr()
	if err != nil {
		return err
	}
	var unreachable []*quarryv1.GossipMember
	for _, m := range n.Members() {
		if (m.Status == "failed" || m.Status == "left") && parsed.Match(m.Name, m.RawTags) {
			unreachable = append(unreachable, &quarryv1.GossipMember{Name: m.Name, Addr: m.Addr.String(), Status: m.Status, Tags: m.RawTags})
		}
	}
	res, err := n.Query(ctx, req.GetName(), sel, wait)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	answered := 0
	var sendErr error
	var unverified []string
	for a := range res.Answers() {
		if sendErr != nil {
			continue // drain so the query finishes
		}
		if verr := s.g.verifyAnswer(a); verr != nil {
			// Not attributed to the rig it names: anyone with the gossip
			// key can answer under any name.
			s.g.unverified.Add(1)
			s.log.Warn("dropped a query answer that does not verify", "query", req.GetName(), "from", a.From, "reason", verr)
			unverified = append(unverified, a.From)
			continue
		}
		answered++
		sendErr = stream.Send(&quarryv1.FleetQueryResponse{Msg: &quarryv1.FleetQueryResponse_Answer{Answer: &quarryv1.FleetQueryAnswer{From: a.From, Payload: a.Payload, Error: a.Err}}})
	}
	if sendErr != nil {
		return sendErr
	}
	missing := res.Missing()
	for _, u := range unverified {
		if slices.Contains(res.Expected(), u) && !slices.Contains(missing, u) {
			missing = append(missing, u)
		}
	}
	a.Detail = fmt.Sprintf("%d answers, %d of %d expected missing, %d unreachable, %d unverified dropped", answered, len(missing), len(res.Expected()), len(unreachable), len(unverified))
	return stream.Send(&quarryv1.FleetQueryResponse{Msg: &quarryv1.FleetQueryResponse_Summary{Summary: &quarryv1.FleetQuerySummary{Expected: res.Expected(), Missing: missing, Unreachable: unreachable, Unverified: unverified}}})
}

func (s *GossipServer) RotateKeys(ctx context.Context, req *quarryv1.RotateKeysRequest) (resp *quarryv1.RotateKeysResponse, err error) {
	a := auth.Note(ctx)
	a.Action = "gossip.keys." + req.GetStep()
	switch req.GetStep() {
	case "rotate":
		if req.GetKey() != "" {
			return nil, status.Error(codes.InvalidArgument, "rotate generates its own key; pass none")
		}
	case "install", "use", "remove":
		return nil, status.Errorf(codes.InvalidArgument, "step %q: the controller only uses gossip keys it generates itself; use rotate", req.GetStep())
	default:
		return nil, status.Errorf(codes.InvalidArgument, "step %q: want rotate", req.GetStep())
	}
	n, err := s.nodeOrErr()
	if err != nil {
		return nil, err
	}
	r, err := s.g.rotate(ctx, n)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	step := &quarryv1.KeyStepResult{Step: "rotate", KeyFingerprint: gossip.KeyFingerprint(r.key), Nodes: int32(len(r.connected)), Responses: int32(len(r.connected) - len(r.missed)), Errors: int32(len(r.missed)), Messages: map[string]string{}}
	for _, rig := range r.missed {
		step.Messages[rig] = "not handed the new key in time; it takes it when its gRPC link reconnects"
	}
	resp = &quarryv1.RotateKeysResponse{Steps: []*quarryv1.KeyStepResult{step}}
	for _, k := range n.Keys() {
		resp.KeyringFingerprints = append(resp.KeyringFingerprints, gossip.KeyFingerprint(k))
	}
	a.Detail = fmt.Sprintf("new key %s handed to %d of %d connected rigs over gRPC; old key %s removed; %d revoked members evicted",
		step.KeyFingerprint, step.Responses, step.Nodes, gossip.KeyFingerprint(r.old), r.evicted)
	return resp, nil
}

type rotation struct {
	key, old          string
	connected, missed []string
	evicted           int
}

// rotate replaces the gossip key. Serf's own rotation (install, use,
// remove queries) would let any member holding the key read the new one
// and is refused by every node anyway; instead the new key goes only to
// rigs that are not revoked, over their authenticated gRPC stream, and
// only then does the controller switch to it and drop the old key, in
// one step: a keyring holding both keys would hand the new one to a
// member that still has the old one (serf's list-keys query).
func (g *Runtime) rotate(ctx context.Context, n *gossip.Node) (rotation, error) {
	g.rotateMu.Lock()
	defer g.rotateMu.Unlock()
	r := rotation{old: n.Keys()[0]}
	r.evicted = g.evictRevoked(n)
	key, err := gossip.GenerateKey()
	if err != nil {
		return r, err
	}
	r.key = key
	for _, rig := range g.fleet.Rigs() {
		if rig.Online && !rig.Revoked {
			r.connected = append(r.connected, rig.Id)
		}
	}
	g.setHandout([]string{key})
	wait, cancel := context.WithTimeout(ctx, rotateDeliverWait)
	defer cancel()
	for {
		r.missed = r.missed[:0]
		g.keysMu.Lock()
		for _, rig := range r.connected {
			if g.sent[rig] != key && g.fleet.Online(rig) {
				r.missed = append(r.missed, rig)
			}
		}
		g.keysMu.Unlock()
		if len(r.missed) == 0 || wait.Err() != nil {
			break
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-wait.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if err := n.SetKeyring([]string{key}); err != nil {
		// Rigs were handed a key the controller does not use: hand back
		// the old one so they return to it.
		g.setHandout(n.Keys())
		return r, err
	}
	if g.keyring != nil {
		if err := g.keyring.SaveKeyring([]string{key}); err != nil {
			// The node and the rigs use the new key; only the next leader
			// would not know it. Say so rather than undo a rotation the
			// rigs already followed.
			g.log.Error("store rotated gossip key for the group", "err", err)
		}
	}
	g.log.Info("gossip key rotated", "key", gossip.KeyFingerprint(key), "old", gossip.KeyFingerprint(r.old), "rigs_handed", len(r.connected)-len(r.missed), "rigs_missed", len(r.missed))
	return r, nil
}

// setHandout changes the keyring rigs are given and wakes every stream
// to push it.
func (g *Runtime) setHandout(keys []string) {
	g.keysMu.Lock()
	defer g.keysMu.Unlock()
	g.handout = keys
	close(g.keysChanged)
	g.keysChanged = make(chan struct{})
}

func (g *Runtime) handoutKeys() []string {
	if g.node.Load() == nil {
		return nil // no gossip node (yet) for the rig to join
	}
	g.keysMu.Lock()
	defer g.keysMu.Unlock()
	return slices.Clone(g.handout)
}

func (g *Runtime) handoutChanged() <-chan struct{} {
	g.keysMu.Lock()
	defer g.keysMu.Unlock()
	return g.keysChanged
}

func (g *Runtime) keysSent(rig string, keys []string) {
	g.keysMu.Lock()
	defer g.keysMu.Unlock()
	g.sent[rig] = keys[0]
}

// evictRevoked removes members named after revoked rigs from the
// cluster (and from every member's list). A revoked rig that is still
// running refutes the removal while it holds the key; the next rotation
// cuts it off and then the removal holds.
func (g *Runtime) evictRevoked(n *gossip.Node) int {
	c := 0
	for _, m := range n.Members() {
		// Only an alive one needs it: a leaving, left or failed member is
		// already out, and each removal waits for its broadcast.
		if m.Status != "alive" || m.Tags.Role == gossip.RoleController || !g.fleet.Revoked(m.Name) {
			continue
		}
		if err := n.RemoveMember(m.Name); err != nil {
			g.log.Warn("evict revoked rig from gossip", "rig", m.Name, "err", err)
			continue
		}
		g.log.Info("revoked rig removed from gossip", "rig", m.Name, "was", m.Status)
		c++
	}
	return c
}

// revoked removes a just-revoked rig from gossip, in the background: the
// removal waits for serf's broadcast.
func (g *Runtime) Revoked(rigID string) {
	g.keysMu.Lock()
	delete(g.sent, rigID)
	g.keysMu.Unlock()
	g.rigKeysMu.Lock()
	delete(g.rigKeys, rigID)
	g.rigKeysMu.Unlock()
	n := g.node.Load()
	if n == nil {
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.evictRevoked(n)
	}()
}

// auditSystem records something the controller did on its own.
func (g *Runtime) auditSystem(action, result, detail string) {
	_ = g.fleet.Audit(&quarryv1.AuditEntry{Who: "controller", Role: auth.RoleSystem, Action: action, Result: result, Detail: detail})
}
