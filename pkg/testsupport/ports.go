package testsupport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Ports hands out local ports for processes a test starts and binds only
// later. Each port is free for TCP and UDP (gossip uses both), is never
// handed out twice by one Ports, and lies below the kernel's ephemeral
// range: a port taken from that range with bind(":0") and released can be
// given to any outgoing connection, or to the next bind(":0"), before the
// process meant to listen on it starts.
type Ports struct {
	mu     sync.Mutex
	handed map[int]bool
	lo, hi int
}

// NewPorts picks from the 12,000 ports below the ephemeral range.
func NewPorts() *Ports {
	ephemeralLow := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 13000 {
				ephemeralLow = n
			}
		}
	}
	return &Ports{handed: map[int]bool{}, lo: ephemeralLow - 12000, hi: ephemeralLow}
}

// Addr is "ip:port" with a port free on ip for TCP and UDP.
func (p *Ports) Addr(t testing.TB, ip string) string {
	t.Helper()
	return net.JoinHostPort(ip, p.Port(t, ip))
}

// Port is a port free on ip for TCP and UDP, as a number.
func (p *Ports) Port(t testing.TB, ip string) string {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for range 500 {
		n := p.lo + rand.IntN(p.hi-p.lo)
		if p.handed[n] {
			continue
		}
		port := strconv.Itoa(n)
		l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		p.handed[n] = true
		return port
	}
	t.Fatalf("no free port on %s between %d and %d", ip, p.lo, p.hi)
	return ""
}
