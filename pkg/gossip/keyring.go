package gossip

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

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

// KeyResult is the cluster's answer to a keyring operation.
type KeyResult struct {
	NumNodes int
	NumResp  int
	NumErr   int
	// Errors maps node name to its error message.
	Errors map[string]string
	// Keys maps each key to the number of nodes holding it (ListKeys only).
	Keys map[string]int
	// PrimaryKeys maps each key to the number of nodes using it as primary
	// (ListKeys only).
	PrimaryKeys map[string]int
}

// ErrKeyOp is wrapped by key operations that some members failed.
var ErrKeyOp = errors.New("gossip: key operation failed on some members")

// InstallKey adds key to every member's keyring without using it yet.
// Rotation is InstallKey(new), UseKey(new), RemoveKey(old).
func (n *Node) InstallKey(ctx context.Context, key string) (*KeyResult, error) {
	if _, err := DecodeKey(key); err != nil {
		return nil, fmt.Errorf("gossip: install key: %w", err)
	}
	return n.keyOp(ctx, "install", func(km *serf.KeyManager) (*serf.KeyResponse, error) { return km.InstallKey(key) })
}

// UseKey makes an installed key primary on every member.
func (n *Node) UseKey(ctx context.Context, key string) (*KeyResult, error) {
	if _, err := DecodeKey(key); err != nil {
		return nil, fmt.Errorf("gossip: use key: %w", err)
	}
	return n.keyOp(ctx, "use", func(km *serf.KeyManager) (*serf.KeyResponse, error) { return km.UseKey(key) })
}

// RemoveKey drops a non-primary key from every member.
func (n *Node) RemoveKey(ctx context.Context, key string) (*KeyResult, error) {
	if _, err := DecodeKey(key); err != nil {
		return nil, fmt.Errorf("gossip: remove key: %w", err)
	}
	return n.keyOp(ctx, "remove", func(km *serf.KeyManager) (*serf.KeyResponse, error) { return km.RemoveKey(key) })
}

// ListKeys asks every member for its keys.
func (n *Node) ListKeys(ctx context.Context) (*KeyResult, error) {
	return n.keyOp(ctx, "list", func(km *serf.KeyManager) (*serf.KeyResponse, error) { return km.ListKeys() })
}

// LocalKeys returns this node's keyring, primary first, base64 encoded.
func (n *Node) LocalKeys() []string {
	kr := n.keyring
	primary := kr.GetPrimaryKey()
	out := []string{base64.StdEncoding.EncodeToString(primary)}
	var rest []string
	for _, k := range kr.GetKeys() {
		if string(k) != string(primary) {
			rest = append(rest, base64.StdEncoding.EncodeToString(k))
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

func (n *Node) keyOp(ctx context.Context, op string, f func(*serf.KeyManager) (*serf.KeyResponse, error)) (*KeyResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gossip: %s key: %w", op, err)
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
		r, err := f(n.serf.KeyManager())
		ch <- result{r, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("gossip: %s key: %w", op, ctx.Err())
	}
	if r.resp == nil {
		return nil, fmt.Errorf("gossip: %s key: %w", op, r.err)
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
		return res, fmt.Errorf("%w: %s: %d of %d nodes failed: %v", ErrKeyOp, op, r.resp.NumErr, r.resp.NumNodes, r.err)
	}
	return res, nil
}
