//go:build linux && cgo

package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/telemetry"
	"github.com/quarryfleet/quarry/pkg/telemetry/host"
	"github.com/quarryfleet/quarry/pkg/telemetry/nvidia"
	"github.com/quarryfleet/quarry/pkg/telemetry/nvidia/nvmltest"
)

func rigSampler(b *testing.B) *telemetry.Sampler {
	rec, err := nvmltest.Load("h100_sxm5")
	if err != nil {
		b.Fatal(err)
	}
	srv, _ := nvmltest.DGXH100(rec)
	h, err := host.New(context.Background(), telemetry.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	return telemetry.NewSampler(nil, map[string]telemetry.Collector{
		"host": h, "nvidia": nvidia.New(srv, telemetry.Config{}),
	})
}

// BenchmarkSample is one full sample: the real host plus eight mock GPUs.
func BenchmarkSample(b *testing.B) {
	s := rigSampler(b)
	defer s.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sample(ctx); err != nil {
			b.Logf("sample: %v", err)
		}
	}
}

// cpuTicks reads utime+stime of pid from /proc/<pid>/stat.
func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// BenchmarkNodeExporterScrape measures node_exporter's own CPU time per
// /metrics scrape of this host, for comparison with BenchmarkSample's
// ns/op. Set QUARRY_NODE_EXPORTER to the binary (go install
// github.com/prometheus/node_exporter@latest) to run it.
func BenchmarkNodeExporterScrape(b *testing.B) {
	bin := os.Getenv("QUARRY_NODE_EXPORTER")
	if bin == "" {
		b.Skip("QUARRY_NODE_EXPORTER not set")
	}
	addr := "127.0.0.1:19100"
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--log.level=error")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	url := "http://" + addr + "/metrics"
	scrape := func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); scrape() != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("node_exporter did not come up")
		}
	}
	_ = scrape() // first scrape initialises collectors
	start := cpuTicks(b, cmd.Process.Pid)
	n := 0
	for b.Loop() {
		if err := scrape(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	ticks := cpuTicks(b, cmd.Process.Pid) - start
	const hz = 100 // USER_HZ on Linux
	b.ReportMetric(float64(ticks)*1e9/hz/float64(n), "exporter-cpu-ns/scrape")
}
