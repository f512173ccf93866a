package testsupport

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

func TestPortsNeverRepeatAndAreFree(t *testing.T) {
	p := NewPorts()
	seen := map[string]bool{}
	for range 200 {
		addr := p.Addr(t, "127.0.0.1")
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		port, _ := strconv.Atoi(addr[strings.LastIndex(addr, ":")+1:])
		if port < p.lo || port >= p.hi {
			t.Fatalf("%s outside [%d, %d)", addr, p.lo, p.hi)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("handed %s, not free for TCP: %v", addr, err)
		}
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatalf("handed %s, not free for UDP: %v", addr, err)
		}
		l.Close()
		u.Close()
	}
}

func TestPortsSkipATakenPort(t *testing.T) {
	p := NewPorts()
	// Hold a port n whose neighbour n+1 is free; of the two, only n+1
	// may be handed out.
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n := l.Addr().(*net.TCPAddr).Port
		next := "127.0.0.1:" + strconv.Itoa(n+1)
		if probe, err := net.Listen("tcp", next); err == nil {
			probe.Close()
			p.lo, p.hi = n, n+2
			got := p.Port(t, "127.0.0.1")
			l.Close()
			if got != strconv.Itoa(n+1) {
				t.Fatalf("got %s with %d taken, want %d", got, n, n+1)
			}
			return
		}
		l.Close()
	}
	t.Fatal("no taken port with a free neighbour in 50 tries")
}
