package fleet_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/fleet/fleetbench"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// BenchmarkOpen loads a store of fleetbench rigs (100,000 unless
// QUARRY_BENCH_FLEET_RIGS says otherwise), as a controller's start does.
// Building the store takes minutes; QUARRY_BENCH_FLEET_DB names a file to
// keep it in and reuse, when it already holds that many rigs. live-B/rig
// is the heap the loaded fleet holds, after a collection, beyond what was
// live before it opened.
func BenchmarkOpen(b *testing.B) {
	n, err := fleetbench.Rigs()
	if err != nil {
		b.Fatal(err)
	}
	path := os.Getenv("QUARRY_BENCH_FLEET_DB")
	if path == "" {
		path = filepath.Join(b.TempDir(), "fleet.db")
	}
	if rigsIn(b, path) != n {
		os.Remove(path)
		if err := fleetbench.Build(context.Background(), path, n); err != nil {
			b.Fatal(err)
		}
	}
	bdb, err := store.Open(path, fleet.Buckets...)
	if err != nil {
		b.Fatal(err)
	}
	defer bdb.Close()
	db := store.NewDB(bdb)

	var before, after runtime.MemStats
	var live uint64
	var cpu time.Duration
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&before)
		cpu0 := processCPU(b)
		b.StartTimer()
		f, err := fleet.Open(db, fleet.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += processCPU(b) - cpu0
		runtime.GC()
		runtime.ReadMemStats(&after)
		live = after.HeapAlloc - before.HeapAlloc
		got := 0
		f.EachRig(func(*quarryv1.Rig) { got++ })
		if got != n {
			b.Fatalf("opened %d rigs, want %d", got, n)
		}
		f.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(live)/float64(n), "live-B/rig")
	// On a shared machine the CPU time Open took, on all threads, varies
	// less than its wall time.
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rigsIn counts the rigs in the store at path, 0 when there is none.
func rigsIn(b *testing.B, path string) int {
	b.Helper()
	if _, err := os.Stat(path); err != nil {
		return 0
	}
	bdb, err := store.Open(path, fleet.Buckets...)
	if err != nil {
		b.Fatal(err)
	}
	defer bdb.Close()
	n := 0
	if err := store.NewDB(bdb).View(func(tx *store.Tx) error {
		n = tx.Bucket([]byte("rigs")).Stats().KeyN
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return n
}
