// Package loadgen simulates a fleet of agents against a real controller to
// measure ingest the way production runs: each simulated rig enrolls with a
// join token (its own key, a certificate request, a certificate), then opens
// its own mutual-TLS connection and stream, sends reports on a schedule and
// times each one from send until the controller's acknowledgement (which it
// sends only after the durable commit).
package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/quarryfleet/quarry/pkg/pki"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Options describe one run.
type Options struct {
	Addr string
	// Token is a join token with at least Rigs uses ('quarryctl token
	// create --uses N'); CA is the controller's CA certificate (PEM), which
	// the token's pin must match.
	Token    string
	CA       []byte
	Rigs     int
	Interval time.Duration // per-rig report period; 0 = as fast as acks allow
	Duration time.Duration // measured period after all rigs connected
	Prefix   string        // hostname prefix, so runs are told apart
	GPUs     int           // GPUs per report, for a realistic payload
}

// Result is what a run measured.
type Result struct {
	Rigs         int
	Sent         uint64
	Acked        uint64
	Elapsed      time.Duration
	PerSecond    float64
	P50, P99, Mx time.Duration
	EnrollTime   time.Duration
	ConnectTime  time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("rigs=%d acked=%d in %s: %.0f reports/s committed; send→commit p50=%s p99=%s max=%s (enroll %s, connect %s)",
		r.Rigs, r.Acked, r.Elapsed.Round(time.Millisecond), r.PerSecond, r.P50, r.P99, r.Mx, r.EnrollTime.Round(time.Millisecond), r.ConnectTime.Round(time.Millisecond))
}

type rig struct {
	id     string
	cert   tls.Certificate
	conn   *grpc.ClientConn
	stream quarryv1.AgentService_ConnectClient
	mu     sync.Mutex
	sentAt map[uint64]time.Time
	seq    uint64
	acked  atomic.Uint64
	ackCh  chan struct{}
}

// Run enrolls and connects every rig, reports for opts.Duration and
// measures.
func Run(ctx context.Context, opts Options) (Result, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(opts.CA) {
		return Result{}, errors.New("the controller CA is not a PEM certificate")
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return Result{}, fmt.Errorf("addr: %w", err)
	}
	base := &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS13}
	anon, err := grpc.NewClient(opts.Addr, grpc.WithTransportCredentials(credentials.NewTLS(base)))
	if err != nil {
		return Result{}, err
	}
	defer anon.Close()
	enroller := quarryv1.NewAgentServiceClient(anon)

	report := sampleReport(opts.GPUs)
	rigs := make([]*rig, opts.Rigs)
	start := time.Now()
	var g errgroup.Group
	g.SetLimit(32)
	for i := range rigs {
		r := &rig{sentAt: map[uint64]time.Time{}, ackCh: make(chan struct{}, 1)}
		rigs[i] = r
		hostname := fmt.Sprintf("%s-%06d", opts.Prefix, i)
		g.Go(func() error { return r.enroll(ctx, enroller, opts.Token, hostname) })
	}
	if err := g.Wait(); err != nil {
		return Result{}, err
	}
	enrollTime := time.Since(start)
	defer func() {
		for _, r := range rigs {
			if r.conn != nil {
				r.conn.Close()
			}
		}
	}()
	start = time.Now()
	for _, r := range rigs {
		g.Go(func() error { return r.connect(ctx, opts.Addr, base) })
	}
	if err := g.Wait(); err != nil {
		return Result{}, err
	}
	connectTime := time.Since(start)

	var lat latencies
	var sent atomic.Uint64
	runCtx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range rigs {
		wg.Add(2)
		go func() { defer wg.Done(); r.recv(&lat) }()
		go func() { defer wg.Done(); r.send(runCtx, opts.Interval, report, &sent) }()
	}
	measureStart := time.Now()
	<-runCtx.Done()
	elapsed := time.Since(measureStart)
	// Give in-flight reports a moment to be acknowledged.
	time.Sleep(2 * time.Second)
	for _, r := range rigs {
		_ = r.stream.CloseSend()
	}
	ackedInWindow := lat.countBefore(measureStart.Add(elapsed))
	res := Result{Rigs: opts.Rigs, Sent: sent.Load(), Acked: uint64(lat.n()), Elapsed: elapsed, EnrollTime: enrollTime, ConnectTime: connectTime}
	res.PerSecond = float64(ackedInWindow) / elapsed.Seconds()
	res.P50, res.P99, res.Mx = lat.quantiles()
	return res, nil
}

