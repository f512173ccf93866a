package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/quarryfleet/quarry/controller/cluster"
	"github.com/quarryfleet/quarry/controller/gossipd"
	"github.com/quarryfleet/quarry/pkg/pki"
	"github.com/quarryfleet/quarry/pkg/store"
)

// ClusterConfig makes the controller one member of a Raft group. Left
// empty (no raft_addr), the controller runs alone as it always has.
type ClusterConfig struct {
	NodeID          string   `yaml:"node_id" help:"this member's name in the group; defaults to the host name"`
	RaftAddr        string   `yaml:"raft_addr" help:"host:port other members reach this one's log on (mutual TLS); setting it turns the group on"`
	RaftAdvertise   string   `yaml:"raft_advertise" help:"address members dial for raft_addr, when it differs"`
	SerfAddr        string   `yaml:"serf_addr" help:"host:port of the members' own gossip pool, used to find each other"`
	Join            []string `yaml:"join" help:"serf_addr of other members to join at start"`
	BootstrapExpect int      `yaml:"bootstrap_expect" help:"how many members start a new group (3 or 5; 1 to turn a single controller's data dir into the first member); 0 joins an existing group"`
	RaftMultiplier  int      `yaml:"raft_multiplier" help:"scales raft's timeouts (heartbeat and election 1 s, lease 0.5 s); default 2, larger for busy or small machines, failover takes about as many seconds"`
	AdvertiseGRPC   string   `yaml:"advertise_grpc" help:"gRPC address agents and quarryctl use for this member; defaults to grpc_addr"`
	AdvertiseHTTP   string   `yaml:"advertise_http" help:"HTTP address of this member's dashboard; defaults to http_addr"`
}

// Enabled reports whether the controller runs in a group.
func (c ClusterConfig) Enabled() bool { return c.RaftAddr != "" }

func (c ClusterConfig) validate() []error {
	if !c.Enabled() {
		if c.SerfAddr != "" || len(c.Join) > 0 || c.BootstrapExpect != 0 {
			return []error{errors.New("cluster: raft_addr is required for a group")}
		}
		return nil
	}
	var errs []error
	for name, addr := range map[string]string{"cluster.raft_addr": c.RaftAddr, "cluster.serf_addr": c.SerfAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port: %w", name, addr, err))
		}
	}
	if c.RaftMultiplier < 0 || c.RaftMultiplier > 10 {
		errs = append(errs, fmt.Errorf("cluster.raft_multiplier: %d; use 1 to 10", c.RaftMultiplier))
	}
	if c.BootstrapExpect < 0 || c.BootstrapExpect > 7 {
		errs = append(errs, fmt.Errorf("cluster.bootstrap_expect: %d; use 1, 3 or 5 (0 to join an existing group)", c.BootstrapExpect))
	}
	if c.BootstrapExpect == 0 && len(c.Join) == 0 {
		errs = append(errs, errors.New("cluster: a member that does not start a group (bootstrap_expect 0) needs join addresses"))
	}
	return errs
}

// RunCluster runs a group member until ctx ends: a standby (admin calls
// forwarded to the leader, rigs told its address) while another member
// leads, and the whole controller on the replicated file while it leads.
func RunCluster(ctx context.Context, cfg Config, version string, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	cc := cfg.Cluster
	if cc.NodeID == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("cluster.node_id: not set and no host name: %w", err)
		}
		cc.NodeID = h
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(cfg.DataDir, DBFile)
	if _, err := os.Stat(path + ".restore"); err == nil {
		return errors.New("a staged snapshot restore waits in the data dir; restore into a single controller (no cluster section), then start a group from it with bootstrap_expect 1")
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return fmt.Errorf("open %s: %w", path, store.ErrLocked)
		}
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer b.Close()
	ca, err := pki.LoadOrCreateCA(filepath.Join(cfg.DataDir, PKIDir), time.Now())
	if err != nil {
		return fmt.Errorf("CA: %w", err)
	}
	key, err := poolKey(cfg)
	if err != nil {
		return err
	}
	node, err := cluster.New(cluster.Config{
		NodeID: cc.NodeID, DataDir: cfg.DataDir, RaftAddr: cc.RaftAddr, RaftAdvertise: cc.RaftAdvertise,
		SerfAddr: cc.SerfAddr, Join: cc.Join, BootstrapExpect: cc.BootstrapExpect,
		GRPCAddr: firstSet(cc.AdvertiseGRPC, cfg.GRPCAddr), HTTPAddr: firstSet(cc.AdvertiseHTTP, cfg.HTTPAddr),
		RaftMultiplier: cc.RaftMultiplier, GossipKey: key, CA: ca, DB: b, Logger: log, Fast: cfg.clusterFast,
	})
	if err != nil {
		return err
	}
	defer node.Close()
	db := store.NewDB(b)
	db.SetReplicator(node)
	log.Info("group member started", "node", cc.NodeID, "raft", cc.RaftAddr, "serf", cc.SerfAddr)

	var (
		sb   *standby
		lead *leaderRun
	)
	defer func() {
		lead.stop(log)
		if sb != nil {
			sb.stop()
		}
	}()
	if sb, err = startStandby(cfg, ca, node, log); err != nil {
		return err
	}
	for {
		var leading, ok bool
		select {
		case <-ctx.Done():
			return nil
		case err := <-lead.ended():
			// The controller ended on its own (a listener failed): hand
			// the lead to another member rather than hold it idle.
			log.Error("controller ended while leading", "err", err)
			lead = nil
			node.StepDown()
			if sb, err = startStandby(cfg, ca, node, log); err != nil {
				return err
			}
			continue
		case leading, ok = <-node.Leadership():
			if !ok {
				return errors.New("group member stopped")
			}
		}
		switch {
		case leading && lead == nil:
			sb.stop()
			sb = nil
			c, err := newController(cfg, version, log, db, node)
			if err != nil {
				log.Error("start controller as leader", "err", err)
				node.StepDown()
				if sb, err = startStandby(cfg, ca, node, log); err != nil {
					return err
				}
				continue
			}
			lead = runLeader(ctx, c)
			log.Info("leading the group; controller serving", "node", cc.NodeID)
		case !leading && lead != nil:
			lead.stop(log)
			lead = nil
			if sb, err = startStandby(cfg, ca, node, log); err != nil {
				return err
			}
			log.Info("no longer leading; standing by", "node", cc.NodeID)
		}
	}
}

