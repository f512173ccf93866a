package agentd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/pkg/leaderhint"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// DBFile is the agent's database in its data dir.
const DBFile = "agent.db"

// Sampler produces the figures for one report.
type Sampler interface {
	Sample(ctx context.Context) (*quarryv1.Report, error)
	Inventory(ctx context.Context) *quarryv1.Inventory
}

// Agent is a running rig agent.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	version  string
	db       *bolt.DB
	buf      *link.Buffer
	id       *link.Identity
	sampler  Sampler
	handlers map[quarryv1.CommandKind]CommandFunc
	interval atomic.Int64
	tick     chan struct{}
	hooks    []func(context.Context, *quarryv1.Report)
	stoppers []func(context.Context)
	gossip   *gossipAgent
	// installed lists the catalogue miners unpacked here, for Hello.
	installed func() []*quarryv1.InstalledMiner
	linkUp    atomic.Bool
	// ctrls is the controllers this agent knows and the one it uses,
	// shared by the link and every other call to the controller.
	ctrls *link.Controllers
}

// Bounds of a clean stop: what OnStop functions may take, and how long the
// last report may wait for the controller's acknowledgement.
const (
	stopTimeout  = 30 * time.Second
	flushTimeout = 3 * time.Second
)

// CommandFunc runs one kind of command.
type CommandFunc func(ctx context.Context, payload []byte) ([]byte, error)

// New opens the agent's storage and, if needed, enrolls with the controller.
func New(ctx context.Context, cfg Config, version string, sampler Sampler, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	a := &Agent{cfg: cfg, log: log, version: version, sampler: sampler, handlers: map[quarryv1.CommandKind]CommandFunc{}, tick: make(chan struct{}, 1)}
	a.interval.Store(int64(cfg.ReportInterval))
	if a.interval.Load() == 0 {
		a.interval.Store(int64(10 * time.Second))
	}
	a.Handle(quarryv1.CommandKind_COMMAND_KIND_RUN_JOB, a.runJob)
	a.Handle(quarryv1.CommandKind_COMMAND_KIND_PING, func(context.Context, []byte) ([]byte, error) {
		return []byte("pong from " + hostname()), nil
	})
	var err error
	// The learned controller list lives beside the identity: both describe
	// the fleet this rig belongs to.
	if a.ctrls, err = link.NewControllers(cfg.ControllerAddrs(), filepath.Join(cfg.DataDir, "pki")); err != nil {
		return nil, err
	}
	a.db, err = store.Open(filepath.Join(cfg.DataDir, DBFile), link.Buckets...)
	if err != nil {
		return nil, err
	}
	a.buf, err = link.OpenBuffer(a.db, cfg.BufferSize, log)
	if err != nil {
		a.db.Close()
		return nil, err
	}
	if err := a.buf.PruneCommands(30 * 24 * time.Hour); err != nil {
		log.Warn("prune executed commands", "err", err)
	}
	if !cfg.Insecure {
		if a.id, err = a.identity(ctx); err != nil {
			a.db.Close()
			return nil, err
		}
	}
	return a, nil
}

func (a *Agent) identity(ctx context.Context) (*link.Identity, error) {
	dir := filepath.Join(a.cfg.DataDir, "pki")
	id, err := link.LoadIdentity(dir)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, link.ErrNotEnrolled) {
		return nil, err
	}
	token := a.cfg.Token
	if token == "" && a.cfg.TokenFile != "" {
		if b, rerr := os.ReadFile(a.cfg.TokenFile); rerr == nil {
			token = strings.TrimSpace(string(b))
		}
	}
	if token == "" {
		return nil, err
	}
	id, err = a.enroll(ctx, dir, token)
	if err != nil {
		return nil, err
	}
	a.log.Info("enrolled", "rig", id.RigID())
	return id, nil
}

