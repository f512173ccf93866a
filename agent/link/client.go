package link

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/pkg/leaderhint"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// CommandHandler runs a command from the controller. It must return when
// ctx is done.
type CommandHandler interface {
	HandleCommand(ctx context.Context, cmd *quarryv1.Command) (output []byte, err error)
}

// HelloFunc describes the rig for each new session.
type HelloFunc func() *quarryv1.Hello

// Client keeps the agent connected, replays its buffer and runs commands.
type Client struct {
	// Addr is the controller's address when Controllers is nil.
	Addr string
	// Controllers, if set, are the addresses to fail over between; the
	// client also adds the ones each Welcome announces.
	Controllers *Controllers
	// ServerName is the name to verify in the controller's certificate;
	// empty means the host of the address being dialled.
	ServerName string
	Identity   *Identity // nil only with Insecure
	Insecure   bool      // plaintext and self-declared rig id: load tests only
	RigID      string    // used only with Insecure
	Buffer     *Buffer
	Handler    CommandHandler
	Hello      HelloFunc
	Log        *slog.Logger
	// OnSettings is called with the controller's settings on each Welcome
	// and whenever the controller pushes new ones on the stream.
	OnSettings func(*quarryv1.AgentSettings)
	// OnState is told when the link goes up or down.
	OnState func(connected bool)
	// OnAck, if set, is told each acknowledgement after the buffer has
	// dropped what it covers.
	OnAck func(upTo uint64)
	// OnCommand, if set, is told of each command as it arrives, before it
	// is recorded or run. It must not block.
	OnCommand func(*quarryv1.Command)

	BackoffBase  time.Duration // default 500ms
	BackoffMax   time.Duration // default 30s
	DrainTimeout time.Duration // default 3s: wait for acks on shutdown

	queue   chan *quarryv1.Command
	results chan *quarryv1.CommandResult
	runMu   sync.Mutex
	running map[string]bool
	conns   *Redialer
}

