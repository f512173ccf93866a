// Command rssprobe samples the rig at a fixed interval, as the agent
// will, and prints its resident memory after each sample, to check the
// idle footprint budget (15 MiB).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/quarryfleet/quarry/pkg/telemetry"
	"github.com/quarryfleet/quarry/pkg/telemetry/amdgpu"
	"github.com/quarryfleet/quarry/pkg/telemetry/host"
	"github.com/quarryfleet/quarry/pkg/telemetry/nvidia"
)

func main() {
	interval := flag.Duration("interval", 10*time.Second, "time between samples")
	n := flag.Int("n", 6, "samples to take")
	flag.Parse()
	if err := run(*interval, *n); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(interval time.Duration, n int) error {
	reg := telemetry.NewRegistry()
	for name, f := range map[string]telemetry.Factory{host.Name: host.Factory, nvidia.Name: nvidia.Factory, amdgpu.Name: amdgpu.Factory} {
		if err := reg.Register(name, f); err != nil {
			return err
		}
	}
	s, err := reg.Build(telemetry.Config{Logger: slog.Default(), DataDir: os.TempDir()})
	if err != nil {
		return err
	}
	defer s.Close()
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := range n {
		smp, err := s.Sample(context.Background())
		if err != nil {
			slog.Warn("sample", "err", err)
		}
		fmt.Printf("sample %d gpus=%d %s\n", i, len(smp.GPUs), rss())
		if i < n-1 {
			<-t.C
		}
	}
	return nil
}

func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "rss unknown"
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") || strings.HasPrefix(l, "VmHWM:") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, " ")
}
