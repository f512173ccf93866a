// Package fleetbench builds large fleet stores for benchmarks: a real bbolt
// file written through the fleet package's own enrolment and ingest paths,
// so what a benchmark opens is what a controller with that many rigs holds.
package fleetbench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// GPUsPerRig is how many GPUs each built rig reports.
const GPUsPerRig = 6

// RigsEnv names the fleet size a benchmark builds, when set.
const RigsEnv = "QUARRY_BENCH_FLEET_RIGS"

// Rigs is the fleet size the benchmarks build: 100,000 unless RigsEnv
// says otherwise.
func Rigs() (int, error) {
	v := os.Getenv(RigsEnv)
	if v == "" {
		return 100_000, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive number", RigsEnv, v)
	}
	return n, nil
}

// RigName is the name of the i-th built rig.
func RigName(i int) string { return fmt.Sprintf("bench-%06d", i) }

// Build writes a fleet store at path with n enrolled rigs, each with one
// committed report of GPUsPerRig GPUs and a running miner, as its latest
// state and history. The file is written without fsync (a benchmark
// fixture needs no durability), and reports go through Fleet.Ingest, which
// commits them in batches.
func Build(ctx context.Context, path string, n int) error {
	db, err := store.Open(path, fleet.Buckets...)
	if err != nil {
		return err
	}
	defer db.Close()
	db.NoSync = true
	f, err := fleet.Open(store.NewDB(db), fleet.Options{})
	if err != nil {
		return err
	}
	defer f.Close()
	for i := range n {
		name := RigName(i)
		if err := f.RegisterRig(fmt.Sprintf("%032x", i+1), name, name); err != nil {
			return fmt.Errorf("register rig %d: %w", i, err)
		}
	}
	now := time.Now().UnixNano()
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		if err := f.Ingest(ctx, fmt.Sprintf("%032x", i+1), Report(i, now), func(uint64) { wg.Done() }); err != nil {
			return fmt.Errorf("ingest report of rig %d: %w", i, err)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Report is a realistic report of the i-th rig: host figures, GPUsPerRig
// GPUs with temperatures, power, clocks and fans, and one running miner.
func Report(i int, now int64) *quarryv1.Report {
	f := func(v float64) *float64 { return &v }
	u := func(v uint32) *uint32 { return &v }
	rep := &quarryv1.Report{
		Seq:          1,
		TimeUnixNano: now,
		Host: &quarryv1.HostStats{CpuPercent: 7.5, MemoryUsedBytes: 3 << 30, MemoryTotalBytes: 16 << 30,
			Load1: 0.8, Load5: 0.7, Load15: 0.6, UptimeSeconds: 86400, DiskUsedBytes: 20 << 30, DiskTotalBytes: 120 << 30},
	}
	miner := &quarryv1.MinerStats{Miner: "t-rex", Version: "0.26.8", Algorithm: "kawpow", Coin: "RVN",
		Pool: "stratum+tcp://rvn.pool.example:3333", State: "running", Accepted: 1200, Rejected: 3, UptimeSeconds: 86000}
	for k := range GPUsPerRig {
		bus := fmt.Sprintf("00000000:%02X:00.0", k+1)
		hr := 30e6 + float64((i+k)%7)*1e5
		rep.Gpus = append(rep.Gpus, &quarryv1.GPUStats{
			Index: uint32(k), Vendor: "nvidia", Name: "NVIDIA GeForce RTX 3070", BusId: bus,
			Uuid:         fmt.Sprintf("GPU-%08x-%04x", i, k),
			TemperatureC: f(60 + float64((i+k)%10)), MemoryTemperatureC: f(70), FanPercent: []float64{55},
			PowerW: f(120 + float64(k)), PowerLimitW: f(130), SmClockMhz: u(1500), MemoryClockMhz: u(7000),
			UtilizationPercent: f(100), DriverVersion: "550.54.14",
		})
		miner.Gpus = append(miner.Gpus, &quarryv1.MinerGPU{BusId: bus, Hashrate: hr})
		miner.Hashrate += hr
	}
	rep.Miners = []*quarryv1.MinerStats{miner}
	return rep
}
