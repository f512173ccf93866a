// Package faultproxy is a reverse proxy for tests that sits between a
// Stripe client and stripe-mock on 127.0.0.1 and injects the faults a real
// network and a real Stripe produce: dropped connections (before or after
// the upstream saw the request), delays, and 500/409/429 answers. It logs
// every request with its Idempotency-Key and meter event identifier so a
// test can prove what reached the upstream.
package faultproxy

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Fault is what the proxy does with one request.
type Fault int

// Faults.
const (
	Pass Fault = iota
	// Drop closes the connection before the upstream sees the request.
	Drop
	// DropAfter forwards the request, then closes the connection instead of
	// answering: the upstream acted but the client sees a network error.
	DropAfter
	// Delay waits Config.Delay before forwarding.
	Delay
	Status500
	Status409
	Status429
	// Status400 answers like Stripe's parameter validation.
	Status400
)

func (f Fault) String() string {
	return [...]string{"pass", "drop", "drop-after", "delay", "500", "409", "429", "400"}[f]
}

// Entry is one logged request.
type Entry struct {
	Time           time.Time
	Method         string
	Path           string
	IdempotencyKey string
	Identifier     string // meter event identifier, if any
	// Value is the meter event's payload value, if any, so a test can add
	// up what reached Stripe.
	Value string
	Fault Fault
	// Status is what the client received; 0 when the connection was dropped.
	Status int
	// Forwarded reports that the upstream received the request.
	Forwarded bool
}

// Config sets random faults; a cue (Next) always wins over randomness.
type Config struct {
	// Rates of each fault in [0,1], e.g. {Drop: 0.1, Status500: 0.1}.
	Rates map[Fault]float64
	Seed  uint64
	Delay time.Duration
}

// Proxy is a fault-injecting reverse proxy. Create it with Start.
type Proxy struct {
	srv   *http.Server
	ln    net.Listener
	rp    *httputil.ReverseProxy
	delay time.Duration

	mu    sync.Mutex
	rates map[Fault]float64
	rnd   *rand.Rand
	cues  []Fault
	log   []Entry
	wg    sync.WaitGroup
}

// Start listens on 127.0.0.1 on a free port and proxies to upstream.
func Start(upstream string, cfg Config) (*Proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: upstream %q: %w", upstream, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{ln: ln, rp: httputil.NewSingleHostReverseProxy(u), delay: cfg.Delay,
		rnd: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	p.SetRates(cfg.Rates)
	if p.delay == 0 {
		p.delay = 50 * time.Millisecond
	}
	p.rp.ErrorLog = nil
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = p.srv.Serve(ln)
	}()
	return p, nil
}

// URL is the proxy's base URL.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Close stops the proxy and waits for it.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	p.wg.Wait()
	return err
}

// Next queues faults for the next requests, in order.
func (p *Proxy) Next(f ...Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cues = append(p.cues, f...)
}

// SetRates replaces the random fault rates; nil turns randomness off.
func (p *Proxy) SetRates(r map[Fault]float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rates = map[Fault]float64{}
	for k, v := range r {
		p.rates[k] = v
	}
}

// Log returns a copy of every request seen so far, in the order they
// arrived. Entries are recorded when a request ends, and a request whose
// connection is dropped after forwarding can end after the next one began.
func (p *Proxy) Log() []Entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	log := append([]Entry(nil), p.log...)
	slices.SortStableFunc(log, func(a, b Entry) int { return a.Time.Compare(b.Time) })
	return log
}

func (p *Proxy) pick() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.cues) > 0 {
		f := p.cues[0]
		p.cues = p.cues[1:]
		return f
	}
	x := p.rnd.Float64()
	for _, f := range []Fault{Drop, DropAfter, Delay, Status500, Status409, Status429} {
		if x < p.rates[f] {
			return f
		}
		x -= p.rates[f]
	}
	return Pass
}

func (p *Proxy) record(e Entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, e)
}

// statusRecorder remembers the status the reverse proxy wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(c int) { s.status = c; s.ResponseWriter.WriteHeader(c) }

// ServeHTTP applies the next fault to one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	e := Entry{Time: time.Now(), Method: r.Method, Path: r.URL.Path, IdempotencyKey: r.Header.Get("Idempotency-Key")}
	if form, err := url.ParseQuery(string(body)); err == nil {
		e.Identifier = form.Get("identifier")
		e.Value = form.Get("payload[value]")
	}
	e.Fault = p.pick()
	defer func() { p.record(e) }()
	switch e.Fault {
	case Drop:
		hijackClose(w)
		return
	case DropAfter:
		rec := &discardWriter{header: http.Header{}}
		p.rp.ServeHTTP(rec, r)
		e.Forwarded = true
		hijackClose(w)
		return
	case Status500, Status409, Status429, Status400:
		code, typ := map[Fault]int{Status500: 500, Status409: 409, Status429: 429, Status400: 400}[e.Fault], "api_error"
		switch e.Fault {
		case Status409:
			typ = "idempotency_error"
		case Status429:
			typ = "rate_limit_error"
		case Status400:
			typ = "invalid_request_error"
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error":{"type":%q,"message":"injected by faultproxy"}}`, typ)
		e.Status = code
		return
	case Delay:
		select {
		case <-time.After(p.delay):
		case <-r.Context().Done():
			return
		}
	}
	sr := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	p.rp.ServeHTTP(sr, r)
	e.Forwarded, e.Status = true, sr.status
}

func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			_ = c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

type discardWriter struct{ header http.Header }

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
