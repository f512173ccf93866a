package miner

import (
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkRotatingLogWrite measures the cost the supervisor adds to every
// line a miner prints, rotation and line hook included.
func BenchmarkRotatingLogWrite(b *testing.B) {
	lines := 0
	l, err := OpenRotatingLog(filepath.Join(b.TempDir(), "miner.log"), 1<<20, 3, func(string) { lines++ })
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	line := []byte("[2026-11-29 21:00:00.000]  miner    speed 10s/60s/15m 13321.0 13290.4 n/a H/s max 13400.2 H/s\n")
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Write(line); err != nil {
			b.Fatal(err)
		}
	}
	if lines == 0 {
		b.Fatal("line hook never called")
	}
}

// BenchmarkTail reads the last 100 lines from three full 1 MiB files.
func BenchmarkTail(b *testing.B) {
	l, err := OpenRotatingLog(filepath.Join(b.TempDir(), "miner.log"), 1<<20, 3, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	line := []byte(strings.Repeat("x", 99) + "\n")
	for range 3 * (1 << 20) / len(line) {
		l.Write(line)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := l.Tail(100)
		if err != nil || len(got) != 100 {
			b.Fatal(len(got), err)
		}
	}
}
