package gossip

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Envelope is the signed payload of fleet events and queries.
type Envelope struct {
	ID       [16]byte
	IssuedAt time.Time
	// Kind is the event kind (pause, resume, ...) or the query name.
	Kind string
	// Selector picks the members that should act; see ParseSelector.
	Selector string
	Body     []byte
}

// IDString returns the id in hex, as logged.
func (e *Envelope) IDString() string { return hex.EncodeToString(e.ID[:]) }

type purpose byte

const (
	purposeEvent purpose = 1
	purposeQuery purpose = 2
)

// envelopeMagic versions the wire format and keeps stray payloads from
// other serf users from being mistaken for ours.
var envelopeMagic = []byte("QG1")

// Reasons an envelope is refused; handlers never see refused envelopes.
var (
	ErrMalformed    = errors.New("malformed envelope")
	ErrUnsigned     = errors.New("unsigned envelope")
	ErrBadSignature = errors.New("signature does not verify with any trusted key")
	ErrStale        = errors.New("envelope outside the accepted time window")
	ErrReplayed     = errors.New("envelope id already seen")
	ErrNotSelected  = errors.New("selector does not match this member")
)

const (
	maxKindLen     = 64
	maxSelectorLen = 256
)

func newEnvelope(now time.Time, kind, selector string, body []byte) (*Envelope, error) {
	if kind == "" || len(kind) > maxKindLen {
		return nil, fmt.Errorf("kind %q: want 1-%d bytes", kind, maxKindLen)
	}
	if len(selector) > maxSelectorLen {
		return nil, fmt.Errorf("selector longer than %d bytes", maxSelectorLen)
	}
	if _, err := ParseSelector(selector); err != nil {
		return nil, err
	}
	e := &Envelope{IssuedAt: now, Kind: kind, Selector: selector, Body: body}
	if _, err := rand.Read(e.ID[:]); err != nil {
		return nil, fmt.Errorf("envelope id: %w", err)
	}
	return e, nil
}

// marshal encodes e; with a nil key the result is unsigned (which receivers
// refuse; it exists so tests can prove that).
//
// Layout: "QG1" purpose id[16] issued_at(int64 ns, BE) uvarint-len kind,
// uvarint-len selector, uvarint-len body, then a 64-byte signature over
// everything before it. The purpose byte is signed so an event can't be
// replayed as a query or the other way round.
func (e *Envelope) marshal(p purpose, key ed25519.PrivateKey) []byte {
	var b bytes.Buffer
	b.Write(envelopeMagic)
	b.WriteByte(byte(p))
	b.Write(e.ID[:])
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(e.IssuedAt.UnixNano()))
	b.Write(ts[:])
	for _, f := range [][]byte{[]byte(e.Kind), []byte(e.Selector), e.Body} {
		b.Write(binary.AppendUvarint(nil, uint64(len(f))))
		b.Write(f)
	}
	msg := b.Bytes()
	if key == nil {
		return msg
	}
	return append(msg, ed25519.Sign(key, msg)...)
}

// unmarshalEnvelope decodes and verifies data. It checks only the format and
// the signature; freshness and replay are the receiver's job.
func unmarshalEnvelope(data []byte, want purpose, trusted []ed25519.PublicKey) (*Envelope, error) {
	rest, ok := bytes.CutPrefix(data, envelopeMagic)
	if !ok || len(rest) < 1+16+8 {
		return nil, fmt.Errorf("%w: bad header", ErrMalformed)
	}
	if purpose(rest[0]) != want {
		return nil, fmt.Errorf("%w: purpose %d, want %d", ErrMalformed, rest[0], want)
	}
	e := &Envelope{}
	copy(e.ID[:], rest[1:17])
	e.IssuedAt = time.Unix(0, int64(binary.BigEndian.Uint64(rest[17:25])))
	rest = rest[25:]
	fields := make([][]byte, 3)
	for i := range fields {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, fmt.Errorf("%w: field %d length", ErrMalformed, i)
		}
		fields[i] = rest[w : w+int(n)]
		rest = rest[w+int(n):]
	}
	e.Kind, e.Selector = string(fields[0]), string(fields[1])
	e.Body = bytes.Clone(fields[2])
	switch len(rest) {
	case 0:
		return e, ErrUnsigned
	case ed25519.SignatureSize:
	default:
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
	}
	msg := data[:len(data)-ed25519.SignatureSize]
	for _, k := range trusted {
		if ed25519.Verify(k, msg, rest) {
			return e, nil
		}
	}
	return e, ErrBadSignature
}

// replayCache remembers accepted envelope ids until they are too old to pass
// the time window anyway. It is bounded: when full, the oldest id goes
// first, which is safe as long as the cache holds more ids than the fleet
// issues within one window.
type replayCache struct {
	max   int
	seen  map[[16]byte]time.Time
	order [][16]byte // FIFO of ids in seen
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[[16]byte]time.Time, max)}
}

// add records id (expiring at exp) and reports false if it was already there.
func (c *replayCache) add(id [16]byte, exp, now time.Time) bool {
	if _, dup := c.seen[id]; dup {
		return false
	}
	for len(c.order) > 0 {
		oldest := c.order[0]
		if len(c.order) < c.max && c.seen[oldest].After(now) {
			break
		}
		delete(c.seen, oldest)
		c.order = c.order[1:]
	}
	c.seen[id] = exp
	c.order = append(c.order, id)
	return true
}

func (c *replayCache) len() int { return len(c.seen) }
