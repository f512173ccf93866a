package host

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/telemetry"
)

// writeZone writes one powercap zone of a fixture sysfs tree.
func writeZone(t *testing.T, sys, zone, name string, energy, max uint64) {
	t.Helper()
	dir := filepath.Join(sys, "class", "powercap", zone)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{
		"name": name + "\n", "energy_uj": uintText(energy), "max_energy_range_uj": uintText(max),
	} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func uintText(v uint64) string { return strconv.FormatUint(v, 10) + "\n" }

func TestRAPLPackagePower(t *testing.T) {
	const max = 262143328850 // a real max_energy_range_uj
	tests := []struct {
		name       string
		first      map[string]uint64 // package zone -> energy_uj
		second     map[string]uint64
		want       float64
		ok         bool
		unreadable bool
	}{
		{"one package", map[string]uint64{"intel-rapl:0": 1_000_000}, map[string]uint64{"intel-rapl:0": 651_000_000}, 65, true, false},
		{"two packages", map[string]uint64{"intel-rapl:0": 0, "intel-rapl:1": 5}, map[string]uint64{"intel-rapl:0": 400_000_000, "intel-rapl:1": 300_000_005}, 70, true, false},
		{"counter wraps", map[string]uint64{"intel-rapl:0": max - 100_000_000}, map[string]uint64{"intel-rapl:0": 550_000_000}, 65, true, false},
		{"root-only energy_uj", map[string]uint64{"intel-rapl:0": 1}, map[string]uint64{"intel-rapl:0": 2}, 0, false, true},
		{"no RAPL", nil, nil, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := t.TempDir()
			set := func(m map[string]uint64) {
				for z, e := range m {
					writeZone(t, sys, z, "package-"+z[len(z)-1:], e, max)
					// Subzones, MMIO copies and psys must not be added in.
					writeZone(t, sys, z+":0", "core", e*7, max)
					if tt.unreadable {
						if err := os.Chmod(filepath.Join(sys, "class", "powercap", z, "energy_uj"), 0); err != nil {
							t.Fatal(err)
						}
					}
				}
				if m != nil {
					writeZone(t, sys, "intel-rapl-mmio:0", "package-0", 999_999_999, max)
					writeZone(t, sys, "intel-rapl:9", "psys", 123, max)
				}
			}
			if tt.unreadable && os.Geteuid() == 0 {
				t.Skip("root reads a file whatever its mode")
			}
			set(tt.first)
			r := rapl{root: sys}
			t0 := time.Unix(1760000000, 0)
			if _, ok := r.power(t0); ok {
				t.Fatal("power on the first sample, which has no interval")
			}
			set(tt.second)
			got, ok := r.power(t0.Add(10 * time.Second))
			if ok != tt.ok || math.Abs(got-tt.want) > 1e-9 {
				t.Fatalf("power = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// The host collector reports RAPL power from its sysfs root.
func TestHostReportsRAPL(t *testing.T) {
	proc, sys := copyTree(t, "proc"), copyTree(t, "sys")
	writeZone(t, sys, "intel-rapl:0", "package-0", 1_000_000, 262143328850)
	c, err := New(context.Background(), telemetry.Config{ProcRoot: proc, SysRoot: sys, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1760000000, 0)
	c.now = func() time.Time { return clock }
	s := &telemetry.Sample{}
	_ = c.Update(context.Background(), s)
	if s.Host.CPUPowerW != nil {
		t.Fatalf("CPU power %v on the first sample", *s.Host.CPUPowerW)
	}
	writeZone(t, sys, "intel-rapl:0", "package-0", 451_000_000, 262143328850)
	clock = clock.Add(5 * time.Second)
	s = &telemetry.Sample{}
	_ = c.Update(context.Background(), s)
	if s.Host.CPUPowerW == nil || *s.Host.CPUPowerW != 90 || s.Host.CPUPowerSource != "rapl" {
		t.Fatalf("CPU power %v from %q, want 90 W from rapl", s.Host.CPUPowerW, s.Host.CPUPowerSource)
	}
}
