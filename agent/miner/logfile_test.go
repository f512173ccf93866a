package miner

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRotatingLog(t *testing.T) {
	tests := []struct {
		name      string
		max       int64
		files     int
		writes    []string
		wantTail  []string // Tail(3)
		wantLines []string // seen by the hook
		wantFiles int
	}{
		{
			name: "no rotation", max: 100, files: 3,
			writes:   []string{"a\nb\n", "c\n"},
			wantTail: []string{"a", "b", "c"}, wantLines: []string{"a", "b", "c"}, wantFiles: 1,
		},
		{
			name: "line split across writes", max: 100, files: 3,
			writes:   []string{"hel", "lo\r\nwor", "ld\n"},
			wantTail: []string{"hello\r", "world"}, wantLines: []string{"hello", "world"}, wantFiles: 1,
		},
		{
			name: "rotates and drops the oldest", max: 4, files: 2,
			writes:   []string{"1\n2\n", "3\n4\n", "5\n6\n"},
			wantTail: []string{"4", "5", "6"}, wantLines: []string{"1", "2", "3", "4", "5", "6"}, wantFiles: 2,
		},
		{
			name: "single file truncates", max: 4, files: 1,
			writes:   []string{"1\n2\n", "3\n"},
			wantTail: []string{"3"}, wantLines: []string{"1", "2", "3"}, wantFiles: 1,
		},
		{
			name: "write larger than a file", max: 4, files: 3,
			// 13 a's: the first 4 rotate out, the rest span three files.
			writes:   []string{"aaaaaaaaaaaaa\n"},
			wantTail: []string{"aaaa", "aaaa", "a"}, wantLines: []string{"aaaaaaaaaaaaa"}, wantFiles: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen []string
			path := filepath.Join(t.TempDir(), "miner.log")
			l, err := OpenRotatingLog(path, tt.max, tt.files, func(s string) { seen = append(seen, s) })
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			for _, w := range tt.writes {
				if n, err := l.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			tail, err := l.Tail(3)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tail, tt.wantTail) {
				t.Errorf("Tail = %q, want %q", tail, tt.wantTail)
			}
			if !slices.Equal(seen, tt.wantLines) {
				t.Errorf("hook saw %q, want %q", seen, tt.wantLines)
			}
			files := l.Files()
			if len(files) != tt.wantFiles {
				t.Errorf("files = %v, want %d", files, tt.wantFiles)
			}
			for _, f := range files {
				st, _ := os.Stat(f)
				if st.Size() > tt.max {
					t.Errorf("%s is %d bytes > %d", f, st.Size(), tt.max)
				}
			}
		})
	}
}

func TestRotatingLogBoundsHookLine(t *testing.T) {
	var seen []string
	l, err := OpenRotatingLog(filepath.Join(t.TempDir(), "m.log"), 1<<20, 2, func(s string) { seen = append(seen, s) })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Write([]byte(strings.Repeat("z", 3*maxLineHook)))
	l.Write([]byte("\nok\n"))
	if len(seen) != 2 || len(seen[0]) != maxLineHook || seen[1] != "ok" {
		t.Errorf("hook got %d lines, first %d bytes", len(seen), len(seen[0]))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte("late\n")); err == nil {
		t.Error("write after Close succeeded")
	}
	if _, err := OpenRotatingLog("/x", 0, 1, nil); err == nil {
		t.Error("zero size accepted")
	}
}
