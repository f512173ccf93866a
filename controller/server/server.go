// Package server wires the controller together: its configuration, the
// components in their start-up order (lifecycle.go), the gRPC services
// each domain package provides, and the adapters between the domains and
// the dashboard and metrics.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/controller/billing"
	"github.com/quarryfleet/quarry/controller/catalogue"
	"github.com/quarryfleet/quarry/controller/cluster"
	"github.com/quarryfleet/quarry/controller/figures"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/gossipd"
	"github.com/quarryfleet/quarry/controller/jobs"
	"github.com/quarryfleet/quarry/controller/metrics"
	"github.com/quarryfleet/quarry/controller/miners"
	"github.com/quarryfleet/quarry/controller/snapshot"
	"github.com/quarryfleet/quarry/controller/web"
	"github.com/quarryfleet/quarry/pkg/pki"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Files the controller keeps in its data dir besides the database.
const (
	DBFile         = "quarry.db"
	PKIDir         = "pki"
	AdminTokenFile = "admin.token"
	AgentTokenFile = "agent.token"
)

// Controller is a running controller.
type Controller struct {
	cfg Config
	log *slog.Logger
	db  *store.DB
	// shared and group are set on a group member: the replicated file it
	// does not own, and the member that knows the group.
	shared *store.DB
	group  *cluster.Node
	fleet  *fleet.Fleet
	ca     *pki.CA

	grpcLis  net.Listener
	httpLis  net.Listener
	grpcSrv  *grpc.Server
	httpSrv  *http.Server
	ready    atomic.Bool
	mux      *http.ServeMux
	version  string
	serveErr chan error
	extra    []grpc.ServerOption
	roles    map[string]string
	audited  map[string]string
	// gateway lets the dashboard call the registered admin services with
	// the same roles and audit as gRPC clients.
	gateway *auth.Gateway
	// restored says, once the database came from a staged snapshot at
	// this start, where the replaced one was kept.
	restored  string
	billing   *billing.Runtime
	profit    *profitRuntime
	jobs      *jobs.Manager
	miners    *miners.Store
	catalogue *catalogue.Store
	figures   *figures.Learner
	metrics   *metrics.Exporter
	web       *web.Server
	gossip    *gossipd.Runtime
	notify    *notifyRuntime

	// metricsLis and metricsSrv serve /metrics alone when
	// web.metrics_addr is set.
	metricsLis net.Listener
	metricsSrv *http.Server

	// parts are the components in start-up order; the first opened of
	// them are open and stop in reverse. served is set once Serve owns
	// the listeners.
	parts  []component
	opened int
	served bool
}

// RegisterService adds an admin gRPC service with its method→role table
// and its method→audit-action table. Call before Serve.
func (c *Controller) RegisterService(desc *grpc.ServiceDesc, impl any, roles, audit map[string]string) {
	maps.Copy(c.roles, roles)
	maps.Copy(c.audited, audit)
	c.grpcSrv.RegisterService(desc, impl)
	c.gateway.Register(desc, impl)
}

// Roles is the method→role table of every registered admin service.
func (c *Controller) Roles() map[string]string { return c.roles }

// Audited is the method→audit-action table of every registered admin
// service.
func (c *Controller) Audited() map[string]string { return c.audited }

// New opens every component in order (see components). Call Serve to
// start serving. Extra gRPC server options (interceptors for tests, for
// instance) are appended to the controller's own.
func New(cfg Config, version string, log *slog.Logger, extra ...grpc.ServerOption) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	return newController(cfg, version, log, nil, nil, extra...)
}

// newController opens a controller; a group member passes the replicated
// file and itself.
func newController(cfg Config, version string, log *slog.Logger, shared *store.DB, group *cluster.Node, extra ...grpc.ServerOption) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	c := &Controller{cfg: cfg, log: log, version: version, serveErr: make(chan error, 3), extra: extra, shared: shared, group: group}
	if err := c.open(); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *Controller) openDatabase() error {
	if c.shared != nil {
		// A group member's file: the group owns it, and the buckets are
		// created through the log like every other write.
		c.db = c.shared
		return c.db.Update(func(tx *store.Tx) error {
			for _, b := range fleet.Buckets {
				if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
					return fmt.Errorf("create bucket %s: %w", b, err)
				}
			}
			return nil
		})
	}
	if err := os.MkdirAll(c.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(c.cfg.DataDir, DBFile)
	applied, kept, err := snapshot.ApplyStaged(path, time.Now(), c.log)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if applied {
		c.restored = "replaced database kept as " + filepath.Base(kept)
	}
	db, err := store.Open(path, fleet.Buckets...)
	if err != nil {
		return err
	}
	c.db = store.NewDB(db)
	return nil
}