// Run keeps a session open until ctx ends, reconnecting with jittered
// exponential backoff.
func (c *Client) Run(ctx context.Context) error {
	if c.BackoffBase <= 0 {
		c.BackoffBase = 500 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 30 * time.Second
	}
	if !c.Insecure && c.Identity == nil {
		return ErrNotEnrolled
	}
	if c.Controllers == nil {
		ctrls, err := NewControllers([]string{c.Addr}, "")
		if err != nil {
			return err
		}
		c.Controllers = ctrls
	}
	c.queue = make(chan *quarryv1.Command, 256)
	c.results = make(chan *quarryv1.CommandResult, 64)
	c.running = make(map[string]bool)
	c.conns = NewRedialer(c.Controllers, func(addr string) (*grpc.ClientConn, error) {
		creds := insecure.NewCredentials()
		if !c.Insecure {
			creds = credentials.NewTLS(c.Identity.TLSConfig(serverNameFor(c.ServerName, addr)))
		}
		return grpc.NewClient(addr,
			grpc.WithTransportCredentials(creds),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 20 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
			// A link carries a report every few seconds over TLS, which
			// buffers whole records itself: gRPC's own 32 KiB read buffer
			// only costs memory, which a simulator holding thousands of
			// links feels. (Write buffers are shared between flushes by
			// default.)
			grpc.WithReadBufferSize(0),
			// A fixed window, as the controller sets on its side: with the
			// default, every burst the controller sends (an acknowledgement,
			// a command) is answered with a bandwidth-probing ping that
			// both ends must read and the controller must answer.
			grpc.WithInitialWindowSize(64<<10),
			grpc.WithInitialConnWindowSize(64<<10),
		)
	})
	defer c.conns.Close()
	cmdDone := make(chan struct{})
	go func() { defer close(cmdDone); c.commandLoop(ctx) }()
	defer func() { <-cmdDone }()

	if !c.Insecure {
		go c.renewLoop(ctx)
	}

	attempt := 0
	// tried holds the addresses that failed since the last backoff: the
	// client moves straight on to an untried one, and backs off only once
	// every known address has failed, so a dead leader costs one round
	// trip per controller rather than one backoff each.
	tried := map[string]bool{}
	for {
		start := time.Now()
		conn, addr, err := c.conns.Conn()
		if err == nil {
			err = c.session(ctx, quarryv1.NewAgentServiceClient(conn), addr)
		}
		if ctx.Err() != nil {
			return nil
		}
		if c.OnState != nil {
			c.OnState(false)
		}
		hint, refused := leaderhint.Leader(err)
		switch {
		case refused:
			c.Log.Info("controller is a standby; moving on", "addr", addr, "leader", hint)
		case status.Code(err) == codes.PermissionDenied:
			c.Log.Error("controller refused this rig", "addr", addr, "err", err)
		default:
			c.Log.Warn("controller link down", "addr", addr, "err", err, "buffered", c.Buffer.Len())
		}
		if time.Since(start) > time.Minute {
			attempt = 0 // the session was healthy; start backing off afresh
			clear(tried)
		}
		tried[addr] = true
		// The hint is followed only to a known address: a standby is a
		// controller with a valid certificate, but it has no business
		// sending rigs anywhere the group has not announced.
		next, roundDone := c.Controllers.advance(addr, hint, tried)
		if next != addr {
			c.Log.Info("trying another controller", "addr", next)
		}
		if !roundDone {
			continue
		}
		clear(tried)
		attempt++
		wait := Backoff(attempt, c.BackoffBase, c.BackoffMax, rand.Float64())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// serverNameFor is the TLS name to verify for addr: the configured one, or
// the address's host, since each controller of a group has its own name.
func serverNameFor(configured, addr string) string {
	if configured != "" {
		return configured
	}
	host, _, _ := net.SplitHostPort(addr)
	return host
}

// Backoff is "full jitter" exponential backoff: a random wait between zero
// and min(max, base·2^(attempt-1)), so a fleet that lost its controller
// does not reconnect in lockstep. r is a uniform number in [0,1).
func Backoff(attempt int, base, max time.Duration, r float64) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return time.Duration(float64(d)*r) + base/4
}

func (c *Client) renewLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.Identity.RenewDue(time.Now()) {
			continue
		}
		conn, _, err := c.conns.Conn()
		if err != nil {
			c.Log.Warn("certificate renewal: no controller connection; will retry", "err", err)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = c.Identity.Renew(rctx, quarryv1.NewAgentServiceClient(conn))
		cancel()
		if err != nil {
			c.Log.Warn("certificate renewal failed; will retry", "err", err, "expires", c.Identity.Leaf().NotAfter)
			continue
		}
		c.Log.Info("certificate renewed", "expires", c.Identity.Leaf().NotAfter)
	}
}

func (c *Client) rigID() string {
	if c.Insecure {
		return c.RigID
	}
	return c.Identity.RigID()
}

