// Package store holds the small helpers every bbolt user in Quarry shares:
// opening a file safely, ordered integer keys, and bucket creation.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrLocked is returned when another process holds the database file.
var ErrLocked = errors.New("database file is in use by another process")

// Open opens (creating if needed) the bbolt file at path and makes sure the
// named top-level buckets exist. It waits at most one second for the file
// lock so a second controller on the same data dir fails fast and clearly.
func Open(path string, buckets ...string) (*bolt.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := EnsureBuckets(db, buckets...); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// EnsureBuckets creates the named top-level buckets if they are missing.
func EnsureBuckets(db *bolt.DB, buckets ...string) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
}

// U64 encodes n big-endian so byte order equals numeric order in a bucket.
func U64(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

// ParseU64 decodes a key written by U64. Short keys decode as zero.
func ParseU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