func (c *Controller) closeDatabase() {
	if c.shared != nil {
		return // the group member closes it
	}
	if err := c.db.Close(); err != nil {
		c.log.Error("close database", "err", err)
	}
}

func (c *Controller) openFleet() error {
	var err error
	c.fleet, err = fleet.Open(c.db, fleet.Options{MaxBatch: c.cfg.MaxBatch, CommitDelay: c.cfg.CommitDelay, Logger: c.log,
		AuditMaxAge: c.cfg.Audit.MaxAge, AuditMaxEntries: c.cfg.Audit.MaxEntries, MaxClockSkew: c.cfg.MaxClockSkew})
	if err != nil || c.restored == "" {
		return err
	}
	// The restore's own audit entry stayed in the database it replaced.
	return c.fleet.Audit(&quarryv1.AuditEntry{Who: "controller", Role: auth.RoleSystem, Action: "snapshot restore applied", Target: DBFile, Result: "ok", Detail: c.restored})
}

func (c *Controller) openCA() error {
	var err error
	c.ca, err = pki.LoadOrCreateCA(filepath.Join(c.cfg.DataDir, PKIDir), time.Now())
	if err != nil {
		return fmt.Errorf("CA: %w", err)
	}
	return c.localCredentials()
}

// openGRPC binds both listeners, so that New reports a taken port, and
// builds the gRPC server with its interceptors: authentication first, so
// the audit interceptor records the caller it found and never sees a
// refused call (that one audits itself).
func (c *Controller) openGRPC() error {
	tlsCfg, err := c.serverTLS(time.Now())
	if err != nil {
		return err
	}
	c.grpcLis, err = net.Listen("tcp", c.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc_addr: %w", err)
	}
	c.httpLis, err = net.Listen("tcp", c.cfg.HTTPAddr)
	if err != nil {
		c.grpcLis.Close() // this component is not open, so its stop will not run
		c.grpcLis = nil
		return fmt.Errorf("http_addr: %w", err)
	}
	c.roles, c.audited = map[string]string{}, map[string]string{}
	authn := auth.Authenticator{Tokens: c.fleet, Audit: c.fleet, Roles: c.roles}
	audit := auth.Audit{Log: c.fleet, Actions: c.audited}
	c.gateway = auth.NewGateway(authn, audit)
	opts := []grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.ChainUnaryInterceptor(authn.UnaryInterceptor, audit.UnaryInterceptor),
		grpc.ChainStreamInterceptor(authn.StreamInterceptor, audit.StreamInterceptor),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.MaxRecvMsgSize(4 << 20),
		// Per-connection memory: rigs send a small report every few
		// seconds, so gRPC's 32 KiB read buffer per connection (TLS
		// already buffers each record) is most of what an idle rig costs;
		// write buffers are shared between flushes by default. A fixed window also
		// stops the per-connection bandwidth probing, which only pays off
		// for bulk transfers.
		grpc.ReadBufferSize(0),
		grpc.InitialWindowSize(64 << 10),
		grpc.InitialConnWindowSize(64 << 10),
	}
	c.grpcSrv = grpc.NewServer(append(opts, c.extra...)...)
	return nil
}

// closeUnserved closes the listeners Serve never took over (New failed
// after binding them); served ones close with their servers.
func (c *Controller) closeUnserved() {
	if c.served {
		return
	}
	for _, l := range []net.Listener{c.grpcLis, c.httpLis, c.metricsLis} {
		if l != nil {
			l.Close()
		}
	}
}

func (c *Controller) openMux() error {
	c.mux = http.NewServeMux()
	c.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	c.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !c.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return nil
}

