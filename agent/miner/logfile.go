package miner

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// maxLineHook bounds how much of an unterminated line is held for the line
// hook; a miner printing megabytes without a newline must not grow memory.
const maxLineHook = 16 << 10

// RotatingLog is an io.Writer that keeps at most Files files of at most
// MaxBytes each: name, name.1, ... name.(Files-1), newest first. It also
// hands each complete line to an optional hook, which is how the watchdog
// sees "login failed" messages.
type RotatingLog struct {
	path     string
	maxBytes int64
	files    int
	onLine   func(string)

	mu      sync.Mutex
	f       *os.File
	size    int64
	partial []byte
}

// OpenRotatingLog opens (appending to) path. maxBytes and files must be
// positive; onLine may be nil.
func OpenRotatingLog(path string, maxBytes int64, files int, onLine func(string)) (*RotatingLog, error) {
	if maxBytes <= 0 || files <= 0 {
		return nil, fmt.Errorf("rotating log %s: max bytes %d and files %d must be positive", path, maxBytes, files)
	}
	l := &RotatingLog{path: path, maxBytes: maxBytes, files: files, onLine: onLine}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *RotatingLog) open() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open miner log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat miner log: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Write stores p, rotating first whenever the current file would grow past
// the bound. It never returns a short write for a successful call.
func (l *RotatingLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, errors.New("miner log is closed")
	}
	n := len(p)
	l.hookLines(p)
	for len(p) > 0 {
		room := l.maxBytes - l.size
		if room <= 0 {
			if err := l.rotate(); err != nil {
				return n - len(p), err
			}
			room = l.maxBytes
		}
		chunk := p
		if int64(len(chunk)) > room {
			chunk = chunk[:room]
		}
		w, err := l.f.Write(chunk)
		l.size += int64(w)
		p = p[w:]
		if err != nil {
			return n - len(p), fmt.Errorf("write miner log: %w", err)
		}
	}
	return n, nil
}

func (l *RotatingLog) hookLines(p []byte) {
	if l.onLine == nil {
		return
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLineHook - len(l.partial)
			l.partial = append(l.partial, p[:min(len(p), max(room, 0))]...)
			return
		}
		l.partial = append(l.partial, p[:min(i, max(maxLineHook-len(l.partial), 0))]...)
		l.onLine(strings.TrimRight(string(l.partial), "\r"))
		l.partial = l.partial[:0]
		p = p[i+1:]
	}
}

func (l *RotatingLog) rotate() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("close miner log: %w", err)
	}
	l.f = nil
	// Shift name.(k-1) -> name.k from the oldest down; the oldest falls off.
	for k := l.files - 1; k >= 1; k-- {
		from := l.path
		if k > 1 {
			from = l.path + "." + strconv.Itoa(k-1)
		}
		if err := os.Rename(from, l.path+"."+strconv.Itoa(k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotate miner log: %w", err)
		}
	}
	if l.files == 1 {
		if err := os.Truncate(l.path, 0); err != nil {
			return fmt.Errorf("truncate miner log: %w", err)
		}
	}
	return l.open()
}

// Close closes the current file. Further writes fail.
func (l *RotatingLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Files returns the paths of the log files that exist, newest first.
func (l *RotatingLog) Files() []string { return logFiles(l.path, l.files) }

func logFiles(path string, files int) []string {
	var out []string
	for k := 0; k < files; k++ {
		p := path
		if k > 0 {
			p = path + "." + strconv.Itoa(k)
		}
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Tail returns up to n of the last lines written, oldest first.
func (l *RotatingLog) Tail(n int) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return tailFiles(l.path, l.files, n)
}

// tailFiles reads files newest first, each from its end backwards, until
// it has n lines, so a short tail costs a few blocks rather than whole files.
func tailFiles(path string, files, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	var lines []string // newest first
	for _, p := range logFiles(path, files) {
		got, err := tailFile(p, n-len(lines))
		if err != nil {
			return nil, err
		}
		lines = append(lines, got...)
		if len(lines) >= n {
			break
		}
	}
	slices.Reverse(lines)
	return lines, nil
}

// tailFile returns up to n last lines of one file, newest first.
func tailFile(path string, n int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil // rotated away while we looked
		}
		return nil, fmt.Errorf("read miner log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read miner log: %w", err)
	}
	const block = 64 << 10
	var buf []byte
	off := st.Size()
	for off > 0 && bytes.Count(buf, []byte{'\n'}) <= n {
		step := min(off, block)
		off -= step
		chunk := make([]byte, step)
		if _, err := f.ReadAt(chunk, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read miner log: %w", err)
		}
		buf = append(chunk, buf...)
	}
	buf = bytes.TrimRight(buf, "\n")
	if len(buf) == 0 {
		return nil, nil
	}
	parts := strings.Split(string(buf), "\n")
	if off > 0 {
		parts = parts[1:] // the first part may be the tail of a longer line
	}
	var out []string
	for i := len(parts) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, parts[i])
	}
	return out, nil
}

// LogPath is where a supervisor with this data dir writes the miner log.
func LogPath(logDir string) string { return filepath.Join(logDir, "miner.log") }
