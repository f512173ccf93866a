package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrBadOps is wrapped by ApplyOps's error when a change set cannot be
// decoded.
var ErrBadOps = errors.New("malformed change set")

// A change set is a version byte followed by operations until the end:
//
//	kind byte
//	path: uvarint 0 for the previous operation's path, else depth+1
//	      followed by depth names, each uvarint length + bytes
//	key:  uvarint length + bytes (a bucket name for the bucket kinds)
//	put only: value, uvarint length + bytes
//	set-sequence only: no key; the sequence as a uvarint
//
// Paths are the nested bucket names from the top; the empty path is the
// root, whose children are the top-level buckets. Repeating a path costs
// one byte, which keeps a batch of writes to the same buckets small.
const opsVersion = 1

type opKind byte

const (
	opPut opKind = iota + 1
	opDelete
	opCreateBucket // CreateBucketIfNotExists
	opDeleteBucket
	opSetSequence
)

// recorder accumulates the encoded change set of one replicated write. Its
// methods are no-ops on a nil recorder, which is how local mode skips them.
type recorder struct {
	buf  []byte
	last [][]byte
	any  bool // last is valid
}

func (r *recorder) encoded() []byte {
	if len(r.buf) == 0 {
		return nil
	}
	return r.buf
}

func (r *recorder) op(k opKind, path [][]byte) {
	if len(r.buf) == 0 {
		r.buf = append(r.buf, opsVersion)
	}
	r.buf = append(r.buf, byte(k))
	if r.any && samePath(r.last, path) {
		r.buf = binary.AppendUvarint(r.buf, 0)
		return
	}
	r.buf = binary.AppendUvarint(r.buf, uint64(len(path))+1)
	for _, name := range path {
		r.bytes(name)
	}
	r.last, r.any = path, true
}

func (r *recorder) bytes(b []byte) {
	r.buf = binary.AppendUvarint(r.buf, uint64(len(b)))
	r.buf = append(r.buf, b...)
}

func (r *recorder) put(path [][]byte, key, value []byte) {
	if r == nil {
		return
	}
	r.op(opPut, path)
	r.bytes(key)
	r.bytes(value)
}

func (r *recorder) delete(path [][]byte, key []byte) {
	if r == nil {
		return
	}
	r.op(opDelete, path)
	r.bytes(key)
}

func (r *recorder) createBucket(b *Bucket) {
	if r == nil {
		return
	}
	n := len(b.path) - 1
	r.op(opCreateBucket, b.path[:n:n])
	r.bytes(b.path[n])
}

func (r *recorder) deleteBucket(parent [][]byte, name []byte) {
	if r == nil {
		return
	}
	r.op(opDeleteBucket, parent)
	r.bytes(name)
}

func (r *recorder) setSequence(path [][]byte, n uint64) {
	if r == nil {
		return
	}
	r.op(opSetSequence, path)
	r.buf = binary.AppendUvarint(r.buf, n)
}

func samePath(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

type op struct {
	kind  opKind
	path  [][]byte
	key   []byte
	value []byte
	seq   uint64
}

// ApplyOps applies a change set recorded by a replicated Update to tx, a
// bbolt write transaction. It is deterministic: the same change set on the
// same state gives the same state on every node. The whole set is decoded
// before anything is written, so malformed input changes nothing; an
// operation the state refuses (a missing bucket, say) returns an error and
// the caller should roll tx back.
func ApplyOps(tx *bolt.Tx, ops []byte) error {
	// bbolt keeps a put value by reference until commit; a private copy
	// keeps the caller free to reuse its buffer.
	list, err := decodeOps(bytes.Clone(ops))
	if err != nil {
		return err
	}
	root := tx.Cursor().Bucket()
	for i, o := range list {
		if err := applyOp(root, o); err != nil {
			return fmt.Errorf("apply operation %d of %d: %w", i+1, len(list), err)
		}
	}
	return nil
}

func applyOp(root *bolt.Bucket, o op) error {
	b := root
	for _, name := range o.path {
		if b = b.Bucket(name); b == nil {
			return fmt.Errorf("bucket %q: %w", name, berrors.ErrBucketNotFound)
		}
	}
	switch o.kind {
	case opPut:
		return b.Put(o.key, o.value)
	case opDelete:
		return b.Delete(o.key)
	case opCreateBucket:
		_, err := b.CreateBucketIfNotExists(o.key)
		return err
	case opDeleteBucket:
		return b.DeleteBucket(o.key)
	case opSetSequence:
		return b.SetSequence(o.seq)
	}
	return fmt.Errorf("operation kind %d: %w", o.kind, ErrBadOps)
}

type decoder struct {
	b []byte
}

func (d *decoder) uvarint() (uint64, error) {
	n, w := binary.Uvarint(d.b)
	if w <= 0 {
		return 0, fmt.Errorf("bad varint: %w", ErrBadOps)
	}
	d.b = d.b[w:]
	return n, nil
}

func (d *decoder) bytes() ([]byte, error) {
	n, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(d.b)) {
		return nil, fmt.Errorf("length %d past the end: %w", n, ErrBadOps)
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v, nil
}

func decodeOps(in []byte) ([]op, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("empty: %w", ErrBadOps)
	}
	if in[0] != opsVersion {
		return nil, fmt.Errorf("version %d: %w", in[0], ErrBadOps)
	}
	d := decoder{b: in[1:]}
	var (
		list []op
		path [][]byte
		have bool
	)
	for len(d.b) > 0 {
		o := op{kind: opKind(d.b[0])}
		d.b = d.b[1:]
		if o.kind < opPut || o.kind > opSetSequence {
			return nil, fmt.Errorf("operation kind %d: %w", o.kind, ErrBadOps)
		}
		n, err := d.uvarint()
		if err != nil {
			return nil, err
		}
		switch {
		case n == 0 && !have:
			return nil, fmt.Errorf("repeated path with none before: %w", ErrBadOps)
		case n > 0:
			// Each name takes at least its length byte, which bounds the
			// allocation by the input's size.
			if n-1 > uint64(len(d.b)) {
				return nil, fmt.Errorf("path depth %d past the end: %w", n-1, ErrBadOps)
			}
			path = make([][]byte, n-1)
			for i := range path {
				if path[i], err = d.bytes(); err != nil {
					return nil, err
				}
			}
			have = true
		}
		o.path = path
		if o.kind == opSetSequence {
			if o.seq, err = d.uvarint(); err != nil {
				return nil, err
			}
		} else {
			if o.key, err = d.bytes(); err != nil {
				return nil, err
			}
			if o.kind == opPut {
				if o.value, err = d.bytes(); err != nil {
					return nil, err
				}
			}
		}
		list = append(list, o)
	}
	return list, nil
}