func (c *Controller) openBilling() error {
	var err error
	if c.billing, err = billing.OpenRuntime(c.cfg.Billing, c.db, c.fleet, c.log); err != nil {
		return err
	}
	c.billing.Mount(c.mux)
	c.RegisterService(&quarryv1.BillingService_ServiceDesc, c.billing.Server(), billing.BillingRoles, billing.BillingAudit)
	return nil
}

func (c *Controller) openGossip() error {
	var err error
	if c.gossip, err = gossipd.Open(gossipd.Options{Config: c.cfg.Gossip, DataDir: c.cfg.DataDir, Version: c.version, Fleet: c.fleet, Log: c.log, Keyring: c.gossipKeyring()}); err != nil {
		return err
	}
	c.RegisterService(&quarryv1.GossipService_ServiceDesc, c.gossip.Server(), gossipd.GossipRoles, gossipd.GossipAudit)
	return nil
}

// openFleetServices registers AgentService, which hands rigs the gossip
// keyring, address and event key, and FleetService, whose revocations
// also evict the rig from gossip.
func (c *Controller) openFleetServices() error {
	quarryv1.RegisterAgentServiceServer(c.grpcSrv, &fleet.AgentServer{
		Fleet:          c.fleet,
		Enrollment:     c.gossip.Enrollment(fleet.Enrollment{CA: c.ca, CertTTL: c.cfg.AgentCertTTL}),
		ReportInterval: c.cfg.ReportInterval,
		Log:            c.log,
		Controllers:    c.controllers(),
	})
	c.RegisterService(&quarryv1.FleetService_ServiceDesc, &fleet.FleetServer{Fleet: c.fleet, CA: c.ca, Version: c.version, OnRevoke: c.gossip.Revoked}, fleet.FleetRoles, fleet.FleetAudit)
	return nil
}

func (c *Controller) openServing() error {
	c.httpSrv = c.cfg.Web.httpServer(c.mux)
	if c.web != nil {
		c.httpSrv.RegisterOnShutdown(c.web.Close) // live streams end so Shutdown can finish
	}
	return nil
}

// serverTLS issues a fresh server certificate on every start, so adding a
// server name needs only a restart.
func (c *Controller) serverTLS(now time.Time) (*tls.Config, error) {
	return serverTLS(c.cfg, c.ca, now)
}

func serverTLS(cfg Config, ca *pki.CA, now time.Time) (*tls.Config, error) {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	if host, _, err := net.SplitHostPort(cfg.GRPCAddr); err == nil && host != "" && host != "0.0.0.0" && host != "::" {
		hosts = append(hosts, host)
	}
	hosts = append(hosts, cfg.ServerNames...)
	der, key, err := ca.IssueServer(hosts, 365*24*time.Hour, now)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der, ca.CertDER}, PrivateKey: key}},
		// Enrollment happens before a rig has a certificate, so the
		// handshake allows none; every service checks identity itself.
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  ca.Pool(),
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
	}, nil
}

// localCredentials writes, readable only by the owner, an admin token for
// quarryctl on this machine and a join token for a local agent, so the
// quick start needs no manual steps.
func (c *Controller) localCredentials() error {
	adminPath := filepath.Join(c.cfg.DataDir, AdminTokenFile)
	if b, err := os.ReadFile(adminPath); err != nil || !c.adminTokenLasts(string(b)) {
		tok, _, err := c.fleet.ReplaceAdminToken(c.localAdminName(), fleet.RoleAdmin, fleet.DefaultAdminTokenTTL, "controller")
		if err != nil {
			return err
		}
		if err := pki.WriteFileAtomic(adminPath, []byte(tok+"\n"), 0o600); err != nil {
			return err
		}
	}
	if err := pki.WriteFileAtomic(filepath.Join(c.cfg.DataDir, "ca.crt"), pki.EncodeCert(c.ca.CertDER), 0o644); err != nil {
		return err
	}
	if !c.cfg.LocalToken {
		return nil
	}
	agentPath := filepath.Join(c.cfg.DataDir, AgentTokenFile)
	if b, err := os.ReadFile(agentPath); err == nil && c.fleet.TokenUsable(string(trim(b))) {
		return nil
	}
	tok, _, err := c.fleet.CreateToken(c.ca.Hash(), 24*time.Hour, 1, "", "controller")
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(agentPath, []byte(tok+"\n"), 0o600)
}

