package gossip

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
)

// TagSig carries a member's signature over its name, address and other
// tags, made with its rig certificate's key. Anyone holding the gossip key
// can join under any name; only the rig holding the certificate's key can
// produce this tag, so the controller believes a member is a rig only
// when it verifies.
const TagSig = "sig"

// Reasons a member's identity does not verify.
var (
	ErrIdentityUnsigned = errors.New("member carries no identity signature")
	ErrIdentityMismatch = errors.New("identity signature does not match the rig's certificate key")
)

// identityMessage is what TagSig signs: a domain label, then name,
// address and every other tag in key order, NUL separated.
func identityMessage(name, addr string, tags map[string]string) []byte {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		if k != TagSig {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	b := []byte("quarry-member-v1\x00" + name + "\x00" + addr + "\x00")
	for _, k := range keys {
		b = append(b, k...)
		b = append(b, '=')
		b = append(b, tags[k]...)
		b = append(b, 0)
	}
	return b
}

func signWith(s crypto.Signer, msg []byte) ([]byte, error) {
	if _, ok := s.Public().(ed25519.PublicKey); ok {
		return s.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	d := sha256.Sum256(msg)
	return s.Sign(rand.Reader, d[:], crypto.SHA256)
}

func verifyWith(pub crypto.PublicKey, msg, sig []byte) bool {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(k, msg, sig)
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(k, d[:], sig)
	case *rsa.PublicKey:
		d := sha256.Sum256(msg)
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, d[:], sig) == nil
	}
	return false
}

// signTags returns tags with TagSig set for this node's name and address.
func signTags(s crypto.Signer, name, addr string, tags map[string]string) (map[string]string, error) {
	out := cloneMap(tags)
	if out == nil {
		out = map[string]string{}
	}
	delete(out, TagSig)
	sig, err := signWith(s, identityMessage(name, addr, out))
	if err != nil {
		return nil, fmt.Errorf("gossip: sign identity: %w", err)
	}
	out[TagSig] = base64.RawStdEncoding.EncodeToString(sig)
	return out, nil
}

// VerifyMember checks that m's name, address and tags were signed with
// the private key of pub (the rig certificate's public key).
func VerifyMember(pub crypto.PublicKey, m Member) error {
	enc, ok := m.RawTags[TagSig]
	if !ok || enc == "" {
		return ErrIdentityUnsigned
	}
	sig, err := base64.RawStdEncoding.DecodeString(enc)
	if err != nil || !verifyWith(pub, identityMessage(m.Name, m.Addr.String(), m.RawTags), sig) {
		return ErrIdentityMismatch
	}
	return nil
}

// answerMessage is what an answer signature covers: the query's id, the
// answering member's name and the answer itself.
func answerMessage(id [16]byte, from string, payload []byte) []byte {
	b := append([]byte("quarry-answer-v1\x00"), id[:]...)
	b = append(b, from...)
	b = append(b, 0)
	return append(b, payload...)
}

// VerifyAnswer checks that a was signed with the private key of pub.
func VerifyAnswer(pub crypto.PublicKey, a Answer) error {
	if len(a.Signature) == 0 {
		return ErrIdentityUnsigned
	}
	if !verifyWith(pub, answerMessage(a.QueryID, a.From, a.signed), a.Signature) {
		return ErrIdentityMismatch
	}
	return nil
}
