// Package pki is the controller's own certificate authority: it creates the
// CA on first start, issues the server certificate, signs rigs' certificate
// requests, and mints and checks join tokens that pin the CA's hash.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Organisational units mark what a certificate is for, so a rig certificate
// can never be used as an admin credential and the other way round.
const (
	OURig   = "rig"
	OUAdmin = "admin"
)

// CA is a loaded certificate authority.
type CA struct {
	Cert    *x509.Certificate
	CertDER []byte
	Key     crypto.Signer
}

// Files in the data dir.
const (
	caCertFile = "ca.crt"
	caKeyFile  = "ca.key"
)

// LoadOrCreateCA loads the CA from dir, creating a new one (key mode 0600)
// on first start.
func LoadOrCreateCA(dir string, now time.Time) (*CA, error) {
	certPath := filepath.Join(dir, caCertFile)
	keyPath := filepath.Join(dir, caKeyFile)
	if _, err := os.Stat(certPath); err == nil {
		return LoadCA(certPath, keyPath)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA dir: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "Quarry fleet CA", Organization: []string{"Quarry"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	if err := WriteFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return LoadCA(certPath, keyPath)
}

// LoadCA reads a CA certificate and key written by LoadOrCreateCA.
func LoadCA(certPath, keyPath string) (*CA, error) {
	cert, err := ReadCertFile(certPath)
	if err != nil {
		return nil, err
	}
	key, err := ReadKeyFile(keyPath)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertDER: cert.Raw, Key: key}, nil
}

// Hash is the pin a join token carries: sha256 of the CA's public key info,
// the same scheme kubeadm's discovery hash uses.
func (ca *CA) Hash() string { return CertHash(ca.Cert) }

// CertHash returns "sha256:<hex>" of the certificate's SubjectPublicKeyInfo.
func CertHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Pool returns a cert pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// IssueServer issues a server certificate for the given DNS names and IPs.
func (ca *CA) IssueServer(hosts []string, ttl time.Duration, now time.Time) (certDER []byte, key crypto.Signer, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "quarry-controller", Organization: []string{"Quarry"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, k.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("create server certificate: %w", err)
	}
	return der, k, nil
}

// SignRequest checks a certificate request's self-signature and issues a
// client certificate for subject cn in unit ou. Whatever subject the request
// claims is ignored: identity comes from the controller, never the client.
func (ca *CA) SignRequest(csrDER []byte, cn, ou string, ttl time.Duration, now time.Time) ([]byte, error) {
	csr, err := parseRequest(csrDER)
	if err != nil {
		return nil, err
	}
	// Backdate a little for clock skew, but never so much that the
	// renewal point (two thirds of the validity) is already past.
	skew := min(5*time.Minute, ttl/4)
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: cn, OrganizationalUnit: []string{ou}, Organization: []string{"Quarry"}},
		NotBefore:    now.Add(-skew),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return der, nil
}

// CheckRequest verifies a certificate request: it parses, its signature
// proves possession of its key, and the key is of a kind this CA signs.
// Enrolment calls it before spending a join token.
func CheckRequest(csrDER []byte) error {
	_, err := parseRequest(csrDER)
	return err
}

func parseRequest(csrDER []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("parse certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature does not verify: %w", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("certificate request key: RSA keys must be at least 2048 bits, got %d", k.N.BitLen())
		}
	default:
		return nil, fmt.Errorf("certificate request key: %T is not supported", k)
	}
	return csr, nil
}

// Identity is who a verified client certificate says its holder is.
type Identity struct {
	Name string // rig id, or admin name
	Unit string // OURig or OUAdmin
	Role string // for admin certificates: viewer, operator or admin
}

// IdentityOf reads the identity from a verified certificate. Admin
// certificates carry their role as a second organisational unit.
func IdentityOf(c *x509.Certificate) (Identity, error) {
	ous := c.Subject.OrganizationalUnit
	if len(ous) == 0 || c.Subject.CommonName == "" {
		return Identity{}, errors.New("certificate has no Quarry identity")
	}
	id := Identity{Name: c.Subject.CommonName, Unit: ous[0]}
	if id.Unit == OUAdmin && len(ous) > 1 {
		id.Role = ous[1]
	}
	return id, nil
}

// NewKeyAndRequest generates a private key and a certificate request for it.
// The key stays with the caller: only the request travels.
func NewKeyAndRequest(cn string) (crypto.Signer, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate request: %w", err)
	}
	return k, der, nil
}

// EncodeKey returns the PEM encoding of a private key.
func EncodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EncodeCert returns the PEM encoding of a DER certificate.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// ReadCertFile reads a PEM certificate.
func ReadCertFile(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ReadKeyFile reads a PEM PKCS#8 private key.
func ReadKeyFile(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return ParseKeyPEM(b)
}

// ParseKeyPEM parses a PEM PKCS#8 private key.
func ParseKeyPEM(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || !strings.HasSuffix(blk.Type, "PRIVATE KEY") {
		return nil, errors.New("no PEM private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("key cannot sign")
	}
	return s, nil
}

// WriteFileAtomic writes data to a temporary file and renames it into place
// so a crash never leaves a half-written key or certificate.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create dir for %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		// crypto/rand does not fail on Linux; a zero serial would still
		// be unique enough to fail loudly in verification rather than here.
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// OUController marks a controller's peer certificate: the identity one
// member of a controller group proves to another. The agent and admin
// services never accept it, and the group's transport accepts nothing
// else.
const OUController = "controller"

// IssuePeer issues a controller's peer certificate for node id, valid for
// both ends of a connection between members and for the given hosts.
func (ca *CA) IssuePeer(id string, hosts []string, ttl time.Duration, now time.Time) (certDER []byte, key crypto.Signer, err error) {
	if id == "" {
		return nil, nil, errors.New("peer certificate: empty node id")
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate peer key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: id, OrganizationalUnit: []string{OUController}, Organization: []string{"Quarry"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, k.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("create peer certificate: %w", err)
	}
	return der, k, nil
}