// LocalAdminName names the admin token the controller keeps in its data
// dir for quarryctl on the same machine.
const LocalAdminName = "local-admin"

// localAdminName is LocalAdminName, with the member's id in a group: the
// tokens are the group's, and one member taking the lead must not
// replace the token another member's machine keeps.
func (c *Controller) localAdminName() string {
	if c.group == nil {
		return LocalAdminName
	}
	return LocalAdminName + "@" + c.group.ID()
}

// localAdminRenewal: the local admin token is replaced on start when it
// has less than this left, so a controller restarted now and then never
// finds its own token expired.
const localAdminRenewal = 30 * 24 * time.Hour

// adminTokenLasts reports whether s is the live local admin token with
// more than localAdminRenewal left.
func (c *Controller) adminTokenLasts(s string) bool {
	name, _, err := c.fleet.CheckAdminToken(string(trim([]byte(s))))
	if err != nil || name != c.localAdminName() {
		return false
	}
	ts, err := c.fleet.AdminTokens()
	if err != nil {
		return false
	}
	for _, t := range ts {
		if t.Name == name {
			return t.Expires.Sub(c.fleet.Now()) > localAdminRenewal
		}
	}
	return false
}

func trim(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// Fleet exposes the fleet state to the packages wired around it.
func (c *Controller) Fleet() *fleet.Fleet { return c.fleet }

// CA exposes the fleet CA.
func (c *Controller) CA() *pki.CA { return c.ca }

// Mux is the HTTP mux, for handlers added by other packages before Serve.
func (c *Controller) Mux() *http.ServeMux { return c.mux }

// GRPCServer is the gRPC server, for services added before Serve.
func (c *Controller) GRPCServer() *grpc.Server { return c.grpcSrv }

// GRPCAddr and HTTPAddr are the bound addresses (useful with port 0).
func (c *Controller) GRPCAddr() string { return c.grpcLis.Addr().String() }
func (c *Controller) HTTPAddr() string { return c.httpLis.Addr().String() }

// Serve starts every component, in order, and runs until ctx is
// cancelled; then they stop in reverse: agent streams end, reports already
// accepted are committed and observed, the database closes last. It
// returns the first serving error, if any.
func (c *Controller) Serve(ctx context.Context) error {
	c.start()
	c.log.Info("controller serving", "grpc", c.GRPCAddr(), "http", c.HTTPAddr(), "data_dir", c.cfg.DataDir, "ca", c.ca.Hash())
	var err error
	select {
	case <-ctx.Done():
	case err = <-c.serveErr:
		if err != nil {
			err = fmt.Errorf("serve: %w", err)
		}
	}
	c.log.Info("controller shutting down")
	c.stop()
	c.log.Info("controller stopped")
	return err
}

// startServing serves gRPC and HTTP, and says the controller is ready.
func (c *Controller) startServing() {
	c.served = true
	go func() { c.serveErr <- c.grpcSrv.Serve(c.grpcLis) }()
	go func() {
		if err := c.httpSrv.Serve(c.httpLis); !errors.Is(err, http.ErrServerClosed) {
			c.serveErr <- err
			return
		}
		c.serveErr <- nil
	}()
	if c.metricsSrv != nil {
		go func() {
			if err := c.metricsSrv.Serve(c.metricsLis); !errors.Is(err, http.ErrServerClosed) {
				c.serveErr <- err
			}
		}()
	}
	c.ready.Store(true)
}

// stopServing ends agent streams and job watches, so that the graceful
// stop need not wait for them, then stops the servers.
func (c *Controller) stopServing() {
	c.ready.Store(false)
	c.fleet.EndSessions()
	c.closeJobs()
	stopped := make(chan struct{})
	go func() {
		c.grpcSrv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(c.cfg.ShutdownGrace):
		c.log.Warn("streams did not drain in time; closing them")
		c.grpcSrv.Stop()
		<-stopped
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.httpSrv.Shutdown(sctx)
	if c.metricsSrv != nil {
		_ = c.metricsSrv.Shutdown(sctx)
	}
}