func (c *Client) session(ctx context.Context, client quarryv1.AgentServiceClient, addr string) error {
	// The stream outlives ctx briefly on shutdown so reports already sent
	// can still be acknowledged (see drain).
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stream, err := client.Connect(sctx)
	if err != nil {
		return err
	}
	hello := &quarryv1.Hello{}
	if c.Hello != nil {
		hello = c.Hello()
	}
	hello.RigId = c.rigID()
	hello.LastAckedSeq = c.Buffer.Acked()
	if err := stream.Send(&quarryv1.ConnectRequest{Msg: &quarryv1.ConnectRequest_Hello{Hello: hello}}); err != nil {
		return recvErr(stream, err)
	}
	first, err := recvWithin(ctx, stream)
	if err != nil {
		return err
	}
	welcome := first.GetWelcome()
	if welcome == nil {
		return errors.New("controller did not answer Hello with Welcome")
	}
	if welcome.ResumeFromSeq > 0 {
		if err := c.Buffer.AckUpTo(welcome.ResumeFromSeq - 1); err != nil {
			return err
		}
	}
	c.learn(welcome.Settings)
	if c.OnSettings != nil && welcome.Settings != nil {
		c.OnSettings(welcome.Settings)
	}
	if c.OnState != nil {
		c.OnState(true)
	}
	c.Log.Info("connected to controller", "addr", addr, "rig", hello.RigId, "resume_from", welcome.ResumeFromSeq, "buffered", c.Buffer.Len())

	var sent atomic.Uint64
	errc := make(chan error, 2)
	go func() { errc <- c.sendLoop(ctx, sctx, stream, welcome.ResumeFromSeq, c.results, &sent) }()
	go func() { errc <- c.recvLoop(sctx, stream) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		c.drain(sctx, &sent)
	}
	cancel()
	return err
}

// learn adds the controller addresses the group announced to the known
// list; Controllers validates and caps them.
func (c *Client) learn(s *quarryv1.AgentSettings) {
	if len(s.GetControllers()) == 0 {
		return
	}
	grew, err := c.Controllers.Learn(s.GetControllers())
	if err != nil {
		c.Log.Warn("could not keep the controller list; it is used until restart", "err", err)
	}
	if grew {
		c.Log.Info("learned controller addresses", "controllers", c.Controllers.List())
	}
}

// drain waits, briefly, for the controller to acknowledge what was already
// sent, so a clean stop leaves nothing in flight. Anything left simply stays
// in the buffer for the next start.
func (c *Client) drain(ctx context.Context, sent *atomic.Uint64) {
	deadline := time.NewTimer(c.drainTimeout())
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for c.Buffer.Acked() < sent.Load() {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			c.Log.Warn("stopping with reports not yet acknowledged; they stay buffered", "sent", sent.Load(), "acked", c.Buffer.Acked())
			return
		case <-tick.C:
		}
	}
}

func (c *Client) drainTimeout() time.Duration {
	if c.DrainTimeout > 0 {
		return c.DrainTimeout
	}
	return 3 * time.Second
}

// recvWithin is Recv that gives up when ctx ends; the stream's own context
// outlives ctx for draining.
func recvWithin(ctx context.Context, stream quarryv1.AgentService_ConnectClient) (*quarryv1.ConnectResponse, error) {
	type res struct {
		m   *quarryv1.ConnectResponse
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := stream.Recv()
		ch <- res{m, err}
	}()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// recvErr turns a failed Send into the server's real reason, which gRPC
// only reports on Recv.
func recvErr(stream quarryv1.AgentService_ConnectClient, sendErr error) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	return sendErr
}

// sendLoop sends buffered reports and command results. It stops sending
// new reports when ctx (the agent's life) ends, and returns when sctx (the
// stream's) ends.
func (c *Client) sendLoop(ctx, sctx context.Context, stream quarryv1.AgentService_ConnectClient, from uint64, results <-chan *quarryv1.CommandResult, sent *atomic.Uint64) error {
	next := max(from, 1)
	for {
		if ctx.Err() != nil {
			<-sctx.Done()
			return nil
		}
		batch, err := c.Buffer.Range(next, 256)
		if err != nil {
			return err
		}
		for _, r := range batch {
			if err := stream.Send(&quarryv1.ConnectRequest{Msg: &quarryv1.ConnectRequest_Report{Report: r}}); err != nil {
				return recvErr(stream, err)
			}
			next = r.Seq + 1
			sent.Store(r.Seq)
		}
		if len(batch) == 256 {
			continue
		}
		select {
		case <-ctx.Done():
		case <-sctx.Done():
			return nil
		case <-c.Buffer.Notify():
		case res := <-results:
			if err := stream.Send(&quarryv1.ConnectRequest{Msg: &quarryv1.ConnectRequest_CommandResult{CommandResult: res}}); err != nil {
				return recvErr(stream, err)
			}
		}
	}
}