// enroll gets the rig a certificate for a key made here, as an agent does
// on its first start.
func (r *rig) enroll(ctx context.Context, c quarryv1.AgentServiceClient, token, hostname string) error {
	key, csr, err := pki.NewKeyAndRequest(hostname)
	if err != nil {
		return err
	}
	resp, err := c.Enroll(ctx, &quarryv1.EnrollRequest{Token: token, CsrDer: csr, Hostname: hostname})
	if err != nil {
		return fmt.Errorf("enroll %s: %w", hostname, err)
	}
	r.id = resp.RigId
	r.cert = tls.Certificate{Certificate: [][]byte{resp.CertificateDer}, PrivateKey: key}
	return nil
}

// connect opens the rig's own mutual-TLS connection and stream.
func (r *rig) connect(ctx context.Context, addr string, base *tls.Config) error {
	cfg := base.Clone()
	cfg.Certificates = []tls.Certificate{r.cert}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err
	}
	r.conn = conn
	s, err := quarryv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		return fmt.Errorf("rig %s: %w", r.id, err)
	}
	if err := s.Send(&quarryv1.ConnectRequest{Msg: &quarryv1.ConnectRequest_Hello{Hello: &quarryv1.Hello{RigId: r.id, Hostname: r.id}}}); err != nil {
		return err
	}
	m, err := s.Recv()
	if err != nil {
		return fmt.Errorf("rig %s: %w", r.id, err)
	}
	r.seq = m.GetWelcome().GetResumeFromSeq() - 1
	r.acked.Store(r.seq)
	r.stream = s
	return nil
}

func (r *rig) send(ctx context.Context, interval time.Duration, tmpl *quarryv1.Report, sent *atomic.Uint64) {
	if interval > 0 {
		// Spread rigs over the interval like a real fleet.
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(rand.Int64N(int64(interval)))):
		}
	}
	for ctx.Err() == nil {
		r.seq++
		rep := &quarryv1.Report{Seq: r.seq, TimeUnixNano: time.Now().UnixNano(), Host: tmpl.Host, Gpus: tmpl.Gpus, Miners: tmpl.Miners}
		r.mu.Lock()
		r.sentAt[r.seq] = time.Now()
		r.mu.Unlock()
		if err := r.stream.Send(&quarryv1.ConnectRequest{Msg: &quarryv1.ConnectRequest_Report{Report: rep}}); err != nil {
			return
		}
		sent.Add(1)
		if interval == 0 {
			// Closed loop: wait for this report's ack before the next.
			for r.acked.Load() < r.seq {
				select {
				case <-ctx.Done():
					return
				case <-r.ackCh:
				}
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (r *rig) recv(lat *latencies) {
	for {
		m, err := r.stream.Recv()
		if err != nil {
			return
		}
		a := m.GetAck()
		if a == nil {
			continue
		}
		now := time.Now()
		r.mu.Lock()
		for seq := r.acked.Load() + 1; seq <= a.UpToSeq; seq++ {
			if t, ok := r.sentAt[seq]; ok {
				lat.add(now, now.Sub(t))
				delete(r.sentAt, seq)
			}
		}
		r.mu.Unlock()
		r.acked.Store(a.UpToSeq)
		select {
		case r.ackCh <- struct{}{}:
		default:
		}
	}
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
	at []time.Time
}

func (l *latencies) add(at time.Time, d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.at = append(l.at, at)
	l.mu.Unlock()
}

func (l *latencies) n() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

func (l *latencies) countBefore(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.at {
		if !a.After(t) {
			n++
		}
	}
	return n
}

func (l *latencies) quantiles() (p50, p99, mx time.Duration) {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	if len(d) == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return q(0.50), q(0.99), d[len(d)-1]
}

func sampleReport(gpus int) *quarryv1.Report {
	f := func(v float64) *float64 { return &v }
	u := func(v uint32) *uint32 { return &v }
	r := &quarryv1.Report{Host: &quarryv1.HostStats{CpuPercent: 7.5, MemoryUsedBytes: 2 << 30, MemoryTotalBytes: 8 << 30, Load1: 0.4, Load5: 0.5, Load15: 0.5, UptimeSeconds: 86400}}
	for i := range gpus {
		r.Gpus = append(r.Gpus, &quarryv1.GPUStats{Index: uint32(i), Vendor: "nvidia", Name: "NVIDIA GeForce RTX 3070", BusId: fmt.Sprintf("0000:%02x:00.0", i+1),
			TemperatureC: f(61), FanPercent: []float64{55}, PowerW: f(118), PowerLimitW: f(120), SmClockMhz: u(1500), MemoryClockMhz: u(7000), UtilizationPercent: f(100)})
	}
	r.Miners = []*quarryv1.MinerStats{{Miner: "trex", Algorithm: "etchash", Coin: "etc", Hashrate: 61e6 * float64(gpus), Accepted: 1200, State: "running"}}
	return r
}
