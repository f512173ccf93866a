package gossip

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// KeySize is the AES-256 key length GenerateKey produces.
const KeySize = 32

// GenerateKey returns a new random AES-256 gossip key, base64 encoded as
// `serf keygen` prints it.
func GenerateKey() (string, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("gossip: generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// DecodeKey checks and decodes one base64 gossip key.
func DecodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("key is not base64: %w", err)
	}
	if err := memberlist.ValidateKey(k); err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	return k, nil
}

// loadKeys returns the configured keys, preferring the keyring file (same
// JSON array format serf writes) when one exists.
func loadKeys(cfg *Config) ([]string, error) {
	if cfg.KeyringFile != "" {
		data, err := os.ReadFile(cfg.KeyringFile)
		switch {
		case err == nil:
			var keys []string
			if err := json.Unmarshal(data, &keys); err != nil {
				return nil, fmt.Errorf("gossip: keyring file %s: %w", cfg.KeyringFile, err)
			}
			if len(keys) == 0 {
				return nil, fmt.Errorf("gossip: keyring file %s holds no keys", cfg.KeyringFile)
			}
			return keys, nil
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("gossip: keyring file: %w", err)
		}
	}
	if len(cfg.Keys) == 0 {
		return nil, errors.New("gossip: no gossip key: unencrypted gossip is refused")
	}
	return cfg.Keys, nil
}

func newKeyring(keys []string) (*memberlist.Keyring, error) {
	raw := make([][]byte, 0, len(keys))
	for i, k := range keys {
		b, err := DecodeKey(k)
		if err != nil {
			return nil, fmt.Errorf("gossip: key %d: %w", i, err)
		}
		raw = append(raw, b)
	}
	kr, err := memberlist.NewKeyring(raw, raw[0])
	if err != nil {
		return nil, fmt.Errorf("gossip: keyring: %w", err)
	}
	return kr, nil
}

// KeyringTamper describes a keyring change this node did not make (a
// serf install-key, use-key or remove-key query from another member) and
// that it has undone.
type KeyringTamper struct {
	// Found is the live keyring as the change left it, as fingerprints
	// (see KeyFingerprint), primary first: the keys themselves are secret.
	Found []string
	// Restored is the keyring put back, as fingerprints, primary first.
	Restored []string
}

// KeyFingerprint names a gossip key without revealing it: the first 16 hex
// digits of the SHA-256 of its bytes.
func KeyFingerprint(key string) string {
	raw, err := DecodeKey(key)
	if err != nil {
		return "invalid"
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}

func fingerprints(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = KeyFingerprint(k)
	}
	return out
}

// Keys returns the keyring this node holds to, primary first: the one it
// started with or was last given through SetKeyring. The live keyring can
// differ for a moment after another member's key query, until the guard
// restores it; hand out these keys, never the live ones.
func (n *Node) Keys() []string {
	n.keysMu.Lock()
	defer n.keysMu.Unlock()
	return slices.Clone(n.want)
}

// SetKeyring replaces this node's keyring (primary first) and persists it
// to Config.KeyringFile. It changes this node only: no member accepts
// keyring changes over gossip, so the controller hands keys to rigs over
// their authenticated gRPC link and each applies them with SetKeyring.
func (n *Node) SetKeyring(keys []string) error {
	if len(keys) == 0 {
		return errors.New("gossip: set keyring: no keys")
	}
	for i, k := range keys {
		if _, err := DecodeKey(k); err != nil {
			return fmt.Errorf("gossip: set keyring: key %d: %w", i, err)
		}
	}
	keys = dedupKeys(keys)
	n.keysMu.Lock()
	defer n.keysMu.Unlock()
	if err := n.persistKeys(keys); err != nil {
		return err
	}
	n.want = keys
	if err := applyKeys(n.keyring, keys); err != nil {
		return fmt.Errorf("gossip: set keyring: %w", err)
	}
	return nil
}

func dedupKeys(keys []string) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		k = strings.TrimSpace(k)
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

