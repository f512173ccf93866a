package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// A join token reads "qjt1.<id>.<secret>.sha256:<ca hash>". The id finds the
// stored record, the secret proves possession (only its hash is stored), and
// the CA hash lets a new agent trust the controller before it has the CA.
const tokenPrefix = "qjt1"

// Token is a parsed join token.
type Token struct {
	ID     string
	Secret string
	CAHash string
}

// ErrMalformedToken is returned for anything that is not a join token.
var ErrMalformedToken = errors.New("malformed join token (expected qjt1.<id>.<secret>.sha256:<hash>)")

// NewToken creates a token pinned to the CA hash.
func NewToken(caHash string) (Token, error) {
	id, err := randomHex(6)
	if err != nil {
		return Token{}, err
	}
	secret, err := randomHex(16)
	if err != nil {
		return Token{}, err
	}
	return Token{ID: id, Secret: secret, CAHash: caHash}, nil
}

// String encodes the token.
func (t Token) String() string {
	return tokenPrefix + "." + t.ID + "." + t.Secret + "." + t.CAHash
}

// SecretHash is what the controller stores instead of the secret.
func (t Token) SecretHash() string {
	sum := sha256.Sum256([]byte(t.Secret))
	return hex.EncodeToString(sum[:])
}

// Matches reports in constant time whether the token's secret hashes to h.
func (t Token) Matches(h string) bool {
	return subtle.ConstantTimeCompare([]byte(t.SecretHash()), []byte(h)) == 1
}

// ParseToken parses a join token string.
func ParseToken(s string) (Token, error) {
	parts := strings.SplitN(strings.TrimSpace(s), ".", 4)
	if len(parts) != 4 || parts[0] != tokenPrefix {
		return Token{}, ErrMalformedToken
	}
	t := Token{ID: parts[1], Secret: parts[2], CAHash: parts[3]}
	if !isHex(t.ID, 12) || !isHex(t.Secret, 32) || !strings.HasPrefix(t.CAHash, "sha256:") || !isHex(strings.TrimPrefix(t.CAHash, "sha256:"), 64) {
		return Token{}, ErrMalformedToken
	}
	return t, nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// RandomHex returns n random bytes hex-encoded, for ids and bearer tokens.
func RandomHex(n int) (string, error) { return randomHex(n) }
