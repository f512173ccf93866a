package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// Serf event and query names carrying Quarry envelopes. Queries are sent as
// queryPrefix+name so a stock serf agent sees readable names.
const (
	userEventName = "quarry-event"
	queryPrefix   = "quarry-query:"
)

// MemberEventType says what happened to the members in a MemberEvent.
type MemberEventType int

const (
	MemberJoin MemberEventType = iota + 1
	MemberLeave
	MemberFailed
	MemberUpdate
	MemberReap
)

func (t MemberEventType) String() string {
	switch t {
	case MemberJoin:
		return "join"
	case MemberLeave:
		return "leave"
	case MemberFailed:
		return "failed"
	case MemberUpdate:
		return "update"
	case MemberReap:
		return "reap"
	}
	return "unknown(" + strconv.Itoa(int(t)) + ")"
}

// Member is one node of the cluster as this node sees it.
type Member struct {
	Name string
	Addr netip.AddrPort
	Tags Tags
	// RawTags is the tag map as gossiped, used for selector matching.
	RawTags map[string]string
	// Status is serf's view: alive, leaving, left, failed.
	Status string
}

// MemberEvent reports a change to one or more members.
type MemberEvent struct {
	Type    MemberEventType
	Members []Member
}

// MemberHandler receives membership changes. Handlers run on the event loop:
// they must return quickly (hand work to a goroutine or channel), since a
// blocked loop stalls gossip.
type MemberHandler interface {
	HandleMember(MemberEvent)
}

// MemberHandlerFunc adapts a function to MemberHandler.
type MemberHandlerFunc func(MemberEvent)

func (f MemberHandlerFunc) HandleMember(e MemberEvent) { f(e) }

// Stats counts envelopes by outcome since Start.
type Stats struct {
	EventsAccepted  uint64
	QueriesAnswered uint64
	Unsigned        uint64
	BadSignature    uint64
	Stale           uint64
	Replayed        uint64
	Malformed       uint64
	NotSelected     uint64
	// FailedRefuted counts "failed" reports dropped because the member was
	// alive again within FailureGrace.
	FailedRefuted uint64
	// KeyringRestored counts keyring changes by other members that this
	// node undid.
	KeyringRestored uint64
}

type stats struct {
	eventsAccepted, queriesAnswered, unsigned, badSignature, stale, replayed, malformed, notSelected, failedRefuted, keyringRestored atomic.Uint64
}

// Node is one member of the gossip cluster. Its methods are safe for
// concurrent use once Start has returned.
type Node struct {
	cfg     Config
	log     *slog.Logger
	keyring *memberlist.Keyring

	// keysMu guards want, the keyring this node holds to, and serialises
	// changes to the live keyring made by this node.
	keysMu   sync.Mutex
	want     []string
	keyQuery chan struct{} // serf logged a key query: check the keyring

	mu             sync.RWMutex
	memberHandlers []MemberHandler
	eventHandlers  map[string][]EventHandler // by kind; "" gets all kinds
	responders     map[string]QueryResponder
	started        bool

	replayMu sync.Mutex
	replay   *replayCache

	stats stats

	serf   *serf.Serf
	events chan serf.Event
	// confirm receives failed members whose grace has passed; pending
	// holds their timers so Close can stop them.
	confirm   chan serf.Member
	pendingMu sync.Mutex
	pending   map[string]*time.Timer
	ctx       context.Context // cancelled by Close; parent of handler contexts
	cancel    context.CancelFunc
	stopped   chan struct{} // closed when the loop must drain and exit
	joined    chan struct{}
	wg        sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// ErrNotStarted is returned by methods that need a running node.
var ErrNotStarted = errors.New("gossip: node not started")

// New validates cfg and prepares a node; nothing listens until Start.
// Register handlers between New and Start so no early event is missed.
func New(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	keys, err := loadKeys(&cfg)
	if err != nil {
		return nil, err
	}
	kr, err := newKeyring(keys)
	if err != nil {
		return nil, err
	}
	cfg.Tags.Extra = cloneMap(cfg.Tags.Extra)
	return &Node{
		cfg:           cfg,
		log:           cfg.Logger.With("component", "gossip", "node", cfg.NodeName),
		keyring:       kr,
		want:          dedupKeys(keys),
		keyQuery:      make(chan struct{}, 1),
		eventHandlers: map[string][]EventHandler{},
		responders:    map[string]QueryResponder{},
		replay:        newReplayCache(cfg.ReplayCacheSize),
		joined:        make(chan struct{}),
	}, nil
}

// HandleMembers registers h for member events.
func (n *Node) HandleMembers(h MemberHandler) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.memberHandlers = append(n.memberHandlers, h)
}

