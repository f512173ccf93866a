package testsupport

import (
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"
)

func TestInCI(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{{"", false}, {"true", true}, {"1", true}, {"false", false}, {"0", false}, {"TRUE", true}} {
		t.Setenv("CI", tc.v)
		if got := InCI(); got != tc.want {
			t.Errorf("CI=%q: InCI() = %v, want %v", tc.v, got, tc.want)
		}
	}
}

// The offline proxy holds every file the go command asks a GOPROXY for.
func TestOfflineGoEnvProxyComplete(t *testing.T) {
	env := OfflineGoEnv(t)
	dir := filepath.Join(RepoRoot(t), "pkg", "testsupport", "testdata", "goproxy", "golang.org", "x", "sync", "@v")
	for _, f := range []string{"list", "v0.25.0.info", "v0.25.0.mod", "v0.25.0.zip"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("proxy file %s: %v", f, err)
		}
	}
	if env["GOSUMDB"] != "off" || env["GOMODCACHE"] == "" || env["GOPROXY"] != "file://"+filepath.ToSlash(filepath.Join(RepoRoot(t), "pkg", "testsupport", "testdata", "goproxy")) {
		t.Errorf("env %v", env)
	}
}

// A database closed by the test is left alone; an open one is checked and
// closed.
func TestOpenDBChecksAndCloses(t *testing.T) {
	db := OpenDB(t, filepath.Join(t.TempDir(), "a.db"), "b")
	CheckDB(t, db)
	if err := db.View(func(*bbolt.Tx) error { return nil }); err == nil {
		t.Fatal("database still open after CheckDB")
	}
	CheckDB(t, db) // closed already: no error, no panic
}
