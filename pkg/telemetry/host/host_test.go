package host

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/telemetry"
)

// copyTree copies testdata/<dir> so tests can advance counters in place.
func copyTree(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	err := os.CopyFS(dst, os.DirFS(filepath.Join("testdata", dir)))
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestFixtureHost(t *testing.T) {
	proc, sys, data := copyTree(t, "proc"), copyTree(t, "sys"), t.TempDir()
	c, err := New(context.Background(), telemetry.Config{ProcRoot: proc, SysRoot: sys, DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1760000000, 0)
	c.now = func() time.Time { return clock }

	s := &telemetry.Sample{}
	if err := c.Update(context.Background(), s); err != nil {
		t.Logf("first update: %v", err)
	}
	h := s.Host
	if h == nil {
		t.Fatal("no host")
	}
	if h.CPUModel != "AMD Ryzen 5 3600 6-Core Processor" {
		t.Errorf("cpu model %q", h.CPUModel)
	}
	if h.CPUPercent != nil || h.NetTotal != nil {
		t.Error("rates reported on the first sample, which has no interval")
	}
	if h.Memory == nil || h.Memory.Total != 32768000*1024 || h.Memory.Used != (32768000-16384000)*1024 {
		t.Errorf("memory %+v", h.Memory)
	}
	if h.Swap == nil || h.Swap.Used != 1048576*1024 {
		t.Errorf("swap %+v", h.Swap)
	}
	if h.Load == nil || h.Load.Load1 != 1.5 || h.Load.Load15 != 0.25 {
		t.Errorf("load %+v", h.Load)
	}
	if len(h.Disks) != 2 || h.Disks[1].Label != "data" || h.Disks[1].Total == 0 {
		t.Errorf("disks %+v", h.Disks)
	}
	if len(h.Temperatures) != 1 || h.Temperatures[0].Celsius != 47.25 {
		t.Errorf("temperatures %+v", h.Temperatures)
	}

	for _, f := range []string{"stat", "net/dev"} {
		if err := os.Rename(filepath.Join(proc, f+".next"), filepath.Join(proc, f)); err != nil {
			t.Fatal(err)
		}
	}
	clock = clock.Add(10 * time.Second)
	s = &telemetry.Sample{}
	if err := c.Update(context.Background(), s); err != nil {
		t.Logf("second update: %v", err)
	}
	h = s.Host
	// cpu0: busy +500 of +500; cpu1: busy +300 of +500; all: 800 of 1000.
	if h.CPUPercent == nil || *h.CPUPercent != 80 {
		t.Errorf("cpu%% = %v, want 80", h.CPUPercent)
	}
	if len(h.CorePercent) != 2 || h.CorePercent[0] != 100 || h.CorePercent[1] != 60 {
		t.Errorf("core%% = %v", h.CorePercent)
	}
	// eth0 +10 MB rx, +2 MB tx in 10 s; lo skipped; wlan0 counter reset skipped.
	if len(h.Net) != 1 || h.Net[0].Interface != "eth0" || h.Net[0].RxBytesPS != 1e6 || h.Net[0].TxBytesPS != 2e5 {
		t.Errorf("net %+v", h.Net)
	}
	if h.NetTotal == nil || h.NetTotal.RxBytesPS != 1e6 {
		t.Errorf("net total %+v", h.NetTotal)
	}
}

func TestLiveHost(t *testing.T) {
	c, err := New(context.Background(), telemetry.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		s := &telemetry.Sample{}
		if err := c.Update(context.Background(), s); err != nil {
			t.Logf("update: %v", err)
		}
		if s.Host == nil || s.Host.Memory == nil || s.Host.Memory.Total == 0 || s.Host.CPUCores == 0 {
			t.Fatalf("host %+v", s.Host)
		}
	}
}

func TestMissingProcIsAnErrorNotAPanic(t *testing.T) {
	c, err := New(context.Background(), telemetry.Config{ProcRoot: t.TempDir(), SysRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s := &telemetry.Sample{}
	if err := c.Update(context.Background(), s); err == nil {
		t.Fatal("no error from an empty /proc")
	}
	if s.Host == nil || s.Host.Memory != nil {
		t.Errorf("host %+v", s.Host)
	}
}
