// Package minerarchive reads the tar.gz and zip archives miners ship in,
// refusing anything that could write outside the directory they unpack
// into: absolute names, "..", links that leave it, device files, and
// archives larger than the limits once unpacked. The controller scans an
// archive with it when one is added to the catalogue; the agent unpacks
// with the same rules.
package minerarchive

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Formats.
const (
	FormatTarGz = "tar.gz"
	FormatZip   = "zip"
)

// Limits bound what an archive may unpack to.
type Limits struct {
	MaxBytes int64 // sum of the unpacked files' sizes
	MaxFiles int   // entries of any kind
}

// DefaultLimits fit every miner release seen (the largest are a few
// hundred MB with CUDA libraries) with room to spare.
func DefaultLimits() Limits { return Limits{MaxBytes: 2 << 30, MaxFiles: 10000} }

const maxNameLen = 1024

// ErrUnsafe is an archive refused for its content.
var ErrUnsafe = errors.New("archive refused")

// Kind is an entry's type.
type Kind int

// Entry kinds.
const (
	KindDir Kind = iota
	KindFile
	KindSymlink
	KindHardlink
)

// Entry is one checked archive member. Name is slash-separated, clean and
// relative; Target, for links, is as written in the archive and checked to
// stay inside (a hard link's target is an earlier member's name).
type Entry struct {
	Name   string
	Kind   Kind
	Mode   fs.FileMode // permission bits, setuid/setgid/sticky and group/other write dropped
	Size   int64
	Target string
}

// Detect names the format from the first bytes of the archive.
func Detect(head []byte) (string, error) {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return FormatTarGz, nil
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return FormatZip, nil
	}
	return "", fmt.Errorf("%w: not a tar.gz or zip archive", ErrUnsafe)
}

// DetectFile is Detect on a file's first bytes.
func DetectFile(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	return Detect(head[:n])
}

// CleanName checks a member name and returns it clean and relative.
func CleanName(name string) (string, error) {
	if name == "" || len(name) > maxNameLen {
		return "", fmt.Errorf("%w: member name of %d bytes", ErrUnsafe, len(name))
	}
	if strings.ContainsAny(name, "\x00\\") {
		return "", fmt.Errorf("%w: member %q holds a NUL or backslash", ErrUnsafe, name)
	}
	if strings.HasPrefix(name, "/") || (len(name) >= 2 && name[1] == ':') {
		return "", fmt.Errorf("%w: member %q has an absolute path", ErrUnsafe, name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: member %q climbs out of the directory (..)", ErrUnsafe, name)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil // the root itself, as "./" in many tarballs
	}
	return c, nil
}

// checkSymlink refuses a link target that is absolute or holds "..": with
// neither, the link can only point at or below its own directory, however
// other links in the archive resolve.
func checkSymlink(name, target string) error {
	if target == "" || len(target) > maxNameLen || strings.ContainsAny(target, "\x00\\") {
		return fmt.Errorf("%w: symlink %s has a bad target", ErrUnsafe, name)
	}
	if strings.HasPrefix(target, "/") || (len(target) >= 2 && target[1] == ':') {
		return fmt.Errorf("%w: symlink %s points to the absolute path %q", ErrUnsafe, name, target)
	}
	for _, part := range strings.Split(target, "/") {
		if part == ".." {
			return fmt.Errorf("%w: symlink %s points to %q, which may leave the directory", ErrUnsafe, name, target)
		}
	}
	return nil
}

// walker checks members in archive order.
type walker struct {
	lim    Limits
	files  int
	bytes  int64
	seen   map[string]Kind
	target map[string]bool // regular files, for hard links
}

func newWalker(lim Limits) *walker {
	return &walker{lim: lim, seen: map[string]Kind{}, target: map[string]bool{}}
}

func (w *walker) check(e *Entry) (skip bool, err error) {
	name, err := CleanName(e.Name)
	if err != nil {
		return false, err
	}
	if name == "" {
		if e.Kind == KindDir {
			return true, nil
		}
		return false, fmt.Errorf("%w: member %q has no name", ErrUnsafe, e.Name)
	}
	e.Name = name
	w.files++
	if w.files > w.lim.MaxFiles {
		return false, fmt.Errorf("%w: more than %d members", ErrUnsafe, w.lim.MaxFiles)
	}
	// No member may sit below a link: writing it would follow the link.
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		switch k, ok := w.seen[dir]; {
		case ok && k != KindDir:
			return false, fmt.Errorf("%w: member %s lies below %s, which is not a directory", ErrUnsafe, name, dir)
		case !ok:
			w.seen[dir] = KindDir
		}
	}
	if k, ok := w.seen[name]; ok {
		if k == KindDir && e.Kind == KindDir {
			return true, nil
		}
		return false, fmt.Errorf("%w: member %s appears twice", ErrUnsafe, name)
	}
	w.seen[name] = e.Kind
	switch e.Kind {
	case KindFile:
		if e.Size < 0 {
			return false, fmt.Errorf("%w: member %s has a negative size", ErrUnsafe, name)
		}
		w.target[name] = true
	case KindSymlink:
		if err := checkSymlink(name, e.Target); err != nil {
			return false, err
		}
	case KindHardlink:
		t, err := CleanName(e.Target)
		if err != nil || !w.target[t] {
			return false, fmt.Errorf("%w: hard link %s points to %q, not an earlier file of the archive", ErrUnsafe, name, e.Target)
		}
		e.Target = t
	}
	e.Mode = e.Mode.Perm() &^ 0o022
	return false, nil
}

