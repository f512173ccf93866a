// Package minersim serves a miner's stats API from a recorded reply of the
// real miner, with the readings of a simulated rig substituted into the
// recorded structure: the hash rate of each card, its temperature, power
// and fan, the share counters, uptime, algorithm and pool. The fleet
// simulator runs one per simulated rig so that the rig reads its miner
// through the same minerapi adapter, over the same HTTP or TCP protocol, as
// the agent does on a real rig. Only the simulator imports it; the agent
// never links it.
package minersim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/quarryfleet/quarry/pkg/minerapi"
)

// Reading is what the simulated miner says now. Hash rates are in H/s.
type Reading struct {
	Algorithm string
	Pool      string
	Uptime    time.Duration
	Accepted  uint64
	GPUs      []GPU
}

// GPU is one card's share of a reading.
type GPU struct {
	Name         string
	BusID        string // long form, "0000:01:00.0"
	Hashrate     float64
	TemperatureC float64
	PowerW       float64
	FanPercent   float64
}

// Total is the sum of the cards' hash rates, what the miner reports as its
// total.
func (r Reading) Total() float64 {
	var t float64
	for _, g := range r.GPUs {
		t += g.Hashrate
	}
	return t
}

// Supported reports whether the named miner (a minerapi adapter name) has a
// recorded reply this package can serve.
func Supported(miner string) bool {
	_, ok := specs[miner]
	return ok
}

// Miners lists the supported miner names, sorted.
func Miners() []string {
	out := make([]string, 0, len(specs))
	for k := range specs {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// maxRequest bounds what a client may send before the reply; a real
// request is a few hundred bytes.
const maxRequest = 8 << 10

// ioTimeout bounds one exchange so a client that stops reading cannot hold
// a connection.
const ioTimeout = 5 * time.Second

// Server is one simulated miner's stats API on a listener.
type Server struct {
	miner string
	spec  spec
	ln    net.Listener
	http  *http.Server
	wg    sync.WaitGroup

	mu      sync.Mutex
	reading Reading
}

// Listen starts serving the named miner's API on addr (use "127.0.0.1:0").
func Listen(miner, addr string) (*Server, error) {
	sp, ok := specs[miner]
	if !ok {
		return nil, fmt.Errorf("no recorded reply for miner %q (have %s)", miner, strings.Join(Miners(), ", "))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("simulated %s API: %w", miner, err)
	}
	s := &Server{miner: miner, spec: sp, ln: ln}
	s.wg.Add(1)
	if sp.tcp {
		go func() { defer s.wg.Done(); s.serveCG() }()
		return s, nil
	}
	s.http = &http.Server{Handler: http.HandlerFunc(s.handleHTTP), ReadHeaderTimeout: ioTimeout,
		WriteTimeout: ioTimeout, MaxHeaderBytes: maxRequest}
	go func() { defer s.wg.Done(); _ = s.http.Serve(ln) }()
	return s, nil
}

// Miner is the adapter name the server answers as.
func (s *Server) Miner() string { return s.miner }

// Endpoint is where the adapter finds the API.
func (s *Server) Endpoint() minerapi.Endpoint {
	a := s.ln.Addr().(*net.TCPAddr)
	return minerapi.Endpoint{Host: a.IP.String(), Port: a.Port}
}

// Set replaces what the miner reports.
func (s *Server) Set(r Reading) {
	r.GPUs = slices.Clone(r.GPUs)
	s.mu.Lock()
	s.reading = r
	s.mu.Unlock()
}

// Close stops the listener and waits for its server to end.
func (s *Server) Close() error {
	var err error
	if s.http != nil {
		err = s.http.Close()
	} else {
		err = s.ln.Close()
	}
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) current() Reading {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reading
}

func (s *Server) handleHTTP(w http.ResponseWriter, r *http.Request) {
	render, ok := s.spec.routes[r.URL.Path]
	if !ok {
		http.Error(w, `{"status":404,"error":"Not Found"}`, http.StatusNotFound)
		return
	}
	body, err := render(s.current())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (s *Server) serveCG() {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() { defer wg.Done(); s.handleCG(conn) }()
	}
}

// handleCG answers one cgminer API request, {"command":"x"} or plain
// "x|param", with the reply and a NUL, then closes, as cgminer does.
func (s *Server) handleCG(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	var buf []byte
	chunk := make([]byte, 512)
	for len(buf) < maxRequest {
		n, err := conn.Read(chunk)
		buf = append(buf, chunk[:n]...)
		t := bytes.TrimSpace(buf)
		if len(t) > 0 && (t[0] != '{' || json.Valid(t)) {
			break
		}
		if err != nil {
			return
		}
	}
	t := bytes.TrimSpace(buf)
	var cmd string
	if len(t) > 0 && t[0] == '{' {
		var req struct {
			Command string `json:"command"`
		}
		_ = json.Unmarshal(t, &req)
		cmd = req.Command
	} else {
		cmd, _, _ = strings.Cut(string(t), "|")
	}
	var body []byte
	if render, ok := s.spec.routes[cmd]; ok {
		b, err := render(s.current())
		if err == nil {
			body = b
		}
	}
	if body == nil {
		body = fmt.Appendf(nil, `{"STATUS":[{"STATUS":"E","When":%d,"Code":14,"Msg":"Invalid command","Description":"simulated"}],"id":1}`, time.Now().Unix())
	}
	_, _ = conn.Write(append(body, 0))
}
