// Package catalogue keeps the miner archives the controller hands to rigs:
// each name and version is one tar.gz or zip archive, stored as a file in
// the data dir, with its sha256 and the miner program's path and sha256
// pinned in the database when it is added. Flight sheets name a catalogue
// miner and version; at apply the controller writes the pins into the
// sheet it sends, and rigs download the archive over their mTLS link.
package catalogue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/minerarchive"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

const bucket = "miner_catalogue"

// Dir is the folder in the data dir that holds the archives.
const Dir = "catalogue"

// DefaultMaxArchive bounds one archive, uploaded or fetched.
const DefaultMaxArchive = 1 << 30

// Errors the service maps to gRPC codes.
var (
	ErrNotFound = errors.New("not in the catalogue")
	ErrExists   = errors.New("already in the catalogue")
	ErrInvalid  = errors.New("invalid")
	ErrInUse    = errors.New("named by stored flight sheets")
)

// NameRe and VersionRe: the pair names a directory on every rig
// (NAME-VERSION), so neither may hold a path separator, and the name no
// '-' so that the directory name is not ambiguous.
var (
	NameRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+]{0,63}$`)
	VersionRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)
)

// CheckNameVersion names the bad part of a catalogue name and version.
func CheckNameVersion(name, version string) error {
	if !NameRe.MatchString(name) {
		return fmt.Errorf("%w: miner name %q: want letters, digits, '.', '_' or '+' (no '-'), at most 64", ErrInvalid, name)
	}
	if !VersionRe.MatchString(version) {
		return fmt.Errorf("%w: version %q: want letters, digits, '.', '_', '+' or '-', at most 64", ErrInvalid, version)
	}
	return nil
}

// Options configure the store.
type Options struct {
	DataDir    string
	MaxArchive int64
	Limits     minerarchive.Limits
	// HTTPClient fetches --url archives; nil uses a client with the
	// system's roots and a 10-minute timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Store is the catalogue.
type Store struct {
	db   *store.DB
	f    *fleet.Fleet
	dir  string
	opts Options
	log  *slog.Logger
}

// Open prepares the bucket and the archive folder.
func Open(db *store.DB, f *fleet.Fleet, opts Options) (*Store, error) {
	if opts.MaxArchive <= 0 {
		opts.MaxArchive = DefaultMaxArchive
	}
	if opts.Limits.MaxBytes == 0 {
		opts.Limits = minerarchive.DefaultLimits()
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Minute}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{db: db, f: f, dir: filepath.Join(opts.DataDir, Dir), opts: opts, log: opts.Logger}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("catalogue dir: %w", err)
	}
	if err := s.db.EnsureBuckets(bucket); err != nil {
		return nil, err
	}
	return s, nil
}

func key(name, version string) []byte { return []byte(name + "\x00" + version) }

// archivePath is where an entry's archive lives.
func (s *Store) archivePath(name, version string) string {
	return filepath.Join(s.dir, name+"-"+version+".archive")
}

// Get returns one entry.
func (s *Store) Get(name, version string) (*quarryv1.CatalogueMiner, error) {
	var m *quarryv1.CatalogueMiner
	err := s.db.View(func(tx *store.Tx) error {
		v := tx.Bucket([]byte(bucket)).Get(key(name, version))
		if v == nil {
			return fmt.Errorf("miner %s %s: %w", name, version, ErrNotFound)
		}
		m = &quarryv1.CatalogueMiner{}
		return proto.Unmarshal(v, m)
	})
	return m, err
}

// List returns every entry, or one miner's, by name then version.
func (s *Store) List(name string) ([]*quarryv1.CatalogueMiner, error) {
	var out []*quarryv1.CatalogueMiner
	err := s.db.View(func(tx *store.Tx) error {
		return tx.Bucket([]byte(bucket)).ForEach(func(_, v []byte) error {
			m := &quarryv1.CatalogueMiner{}
			if err := proto.Unmarshal(v, m); err != nil {
				return err
			}
			if name == "" || m.Name == name {
				out = append(out, m)
			}
			return nil
		})
	})
	return out, err
}

// Remove deletes an entry and its archive. Rigs keep what they unpacked.
func (s *Store) Remove(name, version string) error {
	err := s.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b.Get(key(name, version)) == nil {
			return fmt.Errorf("miner %s %s: %w", name, version, ErrNotFound)
		}
		return b.Delete(key(name, version))
	})
	if err != nil {
		return err
	}
	if err := os.Remove(s.archivePath(name, version)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Add stores an archive read from r (at most MaxArchive bytes), checks
// every member with the unpacker's rules and finds the miner program. A
// version, once added, is pinned: adding it again is refused until it is
// removed.
func (s *Store) Add(h *quarryv1.AddMinerHeader, r io.Reader, who string) (*quarryv1.CatalogueMiner, error) {
	if err := CheckNameVersion(h.Name, h.Version); err != nil {
		return nil, err
	}
	if _, err := s.Get(h.Name, h.Version); err == nil {
		return nil, fmt.Errorf("miner %s %s: %w; remove it first to replace it", h.Name, h.Version, ErrExists)
	}
	tmp, err := os.CreateTemp(s.dir, ".upload-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	hash := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, hash), io.LimitReader(r, s.opts.MaxArchive+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("receive archive: %w", err)
	}
	if n > s.opts.MaxArchive {
		return nil, fmt.Errorf("%w: archive is larger than the %d bytes allowed", ErrInvalid, s.opts.MaxArchive)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: archive is empty", ErrInvalid)
	}
	format, err := minerarchive.DetectFile(tmp.Name())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	bin, err := minerarchive.FindBinary(tmp.Name(), h.Binary, h.Name, s.opts.Limits)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if flightsheet.IsInterpreter(bin.Name) {
		return nil, fmt.Errorf("%w: %s is a shell or interpreter, which never runs as a miner", ErrInvalid, bin.Name)
	}
	m := &quarryv1.CatalogueMiner{
		Name: h.Name, Version: h.Version, Sha256: hex.EncodeToString(hash.Sum(nil)), Size: n, Format: format,
		Binary: bin.Name, BinarySha256: bin.SHA256, Source: "upload", AddedBy: who, AddedUnix: s.f.Now().Unix(),
	}
	if h.Url != "" {
		m.Source = h.Url
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), s.archivePath(h.Name, h.Version)); err != nil {
		return nil, err
	}
	err = s.db.Update(func(tx *store.Tx) error {
		bk := tx.Bucket([]byte(bucket))
		if bk.Get(key(h.Name, h.Version)) != nil {
			return fmt.Errorf("miner %s %s: %w", h.Name, h.Version, ErrExists)
		}
		return bk.Put(key(h.Name, h.Version), b)
	})
	if err != nil {
		if !errors.Is(err, ErrExists) {
			os.Remove(s.archivePath(h.Name, h.Version))
		}
		return nil, err
	}
	return m, nil
}

// CheckURL accepts only https addresses: the archive's hash is pinned
// from what arrives, so it must come from the server named.
func CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: url %q: %w", ErrInvalid, raw, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%w: url %q: only https:// addresses are fetched", ErrInvalid, raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: url: credentials in the address are not accepted", ErrInvalid)
	}
	return u, nil
}

// AddURL fetches the archive over https (redirects too) and adds it.
func (s *Store) AddURL(ctx context.Context, h *quarryv1.AddMinerHeader, who string) (*quarryv1.CatalogueMiner, error) {
	if err := CheckNameVersion(h.Name, h.Version); err != nil {
		return nil, err
	}
	u, err := CheckURL(h.Url)
	if err != nil {
		return nil, err
	}
	c := *s.opts.HTTPClient
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" {
			return fmt.Errorf("%w: redirected to %s, which is not https", ErrInvalid, req.URL.Redacted())
		}
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: fetch %s: %s", ErrInvalid, u.Redacted(), resp.Status)
	}
	if resp.ContentLength > s.opts.MaxArchive {
		return nil, fmt.Errorf("%w: archive is %d bytes, more than the %d allowed", ErrInvalid, resp.ContentLength, s.opts.MaxArchive)
	}
	return s.Add(h, resp.Body, who)
}

// Open returns an entry's archive for reading from offset, with the entry.
func (s *Store) OpenArchive(name, version string, offset int64) (*os.File, *quarryv1.CatalogueMiner, error) {
	m, err := s.Get(name, version)
	if err != nil {
		return nil, nil, err
	}
	if offset < 0 || offset > m.Size {
		return nil, nil, fmt.Errorf("%w: offset %d is outside the %d-byte archive", ErrInvalid, offset, m.Size)
	}
	f, err := os.Open(s.archivePath(name, version))
	if err != nil {
		return nil, nil, err
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, m, nil
}

// Resolve writes a catalogue sheet's pins into it: the program's path in
// the archive and sha256, and the archive's sha256 and size, which is what
// the agent needs to fetch, verify and run it. Sheets that name a path
// are returned unchanged.
func (s *Store) Resolve(fs *flightsheet.FlightSheet) error {
	if !fs.Miner.FromCatalogue() {
		return nil
	}
	m, err := s.Get(fs.Miner.Name, fs.Miner.Version)
	if err != nil {
		vs, _ := s.List(fs.Miner.Name)
		have := make([]string, 0, len(vs))
		for _, v := range vs {
			have = append(have, v.Version)
		}
		slices.Sort(have)
		if len(have) == 0 {
			return fmt.Errorf("flight sheet %q: miner %s %s is not in the catalogue (add it with 'quarryctl miner add')", fs.Name, fs.Miner.Name, fs.Miner.Version)
		}
		return fmt.Errorf("flight sheet %q: miner %s %s is not in the catalogue (it has %s)", fs.Name, fs.Miner.Name, fs.Miner.Version, strings.Join(have, ", "))
	}
	fs.Miner.SHA256 = m.BinarySha256
	fs.Miner.Archive = &flightsheet.Archive{SHA256: m.Sha256, Size: m.Size, Binary: m.Binary}
	return nil
}

// ResolveYAML is Resolve on a sheet's YAML: a path sheet comes back as
// it was, a catalogue sheet re-encoded with its pins.
func (s *Store) ResolveYAML(y []byte) ([]byte, error) {
	fs, err := flightsheet.Parse(y)
	if err != nil {
		return nil, err
	}
	if !fs.Miner.FromCatalogue() {
		return y, nil
	}
	if err := s.Resolve(fs); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return fs.Marshal()
}
