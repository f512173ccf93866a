package flightsheet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// DefaultMinersDir is where an agent keeps the miner binaries it may run.
const DefaultMinersDir = "/var/lib/quarry/miners"

// interpreterRe matches the base names of shells and interpreters: a
// flight sheet naming one could run any command through extra_args
// ("-c ..."), so none ever runs as a miner, whatever its sha256.
var interpreterRe = regexp.MustCompile(`^(` +
	`sh|bash|dash|ash|zsh|ksh|mksh|pdksh|csh|tcsh|fish|rbash|busybox|toybox|` +
	`env|nohup|setsid|sudo|su|doas|runuser|chroot|nice|ionice|taskset|timeout|stdbuf|xargs|find|` +
	`python[0-9.]*|pypy[0-9.]*|perl[0-9.]*|ruby[0-9.]*|irb|node|nodejs|deno|bun|php[0-9.]*|lua[0-9.]*|luajit|tclsh[0-9.]*|wish[0-9.]*|` +
	`awk|gawk|mawk|nawk|sed|expect|guile[0-9.]*|Rscript|R|osascript|pwsh|powershell|java|jshell|dotnet|mono|` +
	`gdb|strace|ltrace|ld-linux.*\.so.*|ld\.so` +
	`)$`)

// IsInterpreter reports whether the program at path is, by its base name,
// a shell or interpreter (or a launcher that runs another program).
func IsInterpreter(path string) bool {
	return interpreterRe.MatchString(filepath.Base(path))
}

// ErrMinerPath is a miner binary the agent refuses to run.
var ErrMinerPath = errors.New("miner binary refused")

// ResolveMinerPath applies the agent's rules for miner binaries: the path
// must be absolute, resolve (symlinks followed) to a regular file inside
// minersDir (itself resolved), and be no shell or interpreter by either
// its name or its target's name. It returns the resolved path, which is
// what the agent hashes and runs. Every refusal wraps ErrMinerPath; a
// binary that does not exist is an ordinary error.
func ResolveMinerPath(minersDir, path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%w: %q is not an absolute path", ErrMinerPath, path)
	}
	if IsInterpreter(path) {
		return "", fmt.Errorf("%w: %s is a shell or interpreter, which never runs as a miner", ErrMinerPath, path)
	}
	dir, err := filepath.EvalSymlinks(minersDir)
	if err != nil {
		return "", fmt.Errorf("%w: miners directory %s: %w", ErrMinerPath, minersDir, err)
	}
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, os.ErrNotExist) {
		// Not a refusal: the binary may yet be installed.
		return "", fmt.Errorf("miner binary: %w", err)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrMinerPath, path, err)
	}
	rel, err := filepath.Rel(dir, real)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%w: %s resolves to %s, outside the miners directory %s (miners_dir); install miners there", ErrMinerPath, path, real, dir)
	}
	if IsInterpreter(real) {
		return "", fmt.Errorf("%w: %s resolves to %s, a shell or interpreter, which never runs as a miner", ErrMinerPath, path, real)
	}
	if st, err := os.Stat(real); err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s is not a regular file", ErrMinerPath, real)
	}
	return real, nil
}