// enroll tries each configured controller in turn: only the leader
// enrolls, and a standby's hint is followed only to a configured address,
// since the token is a secret.
func (a *Agent) enroll(ctx context.Context, dir, token string) (*link.Identity, error) {
	addrs := a.cfg.ControllerAddrs()
	var errs []error
	tried := map[string]bool{}
	for addr := addrs[0]; addr != ""; {
		tried[addr] = true
		a.log.Info("enrolling with controller", "controller", addr)
		id, err := link.Enroll(ctx, dir, addr, token, hostname())
		if err == nil {
			return id, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
		hint, _ := leaderhint.Leader(err)
		addr = ""
		if slices.Contains(addrs, hint) && !tried[hint] {
			addr = hint
			continue
		}
		for _, next := range addrs {
			if !tried[next] {
				addr = next
				break
			}
		}
	}
	return nil, errors.Join(errs...)
}

// Handle registers the function for a command kind.
func (a *Agent) Handle(kind quarryv1.CommandKind, fn CommandFunc) { a.handlers[kind] = fn }

// OnReport registers fn to add to every report before it is buffered.
// Call before Run.
func (a *Agent) OnReport(fn func(context.Context, *quarryv1.Report)) { a.hooks = append(a.hooks, fn) }

// OnStop registers fn to run at a clean stop, after the last regular
// report and before a final one, while the controller link is still up:
// events fn records (a miner stopping) reach the controller in that final
// report. Functions run in reverse order of registration.
func (a *Agent) OnStop(fn func(context.Context)) { a.stoppers = append(a.stoppers, fn) }

// Event records e durably for the next report: it survives an agent
// restart and reaches the controller exactly once.
func (a *Agent) Event(e *quarryv1.Event) {
	if err := a.buf.AddEvent(e); err != nil {
		a.log.Error("event lost: could not store it", "kind", e.Kind, "message", e.Message, "err", err)
	}
}

// RigID is this rig's id.
func (a *Agent) RigID() string {
	if a.id == nil {
		return a.cfg.RigID
	}
	return a.id.RigID()
}

// Identity is the rig's certificate identity (nil when insecure).
func (a *Agent) Identity() *link.Identity { return a.id }

// DB is the agent's database, for packages that keep state beside it.
func (a *Agent) DB() *bolt.DB { return a.db }

// Buffer is the durable report buffer.
func (a *Agent) Buffer() *link.Buffer { return a.buf }

// HandleCommand dispatches a controller command.
func (a *Agent) HandleCommand(ctx context.Context, cmd *quarryv1.Command) ([]byte, error) {
	fn, ok := a.handlers[cmd.Kind]
	if !ok {
		return nil, fmt.Errorf("this agent does not support %s", cmd.Kind)
	}
	return fn(ctx, cmd.Payload)
}

// Run samples and reports until ctx ends, then closes storage. Reports not
// yet acknowledged stay in the buffer for the next start.
func (a *Agent) Run(ctx context.Context) error {
	defer a.db.Close()
	a.gossip = a.startGossip(ctx)
	defer a.gossip.close()
	client := &link.Client{
		Controllers: a.ctrls,
		ServerName:  a.cfg.ServerName,
		Identity:    a.id,
		Insecure:    a.cfg.Insecure,
		RigID:       a.cfg.RigID,
		Buffer:      a.buf,
		Handler:     a,
		Log:         a.log,
		Hello: func() *quarryv1.Hello {
			h := &quarryv1.Hello{Hostname: hostname(), Version: a.version}
			if a.sampler != nil {
				h.Inventory = a.sampler.Inventory(ctx)
			}
			if a.installed != nil {
				if h.Inventory == nil {
					h.Inventory = &quarryv1.Inventory{}
				}
				h.Inventory.InstalledMiners = a.installed()
			}
			return h
		},
		OnState: func(up bool) {
			a.linkUp.Store(up)
			a.gossip.linkState(up)
		},
		OnSettings: func(s *quarryv1.AgentSettings) {
			a.gossip.settings(s)
			if a.cfg.ReportInterval == 0 && s.ReportIntervalSeconds > 0 {
				if old := a.interval.Swap(int64(time.Duration(s.ReportIntervalSeconds) * time.Second)); old != a.interval.Load() {
					select {
					case a.tick <- struct{}{}:
					default:
					}
				}
			}
		},
	}
	// The link outlives ctx until the final report of a clean stop is
	// acknowledged (or flushTimeout passes).
	linkCtx, stopLink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLink()
	linkDone := make(chan error, 1)
	go func() { linkDone <- client.Run(linkCtx) }()
	a.log.Info("agent running", "rig", a.RigID(), "controllers", a.ctrls.List(), "data_dir", a.cfg.DataDir)
	a.reportLoop(ctx)
	a.finish(ctx)
	stopLink()
	err := <-linkDone
	a.log.Info("agent stopped", "buffered_reports", a.buf.Len())
	return err
}

// finish is a clean stop: the OnStop functions run, one last report
// carries what they recorded, and while the link is up the agent waits
// briefly for the controller to acknowledge it. What is not acknowledged
// stays buffered for the next start.
func (a *Agent) finish(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	for i := len(a.stoppers) - 1; i >= 0; i-- {
		a.stoppers[i](sctx)
	}
	seq := a.reportOnce(sctx)
	if seq == 0 || !a.linkUp.Load() {
		return
	}
	fctx, fcancel := context.WithTimeout(sctx, flushTimeout)
	defer fcancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for a.buf.Acked() < seq && a.linkUp.Load() {
		select {
		case <-fctx.Done():
			a.log.Warn("stopping before the controller acknowledged the last report; it stays buffered", "seq", seq)
			return
		case <-t.C:
		}
	}
}

func (a *Agent) reportLoop(ctx context.Context) {
	for {
		a.reportOnce(ctx)
		t := time.NewTimer(time.Duration(a.interval.Load()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.tick:
			t.Stop()
		case <-t.C:
		}
	}
}

func (a *Agent) reportOnce(ctx context.Context) uint64 {
	r := &quarryv1.Report{}
	if a.sampler != nil {
		s, err := a.sampler.Sample(ctx)
		if err != nil {
			a.log.Warn("sample failed; reporting without figures", "err", err)
		} else if s != nil {
			r = s
		}
	}
	for _, fn := range a.hooks {
		fn(ctx, r)
	}
	r.TimeUnixNano = time.Now().UnixNano()
	seq, err := a.buf.Append(r)
	if err != nil {
		a.log.Error("buffer report", "err", err)
	}
	return seq
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}
