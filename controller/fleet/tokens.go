package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quarryfleet/quarry/pkg/pki"
)

// Join-token refusals. Each says plainly what is wrong so an operator
// installing a rig knows what to do next.
var (
	ErrTokenUnknown = errors.New("join token is unknown (create one with 'quarryctl token create')")
	ErrTokenExpired = errors.New("join token has expired (create a new one with 'quarryctl token create')")
	ErrTokenUsedUp  = errors.New("join token has already been used up (create a new one with 'quarryctl token create')")
	ErrTokenCA      = errors.New("join token was made for a different controller CA")
)

type tokenRecord struct {
	SecretHash string    `json:"secret_hash"`
	Expires    time.Time `json:"expires"`
	UsesLeft   uint32    `json:"uses_left"`
	RigName    string    `json:"rig_name,omitempty"`
	CreatedBy  string    `json:"created_by,omitempty"`
}

// CreateToken mints a join token pinned to caHash.
func (f *Fleet) CreateToken(caHash string, ttl time.Duration, uses uint32, rigName, who string) (string, time.Time, error) {
	if ttl <= 0 {
		return "", time.Time{}, fmt.Errorf("token ttl must be positive, got %s", ttl)
	}
	if uses == 0 {
		uses = 1
	}
	t, err := pki.NewToken(caHash)
	if err != nil {
		return "", time.Time{}, err
	}
	exp := f.opts.Now().Add(ttl)
	rec := tokenRecord{SecretHash: t.SecretHash(), Expires: exp, UsesLeft: uses, RigName: rigName, CreatedBy: who}
	b, _ := json.Marshal(rec)
	if err := f.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketTokens)).Put([]byte(t.ID), b)
	}); err != nil {
		return "", time.Time{}, fmt.Errorf("store token: %w", err)
	}
	return t.String(), exp, nil
}

// TokenUsable reports whether a token would be accepted now, without using
// it; the controller checks this before rewriting its local-agent token.
func (f *Fleet) TokenUsable(tokenStr string) bool {
	t, err := pki.ParseToken(tokenStr)
	if err != nil {
		return false
	}
	ok := false
	_ = f.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketTokens)).Get([]byte(t.ID))
		var rec tokenRecord
		if v == nil || json.Unmarshal(v, &rec) != nil {
			return nil
		}
		ok = t.Matches(rec.SecretHash) && rec.UsesLeft > 0 && f.opts.Now().Before(rec.Expires)
		return nil
	})
	return ok
}

// Redeem uses one use of a join token and registers a new rig for it, all
// in one transaction so a token can never be used more often than allowed.
func (f *Fleet) Redeem(tokenStr, caHash, hostname string) (rigID, rigName string, err error) {
	t, err := pki.ParseToken(tokenStr)
	if err != nil {
		return "", "", err
	}
	if t.CAHash != caHash {
		return "", "", ErrTokenCA
	}
	suffix, err := pki.RandomHex(6)
	if err != nil {
		return "", "", err
	}
	rigID = "rig-" + suffix
	err = f.db.Update(func(tx *bolt.Tx) error {
		tb := tx.Bucket([]byte(bucketTokens))
		v := tb.Get([]byte(t.ID))
		if v == nil {
			return ErrTokenUnknown
		}
		var rec tokenRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("token record: %w", err)
		}
		if !t.Matches(rec.SecretHash) {
			return ErrTokenUnknown
		}
		if !f.opts.Now().Before(rec.Expires) {
			return ErrTokenExpired
		}
		if rec.UsesLeft == 0 {
			return ErrTokenUsedUp
		}
		rec.UsesLeft--
		b, _ := json.Marshal(rec)
		if err := tb.Put([]byte(t.ID), b); err != nil {
			return err
		}
		rigName = rec.RigName
		if rigName == "" {
			rigName = hostname
		}
		if rigName == "" {
			rigName = rigID
		}
		return nil
	})
	if err != nil {
		return "", "", err
	}
	if rigName, err = f.registerUnique(rigID, rigName, hostname); err != nil {
		return "", "", err
	}
	return rigID, rigName, nil
}

// registerUnique registers a rig under name or, when that is taken, the
// first free of name-2, name-3, ..., so commands by name always reach one
// rig.
func (f *Fleet) registerUnique(id, name, hostname string) (string, error) {
	// Holding regMu across the check and the write keeps two rigs
	// enrolling at once from picking the same free name.
	f.regMu.Lock()
	defer f.regMu.Unlock()
	f.mu.Lock()
	taken := make(map[string]bool, len(f.rigs))
	for _, r := range f.rigs {
		taken[r.Name] = true
	}
	f.mu.Unlock()
	unique := name
	for i := 2; taken[unique]; i++ {
		unique = fmt.Sprintf("%s-%d", name, i)
	}
	return unique, f.RegisterRig(id, unique, hostname)
}

// Roles, weakest first. A role may do everything the roles before it may.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// RoleRank orders roles; unknown roles rank below viewer.
func RoleRank(role string) int {
	switch role {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

type adminRecord struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

const adminTokenPrefix = "qat1."

func bearerKey(tok string) []byte {
	sum := sha256.Sum256([]byte(tok))
	return []byte(hex.EncodeToString(sum[:]))
}

// CreateAdminToken mints a bearer credential for the admin API. Only its
// hash is stored.
func (f *Fleet) CreateAdminToken(name, role string) (string, error) {
	if RoleRank(role) == 0 {
		return "", fmt.Errorf("role %q is not one of viewer, operator, admin", role)
	}
	s, err := pki.RandomHex(24)
	if err != nil {
		return "", err
	}
	tok := adminTokenPrefix + s
	b, _ := json.Marshal(adminRecord{Name: name, Role: role})
	if err := f.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketAdmins)).Put(bearerKey(tok), b)
	}); err != nil {
		return "", fmt.Errorf("store admin token: %w", err)
	}
	return tok, nil
}

// LookupAdminToken returns who a bearer token belongs to.
func (f *Fleet) LookupAdminToken(tok string) (name, role string, ok bool) {
	if !strings.HasPrefix(tok, adminTokenPrefix) {
		return "", "", false
	}
	_ = f.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketAdmins)).Get(bearerKey(tok))
		var rec adminRecord
		if v != nil && json.Unmarshal(v, &rec) == nil {
			name, role, ok = rec.Name, rec.Role, true
		}
		return nil
	})
	return name, role, ok
}
