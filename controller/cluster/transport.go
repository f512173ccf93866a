package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quarryfleet/quarry/pkg/pki"
)

// tlsStream is raft's stream layer over mutual TLS: a member accepts and
// dials only peers holding a controller certificate from the group's CA,
// so neither a rig's certificate nor a gossip member's claim can join
// the log.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	conf      *tls.Config
	// local is the address member connections leave from: the raft
	// address's host when it names one, so a multi-homed machine talks to
	// the group from the address the group knows it by.
	local net.Addr

	// raft's transport closes its listener but leaves pooled and accepted
	// connections to the far end; the stream closes them itself so a
	// stopped member leaves nothing reading.
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

type trackedConn struct {
	net.Conn
	s *tlsStream
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

func (s *tlsStream) track(c net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	t := &trackedConn{Conn: c, s: s}
	s.conns[t] = struct{}{}
	return t, nil
}

func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return s.track(c)
}

func (s *tlsStream) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
	return s.Listener.Close()
}

var _ raft.StreamLayer = (*tlsStream)(nil)

// peerTLS is the TLS configuration both ends of a member connection use.
// Host names are not checked: members are found by address, and what
// matters is that the far end holds a controller certificate of this CA,
// checked in verifyPeer.
func peerTLS(ca *pki.CA, cert tls.Certificate) *tls.Config {
	pool := ca.Pool()
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		ClientAuth:         tls.RequireAnyClientCert,
		InsecureSkipVerify: true, // replaced by verifyPeer, which checks the chain
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := verifyPeer(pool, raw)
			return err
		},
	}
}

// verifyPeer checks that raw is a chain to the group's CA ending in a
// controller certificate and returns the member's node id.
func verifyPeer(pool *x509.CertPool, raw [][]byte) (string, error) {
	if len(raw) == 0 {
		return "", errors.New("member presented no certificate")
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return "", fmt.Errorf("member certificate: %w", err)
	}
	inter := x509.NewCertPool()
	for _, r := range raw[1:] {
		if c, err := x509.ParseCertificate(r); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return "", fmt.Errorf("member certificate is not from this group's CA: %w", err)
	}
	id, err := pki.IdentityOf(leaf)
	if err != nil {
		return "", err
	}
	if id.Unit != pki.OUController {
		return "", fmt.Errorf("certificate of %q is a %s certificate, not a controller's", id.Name, id.Unit)
	}
	return id.Name, nil
}

func newTLSStream(bind string, advertise net.Addr, conf *tls.Config) (*tlsStream, error) {
	l, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", bind, err)
	}
	if advertise == nil {
		advertise = l.Addr()
	}
	s := &tlsStream{Listener: tls.NewListener(l, conf), advertise: advertise, conf: conf, conns: map[*trackedConn]struct{}{}}
	if host, _, err := net.SplitHostPort(bind); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			s.local = &net.TCPAddr{IP: ip}
		}
	}
	return s, nil
}

func (s *tlsStream) Addr() net.Addr { return s.advertise }

func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, LocalAddr: s.local}
	c, err := tls.DialWithDialer(d, "tcp", string(address), s.conf)
	if err != nil {
		return nil, fmt.Errorf("dial member %s: %w", address, err)
	}
	return s.track(c)
}

// probePeer dials addr and returns the node id its certificate names, so a
// member found through gossip is added to the group only under the id its
// certificate proves.
func probePeer(conf *tls.Config, pool *x509.CertPool, addr string, timeout time.Duration) (string, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		return "", err
	}
	defer c.Close()
	st := c.ConnectionState()
	raw := make([][]byte, 0, len(st.PeerCertificates))
	for _, pc := range st.PeerCertificates {
		raw = append(raw, pc.Raw)
	}
	return verifyPeer(pool, raw)
}
