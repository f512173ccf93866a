package flightsheet

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveMinerPath(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "miners")
	outside := filepath.Join(root, "elsewhere")
	for _, d := range []string{dir, outside, filepath.Join(dir, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) {
		if err := os.WriteFile(p, []byte("binary"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "xmrig"))
	write(filepath.Join(dir, "sub", "t-rex"))
	write(filepath.Join(dir, "python3"))
	write(filepath.Join(outside, "miner"))
	link := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	link(filepath.Join(outside, "miner"), "escape")
	link("xmrig", "alias")
	link("/bin/sh", "innocent")
	link(filepath.Join(dir, "python3"), "renamed")
	// A miners dir reached through a symlink still works.
	dirLink := filepath.Join(root, "miners-link")
	if err := os.Symlink(dir, dirLink); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name, dir, path, want string // want "" means allowed
	}{
		{"binary in the dir", dir, filepath.Join(dir, "xmrig"), ""},
		{"binary in a subdir", dir, filepath.Join(dir, "sub", "t-rex"), ""},
		{"symlink within the dir", dir, filepath.Join(dir, "alias"), ""},
		{"dir given through a symlink", dirLink, filepath.Join(dirLink, "xmrig"), ""},
		{"outside the dir", dir, filepath.Join(outside, "miner"), "outside the miners directory"},
		{"symlink pointing outside", dir, filepath.Join(dir, "escape"), "outside the miners directory"},
		{"dot-dot out of the dir", dir, filepath.Join(dir, "..", "elsewhere", "miner"), "outside the miners directory"},
		{"symlink to a shell", dir, filepath.Join(dir, "innocent"), "outside the miners directory"},
		{"interpreter inside the dir", dir, filepath.Join(dir, "python3"), "shell or interpreter"},
		{"symlink to an interpreter inside", dir, filepath.Join(dir, "renamed"), "shell or interpreter"},
		{"shell by path", dir, "/bin/sh", "shell or interpreter"},
		{"bash", dir, "/usr/bin/bash", "shell or interpreter"},
		{"env", dir, "/usr/bin/env", "shell or interpreter"},
		{"the dir itself", dir, dir, "outside the miners directory"},
		{"a directory inside", dir, filepath.Join(dir, "sub"), "not a regular file"},
		{"relative", dir, "xmrig", "not an absolute path"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveMinerPath(tt.dir, tt.path)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !filepath.IsAbs(got) {
					t.Errorf("resolved %q is not absolute", got)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrMinerPath) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ResolveMinerPath(%s) = %q, %v; want a refusal containing %q", tt.path, got, err, tt.want)
			}
		})
	}
	// A binary not installed yet is an error, not a refusal.
	if _, err := ResolveMinerPath(dir, filepath.Join(dir, "missing")); err == nil || errors.Is(err, ErrMinerPath) {
		t.Errorf("missing binary: %v, want a plain error", err)
	}
}

func TestValidateRefusesInterpreters(t *testing.T) {
	for _, p := range []string{"/bin/sh", "/usr/bin/python3.12", "/usr/bin/perl", "/usr/bin/node", "/bin/busybox", "/usr/bin/env"} {
		fs := &FlightSheet{Name: "x", Coin: "c", Algorithm: "a", Miner: Miner{Name: "xmrig", Path: p, SHA256: strings.Repeat("a", 64)},
			Pools: []Pool{{URL: "stratum+tcp://pool.example.org:3333", User: "w.r"}}}
		if err := fs.Validate([]string{"xmrig"}); err == nil || !strings.Contains(err.Error(), "miner.path") || !strings.Contains(err.Error(), "shell or interpreter") {
			t.Errorf("Validate with miner.path %s = %v", p, err)
		}
	}
}