// Start binds the gossip port and starts the event loop, then, if
// Config.Join is set, keeps trying to join in the background. ctx bounds only
// the start itself.
func (n *Node) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("gossip: start: %w", err)
	}
	n.mu.Lock()
	if n.started {
		n.mu.Unlock()
		return errors.New("gossip: node already started")
	}
	n.started = true
	n.mu.Unlock()

	n.events = make(chan serf.Event, 1024)
	n.confirm = make(chan serf.Member, 64)
	n.pending = map[string]*time.Timer{}
	s, err := serf.Create(n.cfg.serfConfig(n.keyring, n.events, n.noteLogLine))
	if err != nil {
		return fmt.Errorf("gossip: start serf on %s:%d: %w", n.cfg.BindAddr, n.cfg.BindPort, err)
	}
	n.serf = s
	if n.cfg.Identity != nil {
		// Signed before any join, so no member ever sees this one unsigned.
		if err := n.setSignedTags(n.cfg.Tags.Map()); err != nil {
			_ = s.Shutdown()
			return err
		}
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.stopped = make(chan struct{})
	n.wg.Add(2)
	go n.loop()
	go n.guardKeyring()
	if len(n.cfg.Join) > 0 {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if _, err := n.Join(n.ctx, n.cfg.Join...); err != nil && n.ctx.Err() == nil {
				n.log.Warn("background join gave up", "err", err)
			}
		}()
	}
	n.log.Info("gossip started", "addr", n.Addr().String(), "profile", string(n.cfg.Profile))
	return nil
}

// Addr is the address other nodes use to reach this one.
func (n *Node) Addr() netip.AddrPort {
	if n.serf == nil {
		return netip.AddrPort{}
	}
	ln := n.serf.Memberlist().LocalNode()
	return addrPort(ln.Addr, ln.Port)
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.NodeName }

// Joined is closed once a join (background or explicit) has succeeded.
func (n *Node) Joined() <-chan struct{} { return n.joined }

// Join contacts addrs, retrying with exponential backoff and jitter until at
// least one answers or ctx ends. It returns how many were contacted.
func (n *Node) Join(ctx context.Context, addrs ...string) (int, error) {
	if n.serf == nil {
		return 0, ErrNotStarted
	}
	if len(addrs) == 0 {
		return 0, errors.New("gossip: join: no addresses")
	}
	delay := n.cfg.JoinBackoff.Initial
	for attempt := 1; ; attempt++ {
		k, err := n.serf.Join(addrs, true)
		if k > 0 {
			n.markJoined()
			n.log.Info("joined cluster", "contacted", k, "attempt", attempt)
			return k, nil
		}
		n.log.Debug("join attempt failed", "attempt", attempt, "err", err)
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("gossip: join %v after %d attempts: %w (last error: %v)", addrs, attempt, ctx.Err(), err)
		case <-n.stopped:
			t.Stop()
			return 0, errors.New("gossip: join: node closed")
		case <-t.C:
		}
		delay = min(delay*2, n.cfg.JoinBackoff.Max)
	}
}

func (n *Node) markJoined() {
	select {
	case <-n.joined:
	default:
		close(n.joined)
	}
}

