package amdgpu

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/quarryfleet/quarry/pkg/telemetry"
)

func update(t *testing.T, root string) []telemetry.GPU {
	t.Helper()
	s := &telemetry.Sample{}
	if err := New(telemetry.Config{SysRoot: root}).Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s.GPUs
}

func TestFixtureCards(t *testing.T) {
	gpus := update(t, "testdata/sys")
	if len(gpus) != 2 {
		t.Fatalf("got %d GPUs, want 2 (intel and connector skipped)", len(gpus))
	}
	a, b := gpus[0], gpus[1]
	checks := []struct {
		name      string
		got, want any
	}{
		{"bus", a.PCIBusID, "0000:03:00.0"},
		{"uuid", a.UUID, "AMD-5a1c9e2b7d3f4c01"},
		{"edge", *a.TempC, 61.0},
		{"junction", *a.HotspotTempC, 78.0},
		{"mem", *a.MemTempC, 70.0},
		{"fan%", a.FanPercent[0], 50},
		{"rpm", a.FanRPM[0], 1650},
		{"power", *a.PowerW, 231.0},
		{"cap", *a.PowerLimitW, 255.0},
		{"capmax", *a.PowerMaxW, 293.0},
		{"sclk", *a.SMClockMHz, 1340},
		{"sclkmax", *a.SMClockMaxMHz, 2250},
		{"mclk", *a.MemClockMHz, 1000},
		{"vram", *a.MemUsed, uint64(2147483648)},
		{"busy", *a.UtilPercent, 73},
		{"gen", *a.PCIeGen, 4},
		{"b index", b.Index, 1},
		{"b power from power1_input", *b.PowerW, 118.0},
		{"b uuid from bus", b.UUID, "AMD-PCI-0000:06:00.0"},
		{"b no junction", b.HotspotTempC == nil, true},
		{"b no pwm", b.FanPercent == nil, true},
		{"b no vram", b.MemTotal == nil, true},
		{"b gen3 x1", *b.PCIeGen*100 + *b.PCIeWidth, 301},
		{"b sclk", *b.SMClockMHz, 1366},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestNoDRM(t *testing.T) {
	if g := update(t, t.TempDir()); len(g) != 0 {
		t.Fatalf("got %v", g)
	}
}

func TestGarbageFilesLeaveFieldsAbsent(t *testing.T) {
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS("testdata/sys")); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(root, "class/drm/card0/device")
	for f, v := range map[string]string{
		"gpu_busy_percent":         "busy\n",
		"pp_dpm_sclk":              "garbage\n\x00\x01",
		"hwmon/hwmon3/temp1_input": "",
		"hwmon/hwmon3/pwm1_max":    "0\n",
	} {
		if err := os.WriteFile(filepath.Join(dev, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := update(t, root)[0]
	if a.UtilPercent != nil || a.SMClockMHz != nil || a.TempC != nil || a.FanPercent != nil {
		t.Errorf("garbage read as values: util=%v sclk=%v temp=%v fan=%v", a.UtilPercent, a.SMClockMHz, a.TempC, a.FanPercent)
	}
	if a.HotspotTempC == nil || a.MemClockMHz == nil {
		t.Error("good fields lost alongside bad ones")
	}
}

func FuzzDPM(f *testing.F) {
	f.Add("0: 500Mhz \n1: 1340Mhz *\n")
	f.Fuzz(func(t *testing.T, s string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "pp_dpm_sclk"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		cur, mx := dpm(dir, "pp_dpm_sclk")
		if cur != nil && (mx == nil || *cur > *mx) {
			t.Fatalf("current %d above max %v", *cur, mx)
		}
	})
}
