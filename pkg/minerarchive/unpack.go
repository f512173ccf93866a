package minerarchive

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Unpack writes the archive at name into dest, which must not exist yet:
// unpacking into a fresh directory means no link already there can
// redirect a write. On any refusal or error dest is removed again.
func Unpack(name, dest string, lim Limits) (err error) {
	if err := os.Mkdir(dest, 0o755); err != nil {
		return fmt.Errorf("unpack into %s: %w", dest, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dest)
		}
	}()
	return Walk(name, lim, func(e Entry, r io.Reader) error {
		p := filepath.Join(dest, filepath.FromSlash(e.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		switch e.Kind {
		case KindDir:
			return os.MkdirAll(p, 0o755)
		case KindSymlink:
			return os.Symlink(e.Target, p)
		case KindHardlink:
			return os.Link(filepath.Join(dest, filepath.FromSlash(e.Target)), p)
		}
		// O_EXCL: a member never replaces what is already there.
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, e.Mode|0o400)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("unpack %s: %w", e.Name, err)
		}
		// The umask may have dropped execute bits the archive set.
		return os.Chmod(p, e.Mode|0o400)
	})
}

// Binary is the miner program found in an archive.
type Binary struct {
	Name   string // slash-separated path inside the archive
	SHA256 string
	Size   int64
}

// FindBinary checks the whole archive and returns the program at want,
// or when want is empty the regular file named like miner (with or
// without ".exe"), else the one executable regular file. The program must
// be a regular file, not a link.
func FindBinary(name, want, miner string, lim Limits) (Binary, error) {
	if want != "" {
		c, err := CleanName(want)
		if err != nil || c == "" {
			return Binary{}, fmt.Errorf("binary %q: not a path inside the archive", want)
		}
		want = c
	}
	type cand struct {
		Binary
		exec bool
	}
	var all []cand
	err := Walk(name, lim, func(e Entry, r io.Reader) error {
		if e.Kind != KindFile {
			return nil
		}
		base := path.Base(e.Name)
		interesting := e.Name == want || (want == "" && (e.Mode&0o111 != 0 || strings.EqualFold(strings.TrimSuffix(base, ".exe"), miner)))
		if !interesting {
			return nil
		}
		h := sha256.New()
		n, err := io.Copy(h, r)
		if err != nil {
			return err
		}
		all = append(all, cand{Binary{Name: e.Name, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, e.Mode&0o111 != 0})
		return nil
	})
	if err != nil {
		return Binary{}, err
	}
	if want != "" {
		if len(all) == 1 {
			return all[0].Binary, nil
		}
		return Binary{}, fmt.Errorf("binary %q: no such regular file in the archive", want)
	}
	var named, execs []Binary
	for _, c := range all {
		if strings.EqualFold(strings.TrimSuffix(path.Base(c.Name), ".exe"), miner) {
			named = append(named, c.Binary)
		}
		if c.exec {
			execs = append(execs, c.Binary)
		}
	}
	switch {
	case len(named) == 1:
		return named[0], nil
	case len(execs) == 1:
		return execs[0], nil
	case len(execs) == 0:
		return Binary{}, errors.New("the archive holds no executable file; name the miner program with --binary")
	}
	names := make([]string, 0, len(execs))
	for _, b := range execs {
		names = append(names, b.Name)
	}
	return Binary{}, fmt.Errorf("the archive holds several executables (%s); name the miner program with --binary", strings.Join(names, ", "))
}
