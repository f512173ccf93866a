package gossip

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// ParseAdvertise splits an advertise address, "IP" or "IP:port"; empty
// means "the bound address" and is allowed.
func ParseAdvertise(s string) (string, int, error) {
	if s == "" {
		return "", 0, nil
	}
	if ip := net.ParseIP(s); ip != nil {
		return s, 0, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("%q is not IP or IP:port", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", s)
	}
	return host, p, nil
}

// Settings are the gossip settings agents and controllers both expose,
// checked the same way in both; errors name them under "gossip.".
type Settings struct {
	BindAddr    string // empty: all interfaces
	BindPort    int
	Advertise   string
	Join        []string
	Profile     string
	EventMaxAge time.Duration
}

// Validate names every bad setting.
func (s Settings) Validate() error {
	var errs []error
	if s.BindAddr != "" && net.ParseIP(s.BindAddr) == nil {
		errs = append(errs, fmt.Errorf("gossip.bind_addr: %q is not an IP address", s.BindAddr))
	}
	if s.BindPort < 0 || s.BindPort > 65535 {
		errs = append(errs, fmt.Errorf("gossip.bind_port: %d is out of range", s.BindPort))
	}
	if _, _, err := ParseAdvertise(s.Advertise); err != nil {
		errs = append(errs, fmt.Errorf("gossip.advertise: %w", err))
	}
	for _, j := range s.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, fmt.Errorf("gossip.join: %q is not host:port", j))
		}
	}
	switch Profile(s.Profile) {
	case ProfileLAN, ProfileTuned:
	default:
		errs = append(errs, fmt.Errorf("gossip.profile: %q is not lan or tuned", s.Profile))
	}
	if s.EventMaxAge < time.Second {
		errs = append(errs, fmt.Errorf("gossip.event_max_age: %s is below the 1s minimum", s.EventMaxAge))
	}
	return errors.Join(errs...)
}

// CheckPortFree binds the gossip port's TCP and UDP sockets and lets go of
// them, so a taken port is reported plainly before serf tries it (a serf
// that fails to bind also leaves one of its goroutines behind). Port 0 or
// below (any free port) always passes.
func CheckPortFree(ip string, port int) error {
	if port <= 0 {
		return nil
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("gossip port %s is not available: %w", addr, err)
	}
	l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("gossip port %s is not available: %w", addr, err)
	}
	u.Close()
	return nil
}