// SetTags replaces this node's tags and gossips them to the cluster.
func (n *Node) SetTags(t Tags) error {
	if err := t.validate(); err != nil {
		return fmt.Errorf("gossip: set tags: %w", err)
	}
	if n.serf == nil {
		return ErrNotStarted
	}
	if n.cfg.Identity != nil {
		return n.setSignedTags(t.Map())
	}
	if err := n.serf.SetTags(t.Map()); err != nil {
		return fmt.Errorf("gossip: set tags: %w", err)
	}
	return nil
}

func (n *Node) setSignedTags(m map[string]string) error {
	signed, err := signTags(n.cfg.Identity, n.cfg.NodeName, n.Addr().String(), m)
	if err != nil {
		return err
	}
	if err := n.serf.SetTags(signed); err != nil {
		return fmt.Errorf("gossip: set signed tags: %w", err)
	}
	return nil
}

// LocalMember is this node as the cluster sees it.
func (n *Node) LocalMember() Member {
	if n.serf == nil {
		return Member{Name: n.cfg.NodeName, Tags: n.cfg.Tags, RawTags: n.cfg.Tags.Map()}
	}
	return convertMember(n.serf.LocalMember())
}

// Members returns every known member, including failed and left ones still
// remembered by serf.
func (n *Node) Members() []Member {
	if n.serf == nil {
		return nil
	}
	ms := n.serf.Members()
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, convertMember(m))
	}
	return out
}

// NumAlive counts members currently alive, this node included.
func (n *Node) NumAlive() int {
	if n.serf == nil {
		return 0
	}
	c := 0
	for _, m := range n.serf.Members() {
		if m.Status == serf.StatusAlive {
			c++
		}
	}
	return c
}

// Stats returns envelope counters.
func (n *Node) Stats() Stats {
	s := &n.stats
	return Stats{
		EventsAccepted:  s.eventsAccepted.Load(),
		QueriesAnswered: s.queriesAnswered.Load(),
		Unsigned:        s.unsigned.Load(),
		BadSignature:    s.badSignature.Load(),
		Stale:           s.stale.Load(),
		Replayed:        s.replayed.Load(),
		Malformed:       s.malformed.Load(),
		NotSelected:     s.notSelected.Load(),
		FailedRefuted:   s.failedRefuted.Load(),
		KeyringRestored: s.keyringRestored.Load(),
	}
}

// Close leaves the cluster gracefully (so others see "left", not "failed"),
// then shuts down and waits for every goroutine. If ctx is already done the
// node shuts down without leaving. A leave already under way cannot be cut
// short (memberlist forbids shutting down mid-leave), so a ctx that ends
// during it makes Close return ctx's error only after serf's own leave
// timeouts (BroadcastTimeout + LeavePropagateDelay).
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		n.mu.RLock()
		started := n.started
		n.mu.RUnlock()
		if !started || n.serf == nil {
			return
		}
		if err := ctx.Err(); err != nil {
			n.closeErr = fmt.Errorf("gossip: close without leave: %w", err)
			n.shutdown()
			return
		}
		left := make(chan error, 1)
		go func() { left <- n.serf.Leave() }()
		select {
		case err := <-left:
			if err != nil {
				n.log.Warn("leave failed", "err", err)
			}
		case <-ctx.Done():
			n.closeErr = fmt.Errorf("gossip: leave: %w", ctx.Err())
			<-left
		}
		n.shutdown()
	})
	return n.closeErr
}

// shutdown stops without leaving: peers will detect a failure. Tests use it
// to simulate a crashed rig.
func (n *Node) shutdown() {
	if err := n.serf.Shutdown(); err != nil {
		n.log.Warn("serf shutdown", "err", err)
	}
	n.cancel()
	select {
	case <-n.stopped:
	default:
		close(n.stopped)
	}
	n.wg.Wait()
}