func (c *Client) recvLoop(ctx context.Context, stream quarryv1.AgentService_ConnectClient) error {
	for {
		msg, err := stream.Recv()
		if err != nil {
			return err
		}
		switch m := msg.Msg.(type) {
		case *quarryv1.ConnectResponse_Ack:
			if err := c.Buffer.AckUpTo(m.Ack.UpToSeq); err != nil {
				return err
			}
			if c.OnAck != nil {
				c.OnAck(m.Ack.UpToSeq)
			}
		case *quarryv1.ConnectResponse_Command:
			if c.OnCommand != nil {
				c.OnCommand(m.Command)
			}
			if err := c.accept(ctx, m.Command); err != nil {
				return err
			}
		case *quarryv1.ConnectResponse_Settings:
			c.learn(m.Settings)
			if c.OnSettings != nil && m.Settings != nil {
				c.OnSettings(m.Settings)
			}
		case *quarryv1.ConnectResponse_Welcome:
			return errors.New("unexpected second Welcome")
		}
	}
}

// accept queues a new command, answers a finished one from the stored
// result, and ignores one that is still running: a command outlives the
// stream it arrived on, and its result goes out on whichever stream is up
// when it finishes.
func (c *Client) accept(ctx context.Context, cmd *quarryv1.Command) error {
	c.runMu.Lock()
	running := c.running[cmd.Id]
	c.runMu.Unlock()
	if running {
		return nil
	}
	res, seen, err := c.Buffer.BeginCommand(cmd.Id)
	if err != nil {
		return err
	}
	if seen {
		c.Log.Info("command redelivered; sending stored result", "command", cmd.Id)
		select {
		case c.results <- res:
		default: // stored; it will be answered on the next redelivery
		}
		return nil
	}
	c.runMu.Lock()
	c.running[cmd.Id] = true
	c.runMu.Unlock()
	select {
	case c.queue <- cmd:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// commandLoop runs commands one at a time, in the order received, for the
// agent's whole life.
func (c *Client) commandLoop(ctx context.Context) {
	for {
		var cmd *quarryv1.Command
		select {
		case <-ctx.Done():
			return
		case cmd = <-c.queue:
		}
		res := c.execute(ctx, cmd)
		if ctx.Err() != nil {
			// Stopped mid-command: leave it marked started, so it is
			// reported as interrupted rather than run again.
			return
		}
		if err := c.Buffer.FinishCommand(res); err != nil {
			c.Log.Error("store command result", "command", cmd.Id, "err", err)
		}
		c.runMu.Lock()
		delete(c.running, cmd.Id)
		c.runMu.Unlock()
		select {
		case c.results <- res:
		case <-ctx.Done():
			return
		}
	}
}

func (c *Client) execute(ctx context.Context, cmd *quarryv1.Command) *quarryv1.CommandResult {
	res := &quarryv1.CommandResult{CommandId: cmd.Id, Status: quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED}
	if cmd.ExpiresUnixNano != 0 && time.Now().UnixNano() > cmd.ExpiresUnixNano {
		res.Status = quarryv1.CommandStatus_COMMAND_STATUS_EXPIRED
		res.Error = "command expired before it reached the rig"
		return res
	}
	log := c.Log.With("command", cmd.Id, "kind", cmd.Kind.String())
	log.Info("running command")
	if c.Handler == nil {
		res.Status = quarryv1.CommandStatus_COMMAND_STATUS_FAILED
		res.Error = "agent has no command handler"
		return res
	}
	out, err := c.Handler.HandleCommand(ctx, cmd)
	res.Output = out
	if err != nil {
		res.Status = quarryv1.CommandStatus_COMMAND_STATUS_FAILED
		res.Error = err.Error()
		log.Warn("command failed", "err", err)
	}
	return res
}
