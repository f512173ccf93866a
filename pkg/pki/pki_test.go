package pki

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCAIsCreatedOnceWithPrivateKey(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, err := LoadOrCreateCA(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v, want 0600", st.Mode().Perm())
	}
	again, err := LoadOrCreateCA(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if again.Hash() != ca.Hash() {
		t.Fatal("second start made a new CA")
	}
}

func TestSignRequestIgnoresClaimedSubject(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, csr, err := NewKeyAndRequest("rig-someone-else")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	der, err := ca.SignRequest(csr, "rig-abc", OURig, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	id, err := IdentityOf(c)
	if err != nil || id.Name != "rig-abc" || id.Unit != OURig {
		t.Fatalf("identity %+v %v", id, err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	// Renewal at two thirds of the validity must lie in the future even
	// for short lifetimes.
	life := c.NotAfter.Sub(c.NotBefore)
	if renew := c.NotBefore.Add(life * 2 / 3); !renew.After(now) {
		t.Fatalf("renewal point %s is not after issue time %s", renew, now)
	}
	short, _ := ca.SignRequest(csr, "rig-abc", OURig, 3*time.Second, now)
	sc, _ := x509.ParseCertificate(short)
	if renew := sc.NotBefore.Add(sc.NotAfter.Sub(sc.NotBefore) * 2 / 3); !renew.After(now) {
		t.Fatalf("3s certificate: renewal point already past")
	}
}

func TestSignRequestRejectsBadRequests(t *testing.T) {
	ca, _ := LoadOrCreateCA(t.TempDir(), time.Now())
	_, csr, _ := NewKeyAndRequest("x")
	tampered := append([]byte(nil), csr...)
	tampered[len(tampered)-5] ^= 0xff
	for name, in := range map[string][]byte{"empty": nil, "garbage": []byte("hello"), "truncated": csr[:len(csr)/2], "bad signature": tampered} {
		if _, err := ca.SignRequest(in, "rig", OURig, time.Hour, time.Now()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTokenRoundTrip(t *testing.T) {
	tok, err := NewToken("sha256:" + strings.Repeat("a", 64))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseToken(tok.String())
	if err != nil || got != tok {
		t.Fatalf("parse %v %v", got, err)
	}
	if !got.Matches(tok.SecretHash()) {
		t.Fatal("secret does not match its own hash")
	}
	other, _ := NewToken(tok.CAHash)
	if other.Matches(tok.SecretHash()) {
		t.Fatal("different secret matched")
	}
	for _, bad := range []string{"", "qjt1", "qjt1.a.b.c", "qjt2." + tok.String()[5:], tok.String() + "x", strings.Replace(tok.String(), "sha256:", "md5:", 1)} {
		if _, err := ParseToken(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	tok, _ := NewToken("sha256:" + strings.Repeat("b", 64))
	f.Add(tok.String())
	f.Add("qjt1...")
	f.Fuzz(func(t *testing.T, s string) {
		tk, err := ParseToken(s)
		if err == nil && tk.String() != strings.TrimSpace(s) {
			t.Fatalf("round trip %q -> %q", s, tk.String())
		}
	})
}
