package link

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/pkg/pki"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Files in the agent's pki dir.
const (
	keyFile    = "rig.key"
	certFile   = "rig.crt"
	caFile     = "ca.crt"
	enrollFile = "enrollment.pb"
)

// ErrNotEnrolled means the data dir holds no certificate yet.
var ErrNotEnrolled = errors.New("this rig is not enrolled: run quarry-agent with --token (from 'quarryctl token create')")

// Identity is the rig's certificate and key, swappable at run time so a
// renewed certificate is used by new connections while old streams go on.
type Identity struct {
	dir  string
	cert atomic.Pointer[tls.Certificate]
	ca   *x509.Certificate
	// Enrollment carries what the controller handed over at enrollment
	// besides the certificate: gossip keys and join addresses.
	Enrollment *quarryv1.EnrollResponse
}

// RigID is the id in the certificate: the only rig id the controller trusts.
func (id *Identity) RigID() string {
	c := id.cert.Load()
	if c == nil || c.Leaf == nil {
		return ""
	}
	return c.Leaf.Subject.CommonName
}

// Leaf is the current certificate.
func (id *Identity) Leaf() *x509.Certificate { return id.cert.Load().Leaf }

// Signer is the certificate's private key; it signs the rig's gossip
// identity and query answers.
func (id *Identity) Signer() crypto.Signer {
	s, _ := id.cert.Load().PrivateKey.(crypto.Signer)
	return s
}

// LoadIdentity reads the rig's credentials from dir.
func LoadIdentity(dir string) (*Identity, error) {
	if _, err := os.Stat(filepath.Join(dir, certFile)); errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	cert, err := pki.ReadCertFile(filepath.Join(dir, certFile))
	if err != nil {
		return nil, err
	}
	key, err := pki.ReadKeyFile(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, err
	}
	ca, err := pki.ReadCertFile(filepath.Join(dir, caFile))
	if err != nil {
		return nil, err
	}
	id := &Identity{dir: dir, ca: ca}
	id.cert.Store(&tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert})
	if b, err := os.ReadFile(filepath.Join(dir, enrollFile)); err == nil {
		er := &quarryv1.EnrollResponse{}
		if err := proto.Unmarshal(b, er); err == nil {
			id.Enrollment = er
		}
	}
	return id, nil
}

// TLSConfig is the mutual-TLS client configuration for serverName.
func (id *Identity) TLSConfig(serverName string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(id.ca)
	return &tls.Config{
		RootCAs:    pool,
		ServerName: serverName,
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return id.cert.Load(), nil
		},
	}
}

// pinnedTLS trusts a server only if its chain contains a CA whose public
// key hashes to the token's pin, the way kubeadm's discovery hash works.
func pinnedTLS(pin string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			var certs []*x509.Certificate
			for _, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs = append(certs, c)
			}
			if len(certs) == 0 {
				return errors.New("server sent no certificate")
			}
			for _, c := range certs[1:] {
				if c.IsCA && pki.CertHash(c) == pin {
					pool := x509.NewCertPool()
					pool.AddCert(c)
					_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
					return err
				}
			}
			return fmt.Errorf("controller CA does not match the join token's pin %s", pin)
		},
	}
}

// Enroll proves the join token to the controller at addr, sends a request
// for a key generated here (the key never leaves this machine), and stores
// the issued certificate in dir.
func Enroll(ctx context.Context, dir, addr, token, hostname string) (*Identity, error) {
	tok, err := pki.ParseToken(token)
	if err != nil {
		return nil, err
	}
	key, csr, err := pki.NewKeyAndRequest(hostname)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pinnedTLS(tok.CAHash))))
	if err != nil {
		return nil, fmt.Errorf("dial controller %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := quarryv1.NewAgentServiceClient(conn).Enroll(ctx, &quarryv1.EnrollRequest{Token: token, CsrDer: csr, Hostname: hostname})
	if err != nil {
		return nil, fmt.Errorf("enroll with %s: %w", addr, err)
	}
	ca, err := x509.ParseCertificate(resp.CaCertificateDer)
	if err != nil {
		return nil, fmt.Errorf("enroll: CA certificate: %w", err)
	}
	if pki.CertHash(ca) != tok.CAHash {
		return nil, fmt.Errorf("enroll: controller returned a CA that does not match the token's pin")
	}
	if err := writeIdentity(dir, key, resp.CertificateDer, ca.Raw); err != nil {
		return nil, err
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, enrollFile), b, 0o600); err != nil {
		return nil, err
	}
	return LoadIdentity(dir)
}

func writeIdentity(dir string, key crypto.Signer, certDER, caDER []byte) error {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	if !bytes.Equal(mustPublic(cert), mustPublic2(key)) {
		return errors.New("issued certificate does not match our key")
	}
	pemKey, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	// Key first: a certificate on disk without its key would be useless.
	if err := pki.WriteFileAtomic(filepath.Join(dir, keyFile), pemKey, 0o600); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, caFile), pki.EncodeCert(caDER), 0o644); err != nil {
		return err
	}
	return pki.WriteFileAtomic(filepath.Join(dir, certFile), pki.EncodeCert(certDER), 0o644)
}

func mustPublic(c *x509.Certificate) []byte {
	b, _ := x509.MarshalPKIXPublicKey(c.PublicKey)
	return b
}

func mustPublic2(k crypto.Signer) []byte {
	b, _ := x509.MarshalPKIXPublicKey(k.Public())
	return b
}

// RenewDue reports whether two thirds of the certificate's life has passed.
func (id *Identity) RenewDue(now time.Time) bool {
	l := id.Leaf()
	life := l.NotAfter.Sub(l.NotBefore)
	return now.After(l.NotBefore.Add(life * 2 / 3))
}

// Renew asks the controller for a new certificate for a new key over an
// existing mutual-TLS connection, then swaps it in. Streams already open
// keep running on their connection.
func (id *Identity) Renew(ctx context.Context, client quarryv1.AgentServiceClient) error {
	key, csr, err := pki.NewKeyAndRequest(id.RigID())
	if err != nil {
		return err
	}
	resp, err := client.Renew(ctx, &quarryv1.RenewRequest{CsrDer: csr})
	if err != nil {
		return fmt.Errorf("renew certificate: %w", err)
	}
	if err := writeIdentity(id.dir, key, resp.CertificateDer, id.ca.Raw); err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(resp.CertificateDer)
	if err != nil {
		return err
	}
	id.cert.Store(&tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert})
	return nil
}
