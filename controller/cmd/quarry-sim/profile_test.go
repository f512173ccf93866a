package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// -cpu-profile writes a gzip-compressed pprof profile of the window once
// its stop function runs, and a second stop changes nothing; without a
// path nothing is profiled, and a profile already running is refused.
func TestCPUProfileOfTheWindow(t *testing.T) {
	stop, err := startCPUProfile("")
	if err != nil {
		t.Fatal(err)
	}
	stop()

	path := filepath.Join(t.TempDir(), "sim-cpu.pprof")
	stop, err = startCPUProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := startCPUProfile(filepath.Join(t.TempDir(), "second.pprof")); err == nil {
		t.Error("a second profile started while one was running")
	}
	stop()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Fatalf("profile of %d bytes does not start as gzip: %x", len(b), b[:min(len(b), 4)])
	}
	stop()
	if again, err := os.ReadFile(path); err != nil || !bytes.Equal(again, b) {
		t.Errorf("a second stop changed the profile (%v)", err)
	}

	if _, err := startCPUProfile(filepath.Join(t.TempDir(), "missing", "dir", "x.pprof")); err == nil {
		t.Error("a profile into a missing directory started")
	}
}
