// Package testsupport holds what Quarry's tests share: the rule for tools
// the suite needs, an offline Go module proxy for build-job fixtures, and
// polling helpers.
package testsupport

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/quarryfleet/quarry/pkg/store"
)

// InCI reports whether the tests run under CI, where every tool that
// `make test` installs must be present: a missing one fails the test
// instead of skipping it, so a broken install step cannot pass unnoticed.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "0" && v != "false"
}

// Missing skips the test when a person runs it without a tool the suite
// installs, and fails it under CI. how says how to get the tool.
func Missing(t testing.TB, what, how string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is missing in CI; `make test` installs it (%s)", what, how)
	}
	t.Skipf("%s is missing (%s); skipping", what, how)
}

// RequireTool returns the path of a command on PATH, or skips (fails in CI)
// when it is not there.
func RequireTool(t testing.TB, name, how string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name, how)
	}
	return p
}

// RepoRoot is the module's root directory, found from this file's place so
// it works from any package's test working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the testsupport package source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// RepoBin returns a tool `make tools` installed into the repository's bin/
// (or, failing that, one on PATH), skipping or failing like RequireTool.
func RepoBin(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(RepoRoot(t), "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	Missing(t, name, "run `make tools`, which installs it into bin/")
	return ""
}

// GoToolchain is the absolute path of the go command on PATH, resolved
// through its GOROOT so a job with a PATH of its own finds the same one.
func GoToolchain(t testing.TB) string {
	t.Helper()
	goCmd := RequireTool(t, "go", "install Go 1.26")
	out, err := exec.Command(goCmd, "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "bin", "go")
}

// OfflineGoEnv is the environment for a build of a fixture module that
// resolves its dependencies from testdata/goproxy and nothing else: no
// network, no checksum database and an empty module cache of the test's
// own, so the build behaves the same on a machine that never built Go. The
// build cache is shared with the test run's: it is keyed by content, so it
// can only save time, never supply a module.
func OfflineGoEnv(t testing.TB) map[string]string {
	t.Helper()
	goBin := GoToolchain(t)
	cache, err := exec.Command(goBin, "env", "GOCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOCACHE: %v", err)
	}
	env := offlineGoEnv(t, goProxyDir(t), t.TempDir())
	env["GOCACHE"] = strings.TrimSpace(string(cache))
	return env
}

// OfflineGoEnvIn is OfflineGoEnv with everything the build touches — a
// copy of the proxy, the module and build caches, HOME — under root, for a
// build that runs as another user than the test's.
func OfflineGoEnvIn(t testing.TB, root string) map[string]string {
	t.Helper()
	proxy := filepath.Join(root, "goproxy")
	CopyTree(t, goProxyDir(t), proxy)
	return offlineGoEnv(t, proxy, filepath.Join(root, "gopath"))
}

func goProxyDir(t testing.TB) string {
	t.Helper()
	proxy := filepath.Join(RepoRoot(t), "pkg", "testsupport", "testdata", "goproxy")
	if _, err := os.Stat(proxy); err != nil {
		t.Fatalf("offline module proxy: %v", err)
	}
	return proxy
}

func offlineGoEnv(t testing.TB, proxy, gopath string) map[string]string {
	t.Helper()
	goBin := GoToolchain(t)
	return map[string]string{
		"GOPROXY":     "file://" + filepath.ToSlash(proxy),
		"GOSUMDB":     "off",
		"GOFLAGS":     "-mod=mod -modcacherw",
		"GOTOOLCHAIN": "local",
		"GOPATH":      gopath,
		"GOMODCACHE":  filepath.Join(gopath, "pkg", "mod"),
		"GOCACHE":     filepath.Join(gopath, "cache"),
		"HOME":        gopath,
		"PATH":        filepath.Dir(goBin) + ":/usr/local/bin:/usr/bin:/bin",
	}
}

// GoJobSpec is the YAML spec of a build job over a copy of pkg/selfheal's
// go-missing-sum project in dir: its go.sum is missing, the go rule pack
// heals it offline from testdata/goproxy, and the test step prints
// "[0 10 20]". where is the job's `where:` line value ("" for none).
func GoJobSpec(t testing.TB, dir, where string) string {
	t.Helper()
	return goJobSpec(t, dir, where, OfflineGoEnv(t))
}

// GoJobSpecIn is GoJobSpec with the Go environment of OfflineGoEnvIn.
func GoJobSpecIn(t testing.TB, dir, where, root string) string {
	t.Helper()
	return goJobSpec(t, dir, where, OfflineGoEnvIn(t, root))
}

func goJobSpec(t testing.TB, dir, where string, env map[string]string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "name: sharecount\ndir: %q\nbuild:\n  - [%q, build, -mod=readonly, -o, sharecount, .]\ntest:\n  - ./sharecount\nrule_packs: [go]\n", dir, GoToolchain(t))
	if where != "" {
		fmt.Fprintf(&b, "where: %q\n", where)
	}
	b.WriteString("env:\n")
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(&b, "  %s: %q\n", k, env[k])
	}
	return b.String()
}

// GoMissingSumProject is the path of the go-missing-sum fixture project.
func GoMissingSumProject(t testing.TB) string {
	t.Helper()
	return filepath.Join(RepoRoot(t), "pkg", "selfheal", "testdata", "projects", "go-missing-sum")
}

// CopyProject copies pkg/selfheal's broken fixture project name into a
// fresh temporary directory; tests never build inside testdata itself.
func CopyProject(t testing.TB, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	CopyTree(t, filepath.Join(RepoRoot(t), "pkg", "selfheal", "testdata", "projects", name), dst)
	return dst
}

// CopyTree copies the directory src to dst.
func CopyTree(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// OpenDB opens (creating) a bbolt file with the named buckets and, when the
// test ends, runs bbolt's consistency check over it the way bbolt's own
// tests do, then closes it. A test may close the database itself first.
func OpenDB(t testing.TB, path string, buckets ...string) *bbolt.DB {
	t.Helper()
	db, err := store.Open(path, buckets...)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { CheckDB(t, db) })
	return db
}

// OpenStore is OpenDB for the controller's packages, which write through
// a store.DB; the file gets OpenDB's consistency check at cleanup.
func OpenStore(t testing.TB, path string, buckets ...string) *store.DB {
	t.Helper()
	return store.NewDB(OpenDB(t, path, buckets...))
}

// CheckDB runs bbolt's consistency check over db and closes it; a closed
// db is left alone.
func CheckDB(t testing.TB, db *bbolt.DB) {
	t.Helper()
	err := db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return
	}
	if err != nil {
		t.Errorf("bbolt consistency of %s: %v", db.Path(), err)
	}
	_ = db.Close()
}

// Eventually polls cond until it holds or timeout passes, then fails the
// test naming what it waited for.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	Poll(t, what, timeout, func() (bool, string) { return cond(), "" })
}

// Poll is Eventually for a condition that can say what it last saw, which
// the failure message then shows.
func Poll(t testing.TB, what string, timeout time.Duration, cond func() (ok bool, last string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(delay*2, 50*time.Millisecond) {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if last != "" {
				t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, last)
			}
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(delay)
	}
}

// Clock is a settable clock for code that takes a Now func: tests move
// time instead of waiting for it.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set puts the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