// counted caps the bytes read from all members together.
func (w *walker) counted(r io.Reader) io.Reader {
	return &capReader{r: r, w: w}
}

type capReader struct {
	r io.Reader
	w *walker
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.w.bytes += int64(n)
	if c.w.bytes > c.w.lim.MaxBytes {
		return n, fmt.Errorf("%w: unpacks to more than %d bytes", ErrUnsafe, c.w.lim.MaxBytes)
	}
	return n, err
}

// Walk checks every member of the archive at name and calls fn for each
// one that passes, in archive order, with the content of regular files
// (read it fully or not at all). It stops at the first refusal, which
// wraps ErrUnsafe, or at fn's first error.
func Walk(name string, lim Limits, fn func(Entry, io.Reader) error) error {
	format, err := DetectFile(name)
	if err != nil {
		return err
	}
	w := newWalker(lim)
	if format == FormatZip {
		return walkZip(name, w, fn)
	}
	return walkTarGz(name, w, fn)
}

func walkTarGz(name string, w *walker, fn func(Entry, io.Reader) error) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("%w: gzip: %w", ErrUnsafe, err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: tar: %w", ErrUnsafe, err)
		}
		e := Entry{Name: h.Name, Mode: fs.FileMode(h.Mode), Size: h.Size, Target: h.Linkname}
		switch h.Typeflag {
		case tar.TypeReg: // the reader reports old-style regular files as TypeReg too
			e.Kind = KindFile
		case tar.TypeDir:
			e.Kind = KindDir
		case tar.TypeSymlink:
			e.Kind = KindSymlink
		case tar.TypeLink:
			e.Kind = KindHardlink
		case tar.TypeXGlobalHeader, tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
			continue
		default:
			return fmt.Errorf("%w: member %q is a device, fifo or other special file", ErrUnsafe, h.Name)
		}
		skip, err := w.check(&e)
		if err != nil {
			return err
		}
		if skip {
			continue
		}
		var r io.Reader = eofReader{}
		if e.Kind == KindFile {
			r = w.counted(tr)
		}
		if err := fn(e, r); err != nil {
			return err
		}
	}
}

func walkZip(name string, w *walker, fn func(Entry, io.Reader) error) error {
	zr, err := zip.OpenReader(name)
	if err != nil {
		return fmt.Errorf("%w: zip: %w", ErrUnsafe, err)
	}
	defer zr.Close()
	if len(zr.File) > w.lim.MaxFiles {
		return fmt.Errorf("%w: more than %d members", ErrUnsafe, w.lim.MaxFiles)
	}
	for _, zf := range zr.File {
		mode := zf.Mode()
		e := Entry{Name: zf.Name, Mode: mode, Size: int64(zf.UncompressedSize64)}
		if e.Size < 0 {
			return fmt.Errorf("%w: member %q is too large", ErrUnsafe, zf.Name)
		}
		switch {
		case mode.IsDir() || strings.HasSuffix(zf.Name, "/"):
			e.Kind = KindDir
		case mode&fs.ModeSymlink != 0:
			e.Kind = KindSymlink
			t, err := readSmall(zf)
			if err != nil {
				return err
			}
			e.Target = t
		case mode.IsRegular():
			e.Kind = KindFile
		default:
			return fmt.Errorf("%w: member %q is a device, fifo or other special file", ErrUnsafe, zf.Name)
		}
		skip, err := w.check(&e)
		if err != nil {
			return err
		}
		if skip {
			continue
		}
		if e.Kind != KindFile {
			if err := fn(e, eofReader{}); err != nil {
				return err
			}
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			return fmt.Errorf("%w: zip member %s: %w", ErrUnsafe, e.Name, err)
		}
		err = fn(e, w.counted(rc))
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func readSmall(zf *zip.File) (string, error) {
	rc, err := zf.Open()
	if err != nil {
		return "", fmt.Errorf("%w: zip member %s: %w", ErrUnsafe, zf.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxNameLen+1))
	if err != nil {
		return "", fmt.Errorf("%w: zip member %s: %w", ErrUnsafe, zf.Name, err)
	}
	return string(b), nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