func (n *Node) loop() {
	defer n.wg.Done()
	defer n.stopPending()
	for {
		select {
		case e := <-n.events:
			n.dispatch(e)
		case m := <-n.confirm:
			n.confirmFailed(m)
		case <-n.stopped:
			for {
				select {
				case e := <-n.events:
					n.dispatch(e)
				default:
					return
				}
			}
		}
	}
}

func (n *Node) dispatch(e serf.Event) {
	switch e := e.(type) {
	case serf.MemberEvent:
		n.dispatchMember(e)
	case serf.UserEvent:
		n.handleUserEvent(e)
	case *serf.Query:
		n.handleQuery(e)
	}
}

func (n *Node) dispatchMember(e serf.MemberEvent) {
	me := MemberEvent{Members: make([]Member, 0, len(e.Members))}
	switch e.Type {
	case serf.EventMemberJoin:
		me.Type = MemberJoin
	case serf.EventMemberLeave:
		me.Type = MemberLeave
	case serf.EventMemberFailed:
		me.Type = MemberFailed
	case serf.EventMemberUpdate:
		me.Type = MemberUpdate
	case serf.EventMemberReap:
		me.Type = MemberReap
	default:
		return
	}
	for _, m := range e.Members {
		if me.Type == MemberFailed && n.cfg.FailureGrace > 0 {
			n.holdFailed(m)
			continue
		}
		me.Members = append(me.Members, convertMember(m))
	}
	n.deliver(me)
}

func (n *Node) deliver(me MemberEvent) {
	if len(me.Members) == 0 {
		return
	}
	n.mu.RLock()
	hs := n.memberHandlers
	n.mu.RUnlock()
	for _, h := range hs {
		h.HandleMember(me)
	}
}

// holdFailed reports m as failed only if it is still failed after the
// grace period.
func (n *Node) holdFailed(m serf.Member) {
	n.pendingMu.Lock()
	defer n.pendingMu.Unlock()
	if t, ok := n.pending[m.Name]; ok {
		t.Stop()
	}
	n.pending[m.Name] = time.AfterFunc(n.cfg.FailureGrace, func() {
		select {
		case n.confirm <- m:
		case <-n.stopped:
		}
	})
}

func (n *Node) confirmFailed(m serf.Member) {
	n.pendingMu.Lock()
	delete(n.pending, m.Name)
	n.pendingMu.Unlock()
	for _, cur := range n.serf.Members() {
		if cur.Name == m.Name && cur.Status != serf.StatusFailed {
			n.stats.failedRefuted.Add(1)
			n.log.Info("member reported failed was alive again within the grace period", "member", m.Name, "status", cur.Status.String())
			return
		}
	}
	n.deliver(MemberEvent{Type: MemberFailed, Members: []Member{convertMember(m)}})
}

func (n *Node) stopPending() {
	n.pendingMu.Lock()
	defer n.pendingMu.Unlock()
	for name, t := range n.pending {
		t.Stop()
		delete(n.pending, name)
	}
}

func convertMember(m serf.Member) Member {
	return Member{
		Name:    m.Name,
		Addr:    addrPort(m.Addr, m.Port),
		Tags:    ParseTags(m.Tags),
		RawTags: cloneMap(m.Tags),
		Status:  m.Status.String(),
	}
}

func addrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// RemoveMember forces name out of the cluster (serf's force-leave):
// every member marks it leaving, then left once it fails. A member that
// is still alive and holds the gossip key refutes this; cut it off first
// by rotating the key without it. Nothing is pruned: serf v0.10 prunes a
// member by sleeping for its broadcast timeout while holding the member
// list's lock, on every node that still sees it alive, which stalls the
// whole cluster's gossip for that long.
func (n *Node) RemoveMember(name string) error {
	if n.serf == nil {
		return ErrNotStarted
	}
	if name == n.cfg.NodeName {
		return errors.New("gossip: remove member: that is this node")
	}
	if err := n.serf.RemoveFailedNode(name); err != nil {
		return fmt.Errorf("gossip: remove member %s: %w", name, err)
	}
	return nil
}
