// Package minerfetch installs catalogue miners on a rig: it downloads the
// archive a flight sheet pins from the controller over the rig's mTLS
// link (resuming an interrupted download where it stopped), checks its
// sha256, unpacks it safely into miners_dir/NAME-VERSION and keeps the
// last few versions of each miner.
package minerfetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/minerarchive"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Defaults.
const (
	DefaultKeep       = 3
	DefaultMaxArchive = 1 << 30
	maxAttempts       = 8 // in a row without progress
)

// ErrChecksum is a downloaded archive whose sha256 is not the pinned one.
var ErrChecksum = errors.New("archive sha256 mismatch")

// Installer installs catalogue miners. Its methods are safe to call from
// several goroutines; installs run one at a time.
type Installer struct {
	// MinersDir is the agent's miners_dir; installs go to
	// MinersDir/NAME-VERSION.
	MinersDir string
	// StateDir holds partial downloads and what each install holds.
	StateDir string
	// Conn reaches the controller with the rig's certificate.
	Conn       grpc.ClientConnInterface
	MaxArchive int64
	Limits     minerarchive.Limits
	Keep       int
	Log        *slog.Logger
	// RetryWait is the first wait after a broken download; it doubles
	// while no progress is made.
	RetryWait time.Duration

	mu sync.Mutex
}

// manifest is what one install holds, written after it is complete.
type manifest struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	SHA256    string `json:"sha256"`
	Binary    string `json:"binary"`
	Installed int64  `json:"installed_unix_nano"`
}

// DirName is the folder a miner version is unpacked into.
func DirName(name, version string) string { return name + "-" + version }

func (in *Installer) defaults() {
	if in.MaxArchive <= 0 {
		in.MaxArchive = DefaultMaxArchive
	}
	if in.Limits.MaxBytes == 0 {
		in.Limits = minerarchive.DefaultLimits()
	}
	if in.Keep <= 0 {
		in.Keep = DefaultKeep
	}
	if in.Log == nil {
		in.Log = slog.New(slog.DiscardHandler)
	}
	if in.RetryWait <= 0 {
		in.RetryWait = 200 * time.Millisecond
	}
}