func (n *Node) persistKeys(keys []string) error {
	if n.cfg.KeyringFile == "" {
		return nil
	}
	b, err := json.Marshal(keys)
	if err != nil {
		return fmt.Errorf("gossip: keyring file: %w", err)
	}
	if err := writeFileAtomic(n.cfg.KeyringFile, b); err != nil {
		return fmt.Errorf("gossip: keyring file: %w", err)
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a crash never leaves a half-written keyring, owner-only.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// applyKeys makes kr hold exactly keys with keys[0] as primary. Each step
// is atomic in memberlist; in between, kr always holds the new primary or
// the old one, so no packet of the wanted keyring is refused.
func applyKeys(kr *memberlist.Keyring, keys []string) error {
	raw := make([][]byte, len(keys))
	for i, k := range keys {
		b, err := DecodeKey(k)
		if err != nil {
			return err
		}
		raw[i] = b
		if err := kr.AddKey(b); err != nil {
			return err
		}
	}
	if err := kr.UseKey(raw[0]); err != nil {
		return err
	}
	for _, have := range kr.GetKeys() {
		if !slices.ContainsFunc(raw, func(b []byte) bool { return bytes.Equal(b, have) }) {
			if err := kr.RemoveKey(have); err != nil {
				return err
			}
		}
	}
	return nil
}

// liveKeys is the memberlist keyring, primary first, then in ring order.
func liveKeys(kr *memberlist.Keyring) []string {
	primary := kr.GetPrimaryKey()
	out := []string{base64.StdEncoding.EncodeToString(primary)}
	for _, k := range kr.GetKeys() {
		if !bytes.Equal(k, primary) {
			out = append(out, base64.StdEncoding.EncodeToString(k))
		}
	}
	return out
}

// sameKeyring reports whether two keyrings have the same primary and the
// same set of keys.
func sameKeyring(a, b []string) bool {
	if len(a) != len(b) || len(a) == 0 || a[0] != b[0] {
		return len(a) == 0 && len(b) == 0
	}
	for _, k := range a {
		if !slices.Contains(b, k) {
			return false
		}
	}
	return true
}

// keyQueryNotice is how serf logs an incoming keyring query, before it
// acts on it ("Received install-key query").
const keyQueryNotice = "-key query"

// guardKeyring restores the wanted keyring whenever the live one differs.
// Serf answers install-key, use-key and remove-key queries from any member
// holding the gossip key, and offers no switch to turn them off, so the
// guard undoes them: at once when serf logs such a query, and on a short
// tick in case the log line came before the change itself.
func (n *Node) guardKeyring() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.KeyringCheck)
	defer t.Stop()
	for {
		select {
		case <-n.stopped:
			return
		case <-n.keyQuery:
		case <-t.C:
		}
		n.checkKeyring()
	}
}

// checkKeyring restores the wanted keyring if the live one differs and
// reports the tampering.
func (n *Node) checkKeyring() {
	n.keysMu.Lock()
	want := n.want
	found := liveKeys(n.keyring)
	if sameKeyring(found, want) {
		n.keysMu.Unlock()
		return
	}
	err := applyKeys(n.keyring, want)
	n.keysMu.Unlock()
	if err != nil {
		n.log.Error("could not restore the gossip keyring after a change by another member", "err", err)
		return
	}
	n.stats.keyringRestored.Add(1)
	t := KeyringTamper{Found: fingerprints(found), Restored: fingerprints(want)}
	n.log.Warn("undid a gossip keyring change made by another member: only this node's owner changes its keyring",
		"found", t.Found, "restored", t.Restored)
	if n.cfg.OnKeyringTamper != nil {
		n.cfg.OnKeyringTamper(t)
	}
}

// noteLogLine wakes the keyring guard when serf logs a key query.
func (n *Node) noteLogLine(msg string) {
	if !strings.Contains(msg, keyQueryNotice) || n.keyQuery == nil {
		return
	}
	select {
	case n.keyQuery <- struct{}{}:
	default:
	}
}

// KeyResult is the cluster's answer to ListKeys.
type KeyResult struct {
	NumNodes int
	NumResp  int
	NumErr   int
	// Errors maps node name to its error message.
	Errors map[string]string
	// Keys maps each key to the number of nodes holding it.
	Keys map[string]int
	// PrimaryKeys maps each key to the number of nodes using it as primary.
	PrimaryKeys map[string]int
}

// ListKeys asks every member for its keys. It only reads: members answer
// but change nothing.
func (n *Node) ListKeys(ctx context.Context) (*KeyResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gossip: list keys: %w", err)
	}
	if n.serf == nil {
		return nil, ErrNotStarted
	}
	type result struct {
		resp *serf.KeyResponse
		err  error
	}
	ch := make(chan result, 1)
	// KeyManager blocks for a query timeout and has no context; the buffered
	// channel lets it finish on its own if the caller gives up.
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		r, err := n.serf.KeyManager().ListKeys()
		ch <- result{r, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("gossip: list keys: %w", ctx.Err())
	}
	if r.resp == nil {
		return nil, fmt.Errorf("gossip: list keys: %w", r.err)
	}
	res := &KeyResult{
		NumNodes:    r.resp.NumNodes,
		NumResp:     r.resp.NumResp,
		NumErr:      r.resp.NumErr,
		Errors:      r.resp.Messages,
		Keys:        r.resp.Keys,
		PrimaryKeys: r.resp.PrimaryKeys,
	}
	if r.err != nil {
		return res, fmt.Errorf("gossip: list keys: %d of %d nodes failed: %w", r.resp.NumErr, r.resp.NumNodes, r.err)
	}
	return res, nil
}

// LocalKeys returns this node's live keyring, primary first, the rest
// sorted, base64 encoded.
func (n *Node) LocalKeys() []string {
	live := liveKeys(n.keyring)
	rest := live[1:]
	sort.Strings(rest)
	return live
}
