// Package snapshot takes consistent online copies of the controller's
// database and restores them: a copy is written from one bbolt read
// transaction while the controller goes on serving; a restore is checked
// in full, staged beside the database, and moved into place at the next
// start, before anything opens the database.
//
// A snapshot is the bbolt file itself, so bbolt's own tools read it. It
// holds every durable fact of the fleet (rigs, tokens as hashes,
// flight sheets, commands, profit decisions, billing facts and outbox,
// audit, jobs), but not the files beside the database in the data
// directory: the CA key, the gossip keyring and event key, and miner
// archives are secrets or bulk and are backed up as files.
package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quarryfleet/quarry/pkg/store"
)

// StagedSuffix names the staged snapshot beside the database file.
const StagedSuffix = ".restore"

// Summary is what a snapshot holds, by the buckets the caller names.
type Summary struct {
	Size   int64
	SHA256 string
	Keys   map[string]int
}

// Save writes a consistent copy of db to w from one read transaction and
// returns its size and sha256.
func Save(ctx context.Context, db *store.DB, w io.Writer) (Summary, error) {
	h := sha256.New()
	cw := &ctxWriter{ctx: ctx, w: io.MultiWriter(w, h)}
	var n int64
	err := db.View(func(tx *store.Tx) error {
		var err error
		n, err = tx.WriteTo(cw)
		return err
	})
	if ctxErr := ctx.Err(); err != nil && ctxErr != nil {
		return Summary{}, fmt.Errorf("snapshot: %w", ctxErr) // bbolt does not wrap the writer's error
	}
	if err != nil {
		return Summary{}, fmt.Errorf("snapshot: %w", err)
	}
	return Summary{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// ctxWriter stops a copy whose caller has gone away, so an abandoned
// download does not hold a read transaction (and the file's growth) open.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Stager receives a snapshot into a temporary file beside the database
// and stages it once it has been checked.
type Stager struct {
	dbPath   string
	required []string
	count    []string
	max      int64
	f        *os.File
	h        hash.Hash
	n        int64
}

// NewStager starts receiving a snapshot for the database at dbPath. The
// snapshot must hold the required buckets; Keys in the summary counts the
// keys of the count buckets. At most max bytes are accepted.
func NewStager(dbPath string, required, count []string, max int64) (*Stager, error) {
	f, err := os.CreateTemp(filepath.Dir(dbPath), filepath.Base(dbPath)+".incoming-*")
	if err != nil {
		return nil, fmt.Errorf("snapshot restore: %w", err)
	}
	return &Stager{dbPath: dbPath, required: required, count: count, max: max, f: f, h: sha256.New()}, nil
}

// ErrTooLarge is returned when a snapshot exceeds the size limit.
var ErrTooLarge = errors.New("snapshot larger than the limit")

// ErrInvalid is returned for a snapshot that is not a sound Quarry
// database, or that differs from what its sender said it sent.
var ErrInvalid = errors.New("invalid snapshot")

// Write adds received bytes.
func (s *Stager) Write(p []byte) (int, error) {
	if s.n+int64(len(p)) > s.max {
		return 0, fmt.Errorf("%w (%d bytes)", ErrTooLarge, s.max)
	}
	n, err := s.f.Write(p)
	s.n += int64(n)
	s.h.Write(p[:n])
	return n, err
}

// Abort removes what was received.
func (s *Stager) Abort() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// Commit checks the received snapshot against the size and sha256 its
// sender computed, opens it read-only and runs bbolt's consistency check,
// makes sure it holds the required buckets, and stages it. On any error
// nothing is staged.
func (s *Stager) Commit(size int64, sum string) (sm Summary, err error) {
	defer func() {
		if err != nil {
			s.Abort()
		}
	}()
	got := hex.EncodeToString(s.h.Sum(nil))
	if size != s.n || sum != got {
		return Summary{}, fmt.Errorf("%w: received %d bytes with sha256 %s, sender sent %d bytes with sha256 %s", ErrInvalid, s.n, got, size, sum)
	}
	if err := s.f.Sync(); err != nil {
		return Summary{}, fmt.Errorf("snapshot restore: %w", err)
	}
	if err := s.f.Close(); err != nil {
		return Summary{}, fmt.Errorf("snapshot restore: %w", err)
	}
	keys, err := inspectIsolated(s.f.Name(), s.required, s.count)
	if err != nil {
		return Summary{}, err
	}
	sm = Summary{Size: s.n, SHA256: got, Keys: keys}
	if err := os.Rename(s.f.Name(), s.dbPath+StagedSuffix); err != nil {
		return Summary{}, fmt.Errorf("snapshot restore: %w", err)
	}
	return sm, syncDir(filepath.Dir(s.dbPath))
}

// CheckCommand is the hidden quarry-controller subcommand that inspects a
// received snapshot in a child process. bbolt reads its file through a
// memory map and trusts the page numbers in it: a truncated or damaged
// file faults (SIGBUS, SIGSEGV) in a way no recover catches, so the
// controller never opens an uploaded file itself before a child has read
// all of it.
const CheckCommand = "snapshot-check"

// RunCheck is CheckCommand's main: args are the file, the required
// buckets and the counted buckets (comma-separated). It prints the key
// counts as JSON, or the reason the file is refused, and returns the exit
// code.
func RunCheck(args []string, stdout io.Writer) int {
	if len(args) != 3 {
		fmt.Fprintln(stdout, "usage: "+CheckCommand+" FILE REQUIRED,BUCKETS COUNTED,BUCKETS")
		return 2
	}
	keys := map[string]int{}
	if err := inspect(args[0], splitList(args[1]), splitList(args[2]), keys); err != nil {
		fmt.Fprintln(stdout, err.Error())
		return 1
	}
	_ = json.NewEncoder(stdout).Encode(keys)
	return 0
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// inspectIsolated runs CheckCommand on path in a child process of this
// program.
func inspectIsolated(path string, required, count []string) (map[string]int, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("snapshot check: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, CheckCommand, path, strings.Join(required, ","), strings.Join(count, ","))
	cmd.Env = []string{}
	var out bytes.Buffer
	cmd.Stdout = &out
	err = cmd.Run()
	msg := strings.TrimSpace(out.String())
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(msg, ErrInvalid.Error()+": "))
	case errors.As(err, &exit):
		return nil, fmt.Errorf("%w: not a readable database; reading it ended the check with %v", ErrInvalid, exit.ProcessState)
	case err != nil:
		return nil, fmt.Errorf("snapshot check: %w", err)
	}
	keys := map[string]int{}
	if err := json.Unmarshal(out.Bytes(), &keys); err != nil {
		return nil, fmt.Errorf("snapshot check answered %q: %w", msg, err)
	}
	return keys, nil
}

// inspect opens path read-only and checks it.
func inspect(path string, required, count []string, keys map[string]int) (err error) {
	defer func() {
		// bbolt panics on some damaged files instead of returning an
		// error.
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: not a readable database (%v)", ErrInvalid, r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("%w: not a bbolt database: %v", ErrInvalid, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
			if len(errs) == 5 {
				break
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w: consistency check failed: %w", ErrInvalid, errors.Join(errs...))
		}
		for _, b := range required {
			if tx.Bucket([]byte(b)) == nil {
				return fmt.Errorf("%w: no %q bucket; not a Quarry controller database", ErrInvalid, b)
			}
		}
		for _, b := range count {
			if bk := tx.Bucket([]byte(b)); bk != nil {
				keys[b] = bk.Stats().KeyN
			}
		}
		return nil
	})
}

// ApplyStaged moves a staged snapshot into place at dbPath, keeping the
// database it replaces as dbPath.before-restore-TIME. Call it before the
// database is opened. It reports whether a snapshot was applied and where
// the replaced database was kept ("" when there was none).
func ApplyStaged(dbPath string, now time.Time, log *slog.Logger) (applied bool, kept string, err error) {
	staged := dbPath + StagedSuffix
	if _, err := os.Stat(staged); errors.Is(err, os.ErrNotExist) {
		return false, "", nil
	} else if err != nil {
		return false, "", fmt.Errorf("staged snapshot: %w", err)
	}
	if _, err := os.Stat(dbPath); err == nil {
		kept = dbPath + ".before-restore-" + now.UTC().Format("20060102T150405Z")
		if err := os.Rename(dbPath, kept); err != nil {
			return false, "", fmt.Errorf("keep the replaced database: %w", err)
		}
	}
	if err := os.Rename(staged, dbPath); err != nil {
		return false, "", fmt.Errorf("move the staged snapshot into place: %w", err)
	}
	if err := syncDir(filepath.Dir(dbPath)); err != nil {
		return false, "", err
	}
	log.Warn("database replaced by a restored snapshot", "database", dbPath, "replaced_database_kept_as", kept)
	return true, kept, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