// checkName refuses names that are not one path element each: the sheet
// came from the controller, but the rig trusts it no further than needed.
func checkName(name, version string) error {
	for _, s := range []string{name, version} {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, `/\`+"\x00") || strings.HasPrefix(s, ".") {
			return fmt.Errorf("miner %q version %q: not a plain name", name, version)
		}
	}
	if strings.Contains(name, "-") {
		return fmt.Errorf("miner name %q must not hold '-'", name)
	}
	return nil
}

// Install makes sure the catalogue miner m names is unpacked, downloading
// it when needed, and returns the program's path. keep, if set, names
// installs (by directory) that pruning must not remove, such as the one
// running now. Nothing is replaced unless the new archive is complete,
// verified and unpacked.
func (in *Installer) Install(ctx context.Context, m flightsheet.Miner, keep func(dir string) bool) (string, bool, error) {
	in.defaults()
	a := m.Archive
	if !m.FromCatalogue() || a == nil {
		return "", false, errors.New("the sheet names a catalogue miner but carries no archive pin; apply it through the controller")
	}
	if err := checkName(m.Name, m.Version); err != nil {
		return "", false, err
	}
	if a.Size > in.MaxArchive {
		return "", false, fmt.Errorf("miner %s %s: archive is %d bytes, more than the %d this rig accepts", m.Name, m.Version, a.Size, in.MaxArchive)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	dir := DirName(m.Name, m.Version)
	bin := filepath.Join(in.MinersDir, dir, filepath.FromSlash(a.Binary))
	if mf, err := in.readManifest(dir); err == nil && strings.EqualFold(mf.SHA256, a.SHA256) {
		if _, err := os.Stat(filepath.Join(in.MinersDir, dir)); err == nil {
			return bin, false, nil
		}
	}
	if err := os.MkdirAll(in.StateDir, 0o700); err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(in.MinersDir, 0o755); err != nil {
		return "", false, err
	}
	part := filepath.Join(in.StateDir, dir+".part")
	if err := in.download(ctx, m.Name, m.Version, a, part); err != nil {
		return "", false, fmt.Errorf("miner %s %s: %w", m.Name, m.Version, err)
	}
	if err := in.verify(part, a.SHA256); err != nil {
		os.Remove(part) // a wrong archive is never resumed
		return "", false, fmt.Errorf("miner %s %s: %w", m.Name, m.Version, err)
	}
	if err := in.unpack(part, dir); err != nil {
		os.Remove(part)
		return "", false, fmt.Errorf("miner %s %s: %w", m.Name, m.Version, err)
	}
	os.Remove(part)
	mf := manifest{Name: m.Name, Version: m.Version, SHA256: strings.ToLower(a.SHA256), Binary: a.Binary, Installed: time.Now().UnixNano()}
	if err := in.writeManifest(dir, mf); err != nil {
		return "", false, err
	}
	in.prune(m.Name, dir, keep)
	in.Log.Info("miner installed", "miner", m.Name, "version", m.Version, "dir", filepath.Join(in.MinersDir, dir))
	return bin, true, nil
}

// download fills part up to the archive's size, resuming from what part
// already holds and after each broken stream.
func (in *Installer) download(ctx context.Context, name, version string, a *flightsheet.Archive, part string) error {
	client := quarryv1.NewMinerDownloadServiceClient(in.Conn)
	failures := 0
	wait := in.RetryWait
	for {
		off := int64(0)
		if st, err := os.Stat(part); err == nil {
			off = st.Size()
		}
		if off > a.Size {
			if err := os.Truncate(part, 0); err != nil {
				return err
			}
			off = 0
		}
		if off == a.Size {
			return nil
		}
		got, err := in.fetchFrom(ctx, client, name, version, a, part, off)
		if err == nil {
			continue
		}
		switch status.Code(err) {
		case codes.NotFound, codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated:
			return fmt.Errorf("download: %w", err)
		}
		if errors.Is(err, ErrChecksum) || ctx.Err() != nil {
			return fmt.Errorf("download: %w", err)
		}
		if got > 0 {
			failures, wait = 0, in.RetryWait
		}
		failures++
		if failures >= maxAttempts {
			return fmt.Errorf("download: gave up after %d tries without progress: %w", failures, err)
		}
		in.Log.Warn("miner download interrupted; resuming", "miner", name, "version", version, "at", off+got, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("download: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// fetchFrom appends one stream's chunks to part and returns how many
// bytes it added.
func (in *Installer) fetchFrom(ctx context.Context, client quarryv1.MinerDownloadServiceClient, name, version string, a *flightsheet.Archive, part string, off int64) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.FetchMinerArchive(ctx, &quarryv1.FetchMinerArchiveRequest{Name: name, Version: version, Offset: off})
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var got int64
	first := true
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if off+got != a.Size {
				return got, fmt.Errorf("stream ended at %d of %d bytes", off+got, a.Size)
			}
			return got, f.Sync()
		}
		if err != nil {
			return got, err
		}
		if first {
			first = false
			if c.Size != a.Size || !strings.EqualFold(c.Sha256, a.SHA256) {
				return got, fmt.Errorf("%w: the controller's archive (%d bytes, sha256 %s) is not the one the sheet pins (%d bytes, sha256 %s)", ErrChecksum, c.Size, c.Sha256, a.Size, a.SHA256)
			}
		}
		if c.Offset != off+got {
			return got, fmt.Errorf("chunk at offset %d, expected %d", c.Offset, off+got)
		}
		if off+got+int64(len(c.Data)) > a.Size {
			return got, fmt.Errorf("%w: the controller sent more than the pinned %d bytes", ErrChecksum, a.Size)
		}
		if _, err := f.Write(c.Data); err != nil {
			return got, err
		}
		got += int64(len(c.Data))
	}
}

func (in *Installer) verify(part, want string) error {
	f, err := os.Open(part)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, want) {
		return fmt.Errorf("%w: pinned %s, downloaded %s; nothing installed", ErrChecksum, strings.ToLower(want), got)
	}
	return nil
}

// unpack writes the archive into a fresh hidden folder, then swaps it in.
func (in *Installer) unpack(part, dir string) error {
	tmp := filepath.Join(in.MinersDir, fmt.Sprintf(".unpack-%s-%d", dir, time.Now().UnixNano()))
	if err := minerarchive.Unpack(part, tmp, in.Limits); err != nil {
		return err
	}
	final := filepath.Join(in.MinersDir, dir)
	if _, err := os.Lstat(final); err == nil {
		old := filepath.Join(in.MinersDir, fmt.Sprintf(".old-%s-%d", dir, time.Now().UnixNano()))
		if err := os.Rename(final, old); err != nil {
			os.RemoveAll(tmp)
			return err
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return nil
}

func (in *Installer) manifestPath(dir string) string {
	return filepath.Join(in.StateDir, dir+".json")
}

func (in *Installer) readManifest(dir string) (manifest, error) {
	var mf manifest
	b, err := os.ReadFile(in.manifestPath(dir))
	if err != nil {
		return mf, err
	}
	return mf, json.Unmarshal(b, &mf)
}

func (in *Installer) writeManifest(dir string, mf manifest) error {
	b, err := json.Marshal(mf)
	if err != nil {
		return err
	}
	tmp := in.manifestPath(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, in.manifestPath(dir))
}

// manifests returns every complete install, newest first.
func (in *Installer) manifests() []manifest {
	ents, err := os.ReadDir(in.StateDir)
	if err != nil {
		return nil
	}
	var out []manifest
	for _, e := range ents {
		dir, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		mf, err := in.readManifest(dir)
		if err != nil || DirName(mf.Name, mf.Version) != dir {
			continue
		}
		if _, err := os.Stat(filepath.Join(in.MinersDir, dir)); err != nil {
			continue
		}
		out = append(out, mf)
	}
	slices.SortFunc(out, func(a, b manifest) int {
		switch {
		case a.Installed > b.Installed:
			return -1
		case a.Installed < b.Installed:
			return 1
		}
		return strings.Compare(a.Version, b.Version)
	})
	return out
}

// prune removes a miner's installs beyond the newest Keep, never the one
// just made or one keep names.
func (in *Installer) prune(name, current string, keep func(string) bool) {
	n := 0
	for _, mf := range in.manifests() {
		if mf.Name != name {
			continue
		}
		dir := DirName(mf.Name, mf.Version)
		n++
		if n <= in.Keep || dir == current || (keep != nil && keep(dir)) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(in.MinersDir, dir)); err != nil {
			in.Log.Warn("remove old miner version", "dir", dir, "err", err)
			continue
		}
		os.Remove(in.manifestPath(dir))
		in.Log.Info("removed old miner version", "miner", mf.Name, "version", mf.Version)
	}
}

// Installed lists the catalogue miners unpacked on this rig, newest
// first. It takes no lock, so the agent's Hello never waits for a
// download: manifests are replaced whole, by rename.
func (in *Installer) Installed() []*quarryv1.InstalledMiner {
	var out []*quarryv1.InstalledMiner
	for _, mf := range in.manifests() {
		out = append(out, &quarryv1.InstalledMiner{Name: mf.Name, Version: mf.Version, Sha256: mf.SHA256})
	}
	return out
}
