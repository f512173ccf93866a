// Package cluster runs a controller as one member of a Raft group
// (hashicorp/raft, its log in raft-boltdb) whose state machine is the
// controller's bbolt file. Members find each other through a serf pool
// of their own, as Nomad servers do, and prove who they are with
// controller certificates from the group's shared CA before they are let
// into the log. Only the leader runs the controller; the others keep an
// identical copy of its file and take over when it goes.
package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/hashicorp/serf/serf"
	bolt "go.etcd.io/bbolt"

	"github.com/quarryfleet/quarry/pkg/pki"
)

// ErrNotLeader is returned by writes on a member that is not the leader.
var ErrNotLeader = errors.New("this controller is not the group's leader")

// Config is one member's part in the group.
type Config struct {
	// NodeID names the member; unique in the group, stable across restarts.
	NodeID string
	// DataDir holds the raft log, its snapshots and the member's
	// certificate; the controller's own file lives beside it.
	DataDir string
	// RaftAddr is where members reach this one's log (host:port);
	// RaftAdvertise overrides the address others dial, if different.
	RaftAddr      string
	RaftAdvertise string
	// SerfAddr is the member pool's gossip address (host:port).
	SerfAddr string
	// Join lists pool addresses of other members to join at start.
	Join []string
	// BootstrapExpect is how many members form a new group: each fresh
	// member waits until it sees that many before the group starts. A
	// member with 0 never starts a group: it waits to be added by one.
	BootstrapExpect int
	// GRPCAddr and HTTPAddr are the addresses clients use to reach this
	// member's controller, told to agents and standbys' callers.
	GRPCAddr string
	HTTPAddr string
	// RaftMultiplier scales raft's heartbeat, election and lease
	// timeouts (1 s, 1 s, 0.5 s); 0 means 1.
	RaftMultiplier int
	// GossipKey encrypts the member pool (32 bytes), if set.
	GossipKey []byte
	CA        *pki.CA
	// DB is the controller's file, the replicated state.
	DB     *bolt.DB
	Logger *slog.Logger
	// Fast shortens raft and pool timings for tests on loopback.
	Fast bool
}

