package minerarchive_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/minerarchive"
	"github.com/quarryfleet/quarry/pkg/minerarchive/archivetest"
)

type member = archivetest.Member

func write(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "a")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var formats = map[string]func(...member) []byte{"tar.gz": archivetest.TarGz, "zip": archivetest.Zip}

func TestUnpackKeepsLayoutAndExecutableBits(t *testing.T) {
	for format, build := range formats {
		t.Run(format, func(t *testing.T) {
			a := write(t, build(
				member{Name: "./", Dir: true},
				member{Name: "xmrig-6.26/", Dir: true},
				member{Name: "xmrig-6.26/xmrig", Body: []byte("#!binary"), Mode: 0o4777},
				member{Name: "xmrig-6.26/config.json", Body: []byte("{}"), Mode: 0o644},
				member{Name: "xmrig-6.26/lib/libx.so.1", Body: []byte("lib"), Mode: 0o755},
				member{Name: "xmrig-6.26/lib/libx.so", Link: "libx.so.1"},
			))
			dest := filepath.Join(t.TempDir(), "out")
			if err := minerarchive.Unpack(a, dest, minerarchive.DefaultLimits()); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(filepath.Join(dest, "xmrig-6.26/xmrig"))
			if err != nil {
				t.Fatal(err)
			}
			// Executable bits kept; setuid and world-write dropped.
			if got := st.Mode(); got.Perm() != 0o755 || got&os.ModeSetuid != 0 {
				t.Errorf("binary mode %v, want -rwxr-xr-x", got)
			}
			if st, _ := os.Stat(filepath.Join(dest, "xmrig-6.26/config.json")); st.Mode().Perm()&0o111 != 0 {
				t.Errorf("config.json became executable: %v", st.Mode())
			}
			b, err := os.ReadFile(filepath.Join(dest, "xmrig-6.26/lib/libx.so"))
			if err != nil || string(b) != "lib" {
				t.Errorf("library link: %q, %v", b, err)
			}
			bin, err := minerarchive.FindBinary(a, "", "xmrig", minerarchive.DefaultLimits())
			if err != nil || bin.Name != "xmrig-6.26/xmrig" {
				t.Errorf("FindBinary = %+v, %v", bin, err)
			}
		})
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	cases := []struct {
		name    string
		members []member
		want    string
		tarOnly bool
	}{
		{"absolute", []member{{Name: "/etc/cron.d/x", Body: []byte("x")}}, "absolute", false},
		{"dotdot", []member{{Name: "a/../../x", Body: []byte("x")}}, "..", false},
		{"leading dotdot", []member{{Name: "../x", Body: []byte("x")}}, "..", false},
		{"symlink absolute", []member{{Name: "l", Link: "/etc"}}, "absolute", false},
		{"symlink up", []member{{Name: "l", Link: "../../etc/passwd"}}, "may leave", false},
		{"symlink dot then up", []member{{Name: "d", Link: "."}, {Name: "l", Link: "d/.."}}, "may leave", false},
		{"write through symlink", []member{{Name: "d", Link: "sub"}, {Name: "d/x", Body: []byte("x")}}, "not a directory", false},
		{"hardlink outside", []member{{Name: "h", Link: "/etc/shadow", Hard: true}}, "hard link", true},
		{"hardlink up", []member{{Name: "h", Link: "../x", Hard: true}}, "hard link", true},
		{"duplicate", []member{{Name: "x", Body: []byte("1")}, {Name: "x", Body: []byte("2")}}, "twice", false},
		{"backslash", []member{{Name: `..\x`, Body: []byte("x")}}, "backslash", false},
	}
	for _, c := range cases {
		for format, build := range formats {
			if c.tarOnly && format != "tar.gz" {
				continue
			}
			t.Run(c.name+"/"+format, func(t *testing.T) {
				outer := t.TempDir()
				a := write(t, build(c.members...))
				dest := filepath.Join(outer, "out")
				err := minerarchive.Unpack(a, dest, minerarchive.DefaultLimits())
				if !errors.Is(err, minerarchive.ErrUnsafe) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("err = %v, want a refusal mentioning %q", err, c.want)
				}
				if _, err := os.Stat(dest); !os.IsNotExist(err) {
					t.Errorf("refused archive left %s behind", dest)
				}
				if ents, _ := os.ReadDir(outer); len(ents) != 0 {
					t.Errorf("refused archive wrote %v next to the destination", ents)
				}
			})
		}
	}
}

func TestUnpackLimits(t *testing.T) {
	for format, build := range formats {
		t.Run(format, func(t *testing.T) {
			big := build(member{Name: "x", Body: bytes.Repeat([]byte{0}, 1<<20)})
			err := minerarchive.Unpack(write(t, big), filepath.Join(t.TempDir(), "o"), minerarchive.Limits{MaxBytes: 1000, MaxFiles: 10})
			if !errors.Is(err, minerarchive.ErrUnsafe) || !strings.Contains(err.Error(), "more than 1000 bytes") {
				t.Errorf("size cap: %v", err)
			}
			many := build(member{Name: "a", Body: []byte("1")}, member{Name: "b", Body: []byte("2")}, member{Name: "c", Body: []byte("3")})
			err = minerarchive.Unpack(write(t, many), filepath.Join(t.TempDir(), "o"), minerarchive.Limits{MaxBytes: 1000, MaxFiles: 2})
			if !errors.Is(err, minerarchive.ErrUnsafe) || !strings.Contains(err.Error(), "more than 2 members") {
				t.Errorf("count cap: %v", err)
			}
		})
	}
	if _, err := minerarchive.FindBinary(write(t, []byte("plain text")), "", "x", minerarchive.DefaultLimits()); !errors.Is(err, minerarchive.ErrUnsafe) {
		t.Errorf("not an archive: %v", err)
	}
}

// FuzzUnpack: whatever the bytes, Unpack returns (no panic) and writes
// nothing outside its destination.
func FuzzUnpack(f *testing.F) {
	f.Add(archivetest.TarGz(member{Name: "a/b", Body: []byte("x"), Mode: 0o755}, member{Name: "a/l", Link: "b"}))
	f.Add(archivetest.Zip(member{Name: "a/b", Body: []byte("x")}, member{Name: "l", Link: "../x"}))
	f.Add(archivetest.TarGz(member{Name: "../x", Body: []byte("x")}))
	f.Add(archivetest.TarGz(member{Name: "h", Link: "a", Hard: true}))
	f.Fuzz(func(t *testing.T, data []byte) {
		outer := t.TempDir()
		a := filepath.Join(outer, "archive")
		if err := os.WriteFile(a, data, 0o600); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(outer, "out")
		_ = minerarchive.Unpack(a, dest, minerarchive.Limits{MaxBytes: 1 << 20, MaxFiles: 100})
		ents, err := os.ReadDir(outer)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() != "archive" && e.Name() != "out" {
				t.Fatalf("unpack wrote %s outside its destination", e.Name())
			}
		}
		_ = filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.Type()&os.ModeSymlink == 0 {
				return nil
			}
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return nil // dangling, harmless
			}
			if rel, _ := filepath.Rel(dest, real); rel == ".." || strings.HasPrefix(rel, "../") {
				t.Fatalf("link %s resolves outside to %s", p, real)
			}
			return nil
		})
	})
}
