// Command quarry-controller runs the fleet's control plane.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"

	"github.com/quarryfleet/quarry/controller/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if dir := os.Getenv("QUARRY_PROFILE_DIR"); dir != "" {
		go profileOnSignal(ctx, dir)
	}
	code := server.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// profileOnSignal serves benchmarks: with QUARRY_PROFILE_DIR set, the first
// SIGUSR1 starts a CPU profile and the second ends it and writes a heap
// profile beside it, so a profile covers exactly the measured window.
func profileOnSignal(ctx context.Context, dir string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	defer signal.Stop(sig)
	var cpu *os.File
	for {
		select {
		case <-ctx.Done():
			if cpu != nil {
				pprof.StopCPUProfile()
				cpu.Close()
			}
			return
		case <-sig:
		}
		if cpu == nil {
			f, err := os.Create(filepath.Join(dir, "controller-cpu.pprof"))
			if err == nil {
				err = pprof.StartCPUProfile(f)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "cpu profile:", err)
				continue
			}
			cpu = f
			continue
		}
		pprof.StopCPUProfile()
		cpu.Close()
		cpu = nil
		if f, err := os.Create(filepath.Join(dir, "controller-heap.pprof")); err == nil {
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				fmt.Fprintln(os.Stderr, "heap profile:", err)
			}
			f.Close()
		}
	}
}