// Node is a running member.
type Node struct {
	cfg       Config
	log       *slog.Logger
	raft      *raft.Raft
	fsm       *fsm
	transport *raft.NetworkTransport
	logs      *raftboltdb.BoltStore
	serf      *serf.Serf
	peerConf  *tls.Config
	pool      *x509.CertPool
	seedFirst bool

	notify     chan bool
	leadership chan bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// pool tag names.
const (
	tagRole  = "role"
	tagID    = "id"
	tagRaft  = "raft"
	tagGRPC  = "grpc"
	tagHTTP  = "http"
	tagFresh = "fresh"
	tagIndex = "applied"
	roleCtl  = "controller"
)

// New starts a member: its raft log, its place in the member pool and, if
// it is fresh and sees BootstrapExpect members, the group.
func New(cfg Config) (*Node, error) {
	if cfg.NodeID == "" || cfg.RaftAddr == "" || cfg.SerfAddr == "" || cfg.CA == nil || cfg.DB == nil {
		return nil, errors.New("cluster: node_id, raft_addr, serf_addr, the CA and the database are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n := &Node{cfg: cfg, log: log.With("component", "cluster"), pool: cfg.CA.Pool(),
		notify: make(chan bool, 16), leadership: make(chan bool, 16)}
	var err error
	if n.peerConf, err = n.peerCredentials(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			n.closeParts()
		}
	}()

	advertise := cfg.RaftAdvertise
	if advertise == "" {
		advertise = cfg.RaftAddr
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft_advertise %q: %w", advertise, err)
	}
	stream, err := newTLSStream(cfg.RaftAddr, adv, n.peerConf)
	if err != nil {
		return nil, err
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter(n.log)})
	n.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: hl})
	if n.logs, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")}); err != nil {
		return nil, fmt.Errorf("cluster: raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshots: %w", err)
	}
	existing, err := raft.HasExistingState(n.logs, n.logs, snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if existing {
		// raft restores the last snapshot and replays the log after it;
		// replaying a change set onto a file that already holds it is not
		// exact (a bucket it deletes is gone), so the replay starts from
		// an empty file.
		if err := clearAll(cfg.DB); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
	} else {
		data, err := hasData(cfg.DB)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		switch {
		case data && cfg.BootstrapExpect != 1:
			return nil, errors.New("cluster: this data dir holds a single controller's state; it can become the first member of a new group only alone: set cluster.bootstrap_expect to 1 on it, start it, then start the other members empty to join it")
		case data:
			n.seedFirst = true
		}
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	rc.NotifyCh = n.notify
	// Timings scale as Consul's raft_multiplier does: raft's defaults
	// suit dedicated fast machines; a busy or small one misses a
	// heartbeat now and then and the group would change leaders for
	// nothing.
	mult := time.Duration(max(cfg.RaftMultiplier, 1))
	rc.HeartbeatTimeout *= mult
	rc.ElectionTimeout *= mult
	rc.LeaderLeaseTimeout *= mult
	if cfg.Fast {
		rc.HeartbeatTimeout = 300 * time.Millisecond
		rc.ElectionTimeout = 300 * time.Millisecond
		rc.LeaderLeaseTimeout = 150 * time.Millisecond
		rc.CommitTimeout = 5 * time.Millisecond
	}
	n.fsm = &fsm{db: cfg.DB, dir: dir, log: n.log}
	if n.raft, err = raft.NewRaft(rc, n.fsm, n.logs, n.logs, snaps, n.transport); err != nil {
		return nil, fmt.Errorf("cluster: raft: %w", err)
	}
	if err := n.startPool(!existing); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Add(2)
	go n.watchLeadership(ctx)
	go n.maintain(ctx, !existing)
	ok = true
	return n, nil
}

// peerCredentials issues this member's controller certificate from the
// group's CA, valid for its raft host.
func (n *Node) peerCredentials() (*tls.Config, error) {
	host, _, err := net.SplitHostPort(firstNonEmpty(n.cfg.RaftAdvertise, n.cfg.RaftAddr))
	if err != nil {
		return nil, fmt.Errorf("cluster: raft_addr: %w", err)
	}
	der, key, err := n.cfg.CA.IssuePeer(n.cfg.NodeID, []string{host}, 365*24*time.Hour, time.Now())
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	return peerTLS(n.cfg.CA, tls.Certificate{Certificate: [][]byte{der, n.cfg.CA.CertDER}, PrivateKey: key}), nil
}

func (n *Node) startPool(fresh bool) error {
	sc := serf.DefaultConfig()
	sc.NodeName = n.cfg.NodeID
	sc.Tags = n.tags(fresh)
	sc.LogOutput = slogWriter(n.log)
	ml := memberlist.DefaultLANConfig()
	if n.cfg.Fast {
		ml = memberlist.DefaultLocalConfig()
		ml.GossipInterval = 20 * time.Millisecond
		ml.ProbeInterval = 200 * time.Millisecond
		ml.ProbeTimeout = 100 * time.Millisecond
		ml.SuspicionMult = 1
	}
	host, port, err := net.SplitHostPort(n.cfg.SerfAddr)
	if err != nil {
		return fmt.Errorf("cluster: serf_addr: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("cluster: serf_addr port: %w", err)
	}
	ml.BindAddr, ml.BindPort = host, p
	ml.AdvertiseAddr, ml.AdvertisePort = host, p
	ml.Name = n.cfg.NodeID
	ml.SecretKey = n.cfg.GossipKey
	ml.LogOutput = slogWriter(n.log)
	sc.MemberlistConfig = ml
	if n.serf, err = serf.Create(sc); err != nil {
		return fmt.Errorf("cluster: member pool: %w", err)
	}
	return nil
}

func (n *Node) tags(fresh bool) map[string]string {
	t := map[string]string{tagRole: roleCtl, tagID: n.cfg.NodeID,
		tagRaft: firstNonEmpty(n.cfg.RaftAdvertise, n.cfg.RaftAddr), tagGRPC: n.cfg.GRPCAddr, tagHTTP: n.cfg.HTTPAddr, tagFresh: "0"}
	if fresh {
		t[tagFresh] = "1"
	}
	if n.raft != nil {
		t[tagIndex] = strconv.FormatUint(n.raft.AppliedIndex(), 10)
	}
	return t
}

// maintain joins the pool, starts the group when this fresh member sees
// enough others, and, while leader, adds members found in the pool and
// keeps this member's applied index in its tags for the lag figures.
func (n *Node) maintain(ctx context.Context, fresh bool) {
	defer n.wg.Done()
	tick := time.NewTicker(time.Second)
	if n.cfg.Fast {
		tick.Reset(100 * time.Millisecond)
	}
	defer tick.Stop()
	joined := len(n.cfg.Join) == 0
	bootstrapped := !fresh || n.cfg.BootstrapExpect == 0
	var lastTag time.Time
	for {
		if !joined {
			if _, err := n.serf.Join(n.cfg.Join, true); err == nil {
				joined = true
			} else {
				n.log.Debug("join member pool", "err", err)
			}
		}
		if !bootstrapped {
			bootstrapped = n.tryBootstrap()
		}
		if n.raft.State() == raft.Leader {
			n.reconcile()
		}
		if time.Since(lastTag) >= 2*time.Second {
			lastTag = time.Now()
			if err := n.serf.SetTags(n.tags(fresh && !bootstrapped)); err != nil {
				n.log.Debug("update pool tags", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// member is a controller seen in the pool.
type member struct {
	id, raft, grpc, http string
	fresh                bool
	applied              uint64
	alive, left          bool
}

func (n *Node) members() []member {
	var out []member
	for _, m := range n.serf.Members() {
		if m.Tags[tagRole] != roleCtl || m.Tags[tagID] != m.Name {
			continue
		}
		idx, _ := strconv.ParseUint(m.Tags[tagIndex], 10, 64)
		out = append(out, member{id: m.Name, raft: m.Tags[tagRaft], grpc: m.Tags[tagGRPC], http: m.Tags[tagHTTP],
			fresh: m.Tags[tagFresh] == "1", applied: idx, alive: m.Status == serf.StatusAlive, left: m.Status == serf.StatusLeft})
	}
	slices.SortFunc(out, func(a, b member) int { return strings.Compare(a.id, b.id) })
	return out
}

// tryBootstrap starts the group once BootstrapExpect fresh members are in
// the pool, each proven by its certificate; every one of them starts it
// with the same configuration, which raft allows.
func (n *Node) tryBootstrap() bool {
	var servers []raft.Server
	for _, m := range n.members() {
		if !m.alive {
			continue
		}
		if !m.fresh {
			n.log.Info("a member of an existing group is in the pool; waiting to be added instead of starting a group", "member", m.id)
			return true
		}
		if m.id != n.cfg.NodeID {
			id, err := probePeer(n.peerConf, n.pool, m.raft, 2*time.Second)
			if err != nil || id != m.id {
				n.log.Warn("pool member's raft address does not prove its id; not counted", "member", m.id, "addr", m.raft, "proved", id, "err", err)
				continue
			}
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.id), Address: raft.ServerAddress(m.raft)})
	}
	if len(servers) < n.cfg.BootstrapExpect {
		return false
	}
	servers = servers[:n.cfg.BootstrapExpect]
	if !slices.ContainsFunc(servers, func(s raft.Server) bool { return s.ID == raft.ServerID(n.cfg.NodeID) }) {
		return false
	}
	if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		n.log.Error("start group", "err", err)
		return false
	}
	n.log.Info("group started", "members", len(servers))
	return true
}

// reconcile adds alive pool members the group does not have, once their
// certificate proves their id, and removes members that left the pool.
func (n *Node) reconcile() {
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	have := map[raft.ServerID]raft.Server{}
	for _, s := range cf.Configuration().Servers {
		have[s.ID] = s
	}
	for _, m := range n.members() {
		s, in := have[raft.ServerID(m.id)]
		switch {
		case m.left && in && m.id != n.cfg.NodeID:
			if err := n.raft.RemoveServer(s.ID, 0, 5*time.Second).Error(); err != nil {
				n.log.Warn("remove member that left", "member", m.id, "err", err)
			}
		case m.alive && (!in || string(s.Address) != m.raft):
			id, err := probePeer(n.peerConf, n.pool, m.raft, 2*time.Second)
			if err != nil || id != m.id {
				n.log.Warn("pool member's raft address does not prove its id; not added", "member", m.id, "addr", m.raft, "proved", id, "err", err)
				continue
			}
			if err := n.raft.AddVoter(raft.ServerID(m.id), raft.ServerAddress(m.raft), 0, 5*time.Second).Error(); err != nil {
				n.log.Warn("add member", "member", m.id, "err", err)
			} else {
				n.log.Info("member added", "member", m.id, "addr", m.raft)
			}
		}
	}
}

// watchLeadership turns raft's notifications into Leadership's: on gaining
// it the member first applies everything committed before (a barrier) and,
// for a single controller's data dir that starts a group, its state.
func (n *Node) watchLeadership(ctx context.Context) {
	defer n.wg.Done()
	defer close(n.leadership)
	for {
		select {
		case <-ctx.Done():
			return
		case leader := <-n.notify:
			if leader {
				// A leader that cannot catch up or seed would hold the lead
				// without serving: hand it on instead.
				if err := n.raft.Barrier(time.Minute).Error(); err != nil {
					n.log.Error("catch up as new leader", "err", err)
					n.StepDown()
					continue
				}
				if n.seedFirst {
					if err := n.seed(); err != nil {
						n.log.Error("seed the group with this data dir's state", "err", err)
						n.StepDown()
						continue
					}
					n.seedFirst = false
				}
			}
			select {
			case n.leadership <- leader:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (n *Node) seed() error {
	img, err := image(n.cfg.DB)
	if err != nil {
		return err
	}
	return n.apply(append([]byte{entrySeed}, img...))
}

// Leadership delivers true when this member becomes leader (caught up)
// and false when it stops being one; closed at Close.
func (n *Node) Leadership() <-chan bool { return n.leadership }

// ID is this member's node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// IsLeader reports whether this member leads now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Replicate commits one store change set through the group; it returns
// once a quorum holds it and this member's file has it applied.
func (n *Node) Replicate(ops []byte) error {
	return n.apply(append([]byte{entryOps}, ops...))
}

func (n *Node) apply(entry []byte) error {
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	f := n.raft.Apply(entry, 30*time.Second)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("%w: %w", ErrNotLeader, err)
		}
		return fmt.Errorf("replicate: %w", err)
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	return nil
}

// Leader returns the leader's node id and client-facing gRPC and HTTP
// addresses, as far as this member knows them.
func (n *Node) Leader() (id, grpcAddr, httpAddr string) {
	_, lid := n.raft.LeaderWithID()
	if lid == "" {
		return "", "", ""
	}
	for _, m := range n.members() {
		if m.id == string(lid) {
			return m.id, m.grpc, m.http
		}
	}
	return string(lid), "", ""
}

// Controllers lists the client-facing gRPC addresses of the group's
// alive members, leader first.
//
// Only members of the group's configuration count, at the raft address
// they were proven at: the pool's key is the rigs' gossip key too, so a
// pool member's tags alone must not send rigs anywhere.
func (n *Node) Controllers() []string {
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return nil
	}
	proven := map[string]string{}
	for _, s := range cf.Configuration().Servers {
		proven[string(s.ID)] = string(s.Address)
	}
	_, lid := n.raft.LeaderWithID()
	var out []string
	for _, m := range n.members() {
		if !m.alive || m.grpc == "" || proven[m.id] != m.raft || m.raft == "" {
			continue
		}
		if m.id == string(lid) {
			out = append([]string{m.grpc}, out...)
		} else {
			out = append(out, m.grpc)
		}
	}
	return out
}

// Peer is one member of the group's configuration.
type Peer struct {
	ID, RaftAddr, GRPCAddr string
	Voter, Leader, Alive   bool
	// AppliedIndex is what the member last told the pool it applied;
	// Lag is the leader's last index minus that (0 when unknown).
	AppliedIndex, Lag uint64
}

// Peers lists the group's configuration with what the pool says of each.
func (n *Node) Peers() ([]Peer, error) {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	pool := map[string]member{}
	for _, m := range n.members() {
		pool[m.id] = m
	}
	_, lid := n.raft.LeaderWithID()
	last := n.raft.LastIndex()
	var out []Peer
	for _, s := range cf.Configuration().Servers {
		m := pool[string(s.ID)]
		p := Peer{ID: string(s.ID), RaftAddr: string(s.Address), GRPCAddr: m.grpc, Voter: s.Suffrage == raft.Voter,
			Leader: s.ID == lid, Alive: m.alive, AppliedIndex: m.applied}
		if string(s.ID) == n.cfg.NodeID {
			p.AppliedIndex, p.Alive = n.raft.AppliedIndex(), true
		}
		if p.AppliedIndex > 0 && last > p.AppliedIndex {
			p.Lag = last - p.AppliedIndex
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// StepDown hands the lead to another member, when this one cannot serve.
func (n *Node) StepDown() {
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		n.log.Warn("hand over the lead", "err", err)
	}
}

// RemovePeer removes a member from the group (a dead machine that will
// not return). Only the leader can.
func (n *Node) RemovePeer(id string) error {
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	if id == n.cfg.NodeID {
		return errors.New("the leader cannot remove itself; stop it and remove it from another member")
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	return nil
}

// Status is this member's view of the group for health pages.
type Status struct {
	LeaderID                              string
	Term, LastIndex, CommitIndex, Applied uint64
}

// Status reports term and indexes.
func (n *Node) Status() Status {
	lid, _, _ := n.Leader()
	// raft exposes the commit index only among its stats.
	commit, _ := strconv.ParseUint(n.raft.Stats()["commit_index"], 10, 64)
	return Status{LeaderID: lid, Term: n.raft.CurrentTerm(), LastIndex: n.raft.LastIndex(), CommitIndex: commit, Applied: n.raft.AppliedIndex()}
}

// Close leaves the pool and stops the member.
func (n *Node) Close() error {
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	return n.closeParts()
}

func (n *Node) closeParts() error {
	var errs []error
	if n.serf != nil {
		_ = n.serf.Leave()
		errs = append(errs, n.serf.Shutdown())
	}
	if n.raft != nil {
		errs = append(errs, n.raft.Shutdown().Error())
	}
	if n.transport != nil {
		errs = append(errs, n.transport.Close())
	}
	if n.logs != nil {
		errs = append(errs, n.logs.Close())
	}
	return errors.Join(errs...)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// slogWriter turns the lines raft, serf and memberlist print into log
// records at their own level ("[WARN]", "[ERR]"…); each of them writes a
// whole line per call. serf's and memberlist's routine "[INFO]" lines
// (every member update) go to debug.
func slogWriter(log *slog.Logger) io.Writer { return lineWriter{log} }

type lineWriter struct{ log *slog.Logger }

func (w lineWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	level := slog.LevelDebug
	switch {
	case strings.Contains(line, "[ERR"):
		level = slog.LevelError
	case strings.Contains(line, "[WARN"):
		level = slog.LevelWarn
	case strings.Contains(line, "raft:") && strings.Contains(line, "[INFO"):
		level = slog.LevelInfo
	}
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}
