// Package notifytest is a small SMTP server for tests: it speaks enough
// of the protocol (EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA) for
// net/smtp to deliver a message, and keeps what it received.
package notifytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mail is one message the server accepted.
type Mail struct {
	From string
	To   []string
	Data string
	TLS  bool
	User string
}

// SMTPServer listens on a loopback port.
type SMTPServer struct {
	Addr string
	// TLS, when set before Start, makes the server offer STARTTLS.
	TLS *tls.Config
	// Password, when set, makes the server require AUTH PLAIN with it.
	Password string

	mu    sync.Mutex
	mails []Mail
	fail  int // answer DATA with 451 this many more times
	lis   net.Listener
	wg    sync.WaitGroup
}

// NewSMTPServer starts a server; it stops when the test ends.
func NewSMTPServer(t testing.TB, cfg *tls.Config, password string) *SMTPServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &SMTPServer{Addr: lis.Addr().String(), TLS: cfg, Password: password, lis: lis}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Close stops listening and waits for open sessions.
func (s *SMTPServer) Close() {
	s.lis.Close()
	s.wg.Wait()
}

// FailNext makes the next n deliveries fail with a temporary error.
func (s *SMTPServer) FailNext(n int) {
	s.mu.Lock()
	s.fail = n
	s.mu.Unlock()
}

// Mails is what the server accepted so far.
func (s *SMTPServer) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

func (s *SMTPServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.lis.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.session(c)
		}()
	}
}

func (s *SMTPServer) session(c net.Conn) {
	tp := textproto.NewConn(c)
	reply := func(line string) bool { return tp.PrintfLine("%s", line) == nil }
	if !reply("220 notifytest ESMTP") {
		return
	}
	var m Mail
	isTLS, authed := false, s.Password == ""
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			ext := []string{"250-notifytest", "250-8BITMIME"}
			if s.TLS != nil && !isTLS {
				ext = append(ext, "250-STARTTLS")
			}
			if s.Password != "" {
				ext = append(ext, "250-AUTH PLAIN")
			}
			ext = append(ext, "250 SIZE 1048576")
			for _, l := range ext {
				reply(l)
			}
		case "STARTTLS":
			if s.TLS == nil || isTLS {
				reply("502 not offered")
				continue
			}
			reply("220 go ahead")
			tc := tls.Server(c, s.TLS)
			if tc.Handshake() != nil {
				return
			}
			c, isTLS = tc, true
			tp = textproto.NewConn(tc)
			reply = func(line string) bool { return tp.PrintfLine("%s", line) == nil }
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			if !strings.EqualFold(mech, "PLAIN") {
				reply("504 only PLAIN")
				continue
			}
			b, err := base64.StdEncoding.DecodeString(resp)
			parts := strings.Split(string(b), "\x00")
			if err != nil || len(parts) != 3 || parts[2] != s.Password {
				reply("535 authentication failed")
				continue
			}
			authed, m.User = true, parts[1]
			reply("235 ok")
		case "MAIL":
			if !authed {
				reply("530 authentication required")
				continue
			}
			m = Mail{From: trimAddr(arg), TLS: isTLS, User: m.User}
			reply("250 ok")
		case "RCPT":
			m.To = append(m.To, trimAddr(arg))
			reply("250 ok")
		case "DATA":
			reply("354 end with .")
			b, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			m.Data = string(b)
			s.mu.Lock()
			failing := s.fail > 0
			if failing {
				s.fail--
			} else {
				s.mails = append(s.mails, m)
			}
			s.mu.Unlock()
			if failing {
				reply("451 try again later")
			} else {
				reply("250 queued")
			}
		case "RSET", "NOOP":
			reply("250 ok")
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("500 unknown command")
		}
	}
}

func trimAddr(arg string) string {
	_, a, _ := strings.Cut(arg, ":")
	a = strings.TrimSpace(a)
	if i := strings.IndexByte(a, ' '); i >= 0 {
		a = a[:i]
	}
	return strings.Trim(a, "<>")
}

// SelfSigned returns a server TLS configuration for 127.0.0.1 and
// localhost and the pool that trusts it.
func SelfSigned(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "notifytest"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, pool
}
