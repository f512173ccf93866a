package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/quarryfleet/quarry/controller/auth"
	"slices"
	"strings"
	"time"

	"github.com/quarryfleet/quarry/pkg/pki"
	"github.com/quarryfleet/quarry/pkg/store"
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
	if err := f.db.Update(func(tx *store.Tx) error {
		return tx.Bucket([]byte(bucketTokens)).Put([]byte(t.ID), b)
	}); err != nil {
		return "", time.Time{}, fmt.Errorf("store token: %w", err)
	}
	return t.String(), exp, nil
}

// JoinToken describes a join token without its secret.
type JoinToken struct {
	ID, RigName, CreatedBy string
	UsesLeft               uint32
	Expires                time.Time
}

// ErrJoinTokenUnknown is returned when revoking a join token that does
// not exist.
var ErrJoinTokenUnknown = errors.New("no join token with that id")

// maxJoinTokenList bounds one listing; tokens are short-lived, so a
// controller holding more than this has a leak the admin should see as
// a truncated list rather than a huge answer.
const maxJoinTokenList = 1000

// JoinTokens lists join tokens, newest expiry first, at most
// maxJoinTokenList of them. Records hold only the secret's hash, so
// nothing here can be used to enroll.
func (f *Fleet) JoinTokens() ([]JoinToken, error) {
	var out []JoinToken
	err := f.db.View(func(tx *store.Tx) error {
		return tx.Bucket([]byte(bucketTokens)).ForEach(func(k, v []byte) error {
			var rec tokenRecord
			if json.Unmarshal(v, &rec) != nil {
				return nil
			}
			out = append(out, JoinToken{ID: string(k), RigName: rec.RigName, CreatedBy: rec.CreatedBy, UsesLeft: rec.UsesLeft, Expires: rec.Expires})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	slices.SortFunc(out, func(a, b JoinToken) int { return b.Expires.Compare(a.Expires) })
	if len(out) > maxJoinTokenList {
		out = out[:maxJoinTokenList]
	}
	return out, nil
}

// RevokeToken deletes a join token by id, so an enrolment with it is
// refused as an unknown token from then on.
func (f *Fleet) RevokeToken(id string) error {
	return f.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(bucketTokens))
		if id == "" || b.Get([]byte(id)) == nil {
			return ErrJoinTokenUnknown
		}
		return b.Delete([]byte(id))
	})
}

// TokenUsable reports whether a token would be accepted now, without using
// it; the controller checks this before rewriting its local-agent token.
func (f *Fleet) TokenUsable(tokenStr string) bool {
	t, err := pki.ParseToken(tokenStr)
	if err != nil {
		return false
	}
	ok := false
	_ = f.db.View(func(tx *store.Tx) error {
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
	err = f.db.Update(func(tx *store.Tx) error {
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
	// Only names that start with this one can be taken by it or its
	// numbered forms; a map of every name was built under the fleet's
	// lock for each enrolment, 100,000 entries at a time.
	f.mu.Lock()
	taken := map[string]bool{}
	for _, r := range f.rigs {
		if strings.HasPrefix(r.Name, name) {
			taken[r.Name] = true
		}
	}
	f.mu.Unlock()
	unique := name
	for i := 2; taken[unique]; i++ {
		unique = fmt.Sprintf("%s-%d", name, i)
	}
	return unique, f.RegisterRig(id, unique, hostname)
}

// Roles, weakest first; the auth package defines them, so that the
// services of every domain check them the same way.
const (
	RoleViewer   = auth.RoleViewer
	RoleOperator = auth.RoleOperator
	RoleAdmin    = auth.RoleAdmin
)

// RoleRank orders roles; unknown roles rank below viewer.
func RoleRank(role string) int { return auth.RoleRank(role) }

// DefaultAdminTokenTTL is how long an admin token lives unless its
// creator says otherwise.
const DefaultAdminTokenTTL = 90 * 24 * time.Hour

// Admin-token refusals.
var (
	ErrAdminTokenInvalid = errors.New("bearer token is not valid (revoked, or never issued by this controller)")
	ErrAdminTokenExpired = errors.New("bearer token has expired (ask an admin for a new one: 'quarryctl token admin')")
	ErrAdminTokenExists  = errors.New("an admin token of that name exists (revoke it first: 'quarryctl token revoke')")
	ErrAdminTokenUnknown = errors.New("no admin token of that name")
)

// adminRecord is stored under the sha256 of the token, so the database
// never holds the secret itself.
type adminRecord struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by,omitempty"`
	Expires   time.Time `json:"expires"`
}

// AdminToken describes a bearer token without its secret.
type AdminToken struct {
	Name, Role, CreatedBy      string
	Created, LastUsed, Expires time.Time
}

const adminTokenPrefix = "qat1."

// lastUseEvery bounds how often a token's last use is written: often
// enough to tell a live credential from a forgotten one, rarely enough
// that reads do not turn into a write each.
const lastUseEvery = time.Minute

func bearerKey(tok string) []byte {
	sum := sha256.Sum256([]byte(tok))
	return []byte(hex.EncodeToString(sum[:]))
}

// IssueAdminToken mints a bearer credential for the admin API that
// expires after ttl (0: DefaultAdminTokenTTL). Only its hash is stored.
// Names are unique, so that a token can be listed and revoked by name.
func (f *Fleet) IssueAdminToken(name, role string, ttl time.Duration, createdBy string) (string, time.Time, error) {
	return f.mintAdminToken(name, role, ttl, createdBy, false)
}

// ReplaceAdminToken is IssueAdminToken that first removes any token of
// the same name; the controller renews its local token this way.
func (f *Fleet) ReplaceAdminToken(name, role string, ttl time.Duration, createdBy string) (string, time.Time, error) {
	return f.mintAdminToken(name, role, ttl, createdBy, true)
}

// CreateAdminToken replaces the token of that name with a new one of the
// default lifetime.
func (f *Fleet) CreateAdminToken(name, role string) (string, error) {
	tok, _, err := f.mintAdminToken(name, role, 0, "controller", true)
	return tok, err
}

func (f *Fleet) mintAdminToken(name, role string, ttl time.Duration, createdBy string, replace bool) (string, time.Time, error) {
	if RoleRank(role) == 0 {
		return "", time.Time{}, fmt.Errorf("role %q is not one of viewer, operator, admin", role)
	}
	if name == "" || len(name) > 128 || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", time.Time{}, errors.New("token name must be 1 to 128 printable characters")
	}
	if ttl < 0 {
		return "", time.Time{}, fmt.Errorf("token ttl must be positive, got %s", ttl)
	}
	if ttl == 0 {
		ttl = DefaultAdminTokenTTL
	}
	s, err := pki.RandomHex(24)
	if err != nil {
		return "", time.Time{}, err
	}
	tok := adminTokenPrefix + s
	now := f.opts.Now()
	rec := adminRecord{Name: name, Role: role, Created: now, CreatedBy: createdBy, Expires: now.Add(ttl)}
	b, _ := json.Marshal(rec)
	err = f.db.Update(func(tx *store.Tx) error {
		bk := tx.Bucket([]byte(bucketAdmins))
		old, err := adminKeysByName(bk, name)
		if err != nil {
			return err
		}
		if len(old) > 0 && !replace {
			return fmt.Errorf("%w: %q", ErrAdminTokenExists, name)
		}
		for _, k := range old {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return bk.Put(bearerKey(tok), b)
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("store admin token: %w", err)
	}
	return tok, rec.Expires, nil
}

func adminKeysByName(bk *store.Bucket, name string) ([][]byte, error) {
	var keys [][]byte
	err := bk.ForEach(func(k, v []byte) error {
		var rec adminRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("admin token record: %w", err)
		}
		if rec.Name == name {
			keys = append(keys, append([]byte(nil), k...))
		}
		return nil
	})
	return keys, err
}

// CheckAdminToken returns who a bearer token belongs to, reading the
// database on every call so that a revocation or expiry takes effect on
// the very next request. It records the use, at most once a minute.
func (f *Fleet) CheckAdminToken(tok string) (name, role string, err error) {
	if !strings.HasPrefix(tok, adminTokenPrefix) {
		return "", "", ErrAdminTokenInvalid
	}
	return f.checkAdminKey(string(bearerKey(tok)))
}

// AdminTokenKey is the stored key of a bearer token; a dashboard session
// keeps it, not the token, to check the token is still live.
func AdminTokenKey(tok string) string { return string(bearerKey(tok)) }

// CheckAdminTokenKey is CheckAdminToken for a key from AdminTokenKey.
func (f *Fleet) CheckAdminTokenKey(key string) (name, role string, err error) {
	return f.checkAdminKey(key)
}

func (f *Fleet) checkAdminKey(key string) (name, role string, err error) {
	var rec adminRecord
	var lastUse time.Time
	err = f.db.View(func(tx *store.Tx) error {
		v := tx.Bucket([]byte(bucketAdmins)).Get([]byte(key))
		if v == nil || json.Unmarshal(v, &rec) != nil {
			return ErrAdminTokenInvalid
		}
		if u := tx.Bucket([]byte(bucketAdminUse)).Get([]byte(rec.Name)); len(u) == 8 {
			lastUse = time.Unix(0, int64(store.ParseU64(u)))
		}
		return nil
	})
	if err != nil {
		return "", "", err
	}
	now := f.opts.Now()
	if !now.Before(rec.Expires) {
		return "", "", ErrAdminTokenExpired
	}
	if now.Sub(lastUse) >= lastUseEvery {
		if err := f.db.Update(func(tx *store.Tx) error {
			return tx.Bucket([]byte(bucketAdminUse)).Put([]byte(rec.Name), store.U64(uint64(now.UnixNano())))
		}); err != nil {
			f.log.Warn("record admin token use", "name", rec.Name, "err", err)
		}
	}
	return rec.Name, rec.Role, nil
}

// LookupAdminToken returns who a bearer token belongs to, false for an
// unknown, revoked or expired one.
func (f *Fleet) LookupAdminToken(tok string) (name, role string, ok bool) {
	name, role, err := f.CheckAdminToken(tok)
	return name, role, err == nil
}

// AdminTokens lists every admin token by name, without secrets.
func (f *Fleet) AdminTokens() ([]AdminToken, error) {
	var out []AdminToken
	err := f.db.View(func(tx *store.Tx) error {
		use := tx.Bucket([]byte(bucketAdminUse))
		return tx.Bucket([]byte(bucketAdmins)).ForEach(func(_, v []byte) error {
			var rec adminRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("admin token record: %w", err)
			}
			t := AdminToken{Name: rec.Name, Role: rec.Role, CreatedBy: rec.CreatedBy, Created: rec.Created, Expires: rec.Expires}
			if u := use.Get([]byte(rec.Name)); len(u) == 8 {
				t.LastUsed = time.Unix(0, int64(store.ParseU64(u)))
			}
			out = append(out, t)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b AdminToken) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

// RevokeAdminToken deletes the token of that name.
func (f *Fleet) RevokeAdminToken(name string) error {
	return f.db.Update(func(tx *store.Tx) error {
		bk := tx.Bucket([]byte(bucketAdmins))
		keys, err := adminKeysByName(bk, name)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return fmt.Errorf("%w: %q", ErrAdminTokenUnknown, name)
		}
		for _, k := range keys {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(bucketAdminUse)).Delete([]byte(name))
	})
}

// migrateAdminTokens gives tokens stored before tokens expired a creation
// time and the default lifetime, counted from now: they keep working,
// and stop like any other.
func (f *Fleet) migrateAdminTokens() error {
	now := f.opts.Now()
	return f.db.Update(func(tx *store.Tx) error {
		bk := tx.Bucket([]byte(bucketAdmins))
		fix := map[string][]byte{}
		if err := bk.ForEach(func(k, v []byte) error {
			var rec adminRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("admin token record: %w", err)
			}
			if !rec.Expires.IsZero() {
				return nil
			}
			if rec.Created.IsZero() {
				rec.Created = now
			}
			rec.Expires = now.Add(DefaultAdminTokenTTL)
			b, _ := json.Marshal(rec)
			fix[string(k)] = b
			return nil
		}); err != nil {
			return err
		}
		for k, v := range fix {
			if err := bk.Put([]byte(k), v); err != nil {
				return err
			}
		}
		if len(fix) > 0 {
			f.log.Info("admin tokens without an expiry now expire", "count", len(fix), "expires", now.Add(DefaultAdminTokenTTL))
		}
		return nil
	})
}