// leaderRun is the controller serving while this member leads.
type leaderRun struct {
	cancel context.CancelFunc
	done   chan error
}

func runLeader(ctx context.Context, c *Controller) *leaderRun {
	cctx, cancel := context.WithCancel(ctx)
	r := &leaderRun{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Serve(cctx) }()
	return r
}

// ended is the controller's end, or nil (never ready) when none runs.
func (r *leaderRun) ended() <-chan error {
	if r == nil {
		return nil
	}
	return r.done
}

func (r *leaderRun) stop(log *slog.Logger) {
	if r == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		log.Error("controller stopped", "err", err)
	}
}

// poolKey is the primary gossip key, when the data dir has a keyring: the
// members' pool is encrypted with the key the group already shares.
func poolKey(cfg Config) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, gossipd.KeyringFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil || len(keys) == 0 {
		return nil, fmt.Errorf("gossip keyring %s: not a JSON array of keys", gossipd.KeyringFile)
	}
	k, err := base64.StdEncoding.DecodeString(keys[0])
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: primary key: %w", err)
	}
	return k, nil
}

// controllers is what AgentService tells rigs of the group: nil alone.
func (c *Controller) controllers() func() []string {
	if c.group == nil {
		return nil
	}
	return c.group.Controllers
}

func firstSet(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// standby answers on the controller's addresses while another member
// leads: admin calls are forwarded to the leader (forward.go), a rig's
// get a refusal naming the leader, and HTTP says where the leader's
// dashboard is.
type standby struct {
	grpc *grpc.Server
	http *http.Server
	fwd  *forwarder
	done chan struct{}
}

func startStandby(cfg Config, ca *pki.CA, node *cluster.Node, log *slog.Logger) (*standby, error) {
	tlsCfg, err := serverTLS(cfg, ca, time.Now())
	if err != nil {
		return nil, err
	}
	gl, err := listenRetry(cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("grpc_addr: %w", err)
	}
	hl, err := listenRetry(cfg.HTTPAddr)
	if err != nil {
		gl.Close()
		return nil, fmt.Errorf("http_addr: %w", err)
	}
	s := &standby{done: make(chan struct{}, 2),
		fwd: &forwarder{node: node, self: firstSet(cfg.Cluster.AdvertiseGRPC, cfg.GRPCAddr), ca: ca}}
	s.grpc = grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)), grpc.MaxRecvMsgSize(4<<20),
		grpc.ForceServerCodecV2(passCodec{}), grpc.UnknownServiceHandler(s.fwd.handle))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		id, _, web := node.Leader()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		if web == "" {
			fmt.Fprintln(w, "standby controller: no leader is known yet")
			return
		}
		fmt.Fprintf(w, "standby controller: the leader is %s, dashboard at http://%s/\n", id, web)
	})
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second}
	go func() { _ = s.grpc.Serve(gl); s.done <- struct{}{} }()
	go func() { _ = s.http.Serve(hl); s.done <- struct{}{} }()
	log.Debug("standby serving refusals", "grpc", cfg.GRPCAddr, "http", cfg.HTTPAddr)
	return s, nil
}

func (s *standby) stop() {
	s.grpc.Stop()
	s.fwd.stop()
	_ = s.http.Close()
	<-s.done
	<-s.done
}

// listenRetry binds addr, waiting briefly for a server that just closed it
// to let go.
func listenRetry(addr string) (net.Listener, error) {
	var err error
	for range 50 {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return l, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

// groupKeyring keeps the rigs' gossip keyring in the group's replicated
// state, so a rotation on one leader holds on the next.
type groupKeyring struct{ db *store.DB }

var (
	bucketGroup = []byte("cluster_secrets")
	keyKeyring  = []byte("gossip_keyring")
)

func (k groupKeyring) LoadKeyring() (keys []string, ok bool, err error) {
	err = k.db.View(func(tx *store.Tx) error {
		b := tx.Bucket(bucketGroup)
		if b == nil {
			return nil
		}
		v := b.Get(keyKeyring)
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &keys)
	})
	return keys, ok, err
}

func (k groupKeyring) SaveKeyring(keys []string) error {
	v, err := json.Marshal(keys)
	if err != nil {
		return err
	}
	return k.db.Update(func(tx *store.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketGroup)
		if err != nil {
			return err
		}
		return b.Put(keyKeyring, v)
	})
}

// gossipKeyring is where gossipd keeps the keyring besides its file: the
// group's state on a member, nowhere else alone.
func (c *Controller) gossipKeyring() gossipd.KeyringStore {
	if c.group == nil {
		return nil
	}
	return groupKeyring{db: c.db}
}
