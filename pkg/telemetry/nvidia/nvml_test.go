//go:build linux && cgo

package nvidia_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/quarryfleet/quarry/pkg/telemetry"
	"github.com/quarryfleet/quarry/pkg/telemetry/nvidia"
	"github.com/quarryfleet/quarry/pkg/telemetry/nvidia/nvmltest"
)

func load(t testing.TB, name string) nvmltest.Recording {
	t.Helper()
	r, err := nvmltest.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sample(t *testing.T, c telemetry.Collector) *telemetry.Sample {
	t.Helper()
	s := &telemetry.Sample{}
	if err := c.Update(context.Background(), s); err != nil {
		t.Fatalf("Update: %v", err)
	}
	return s
}

type fixedOC map[string]*telemetry.AppliedOC

func (f fixedOC) Applied(uuid string) *telemetry.AppliedOC { return f[uuid] }

func TestDGXH100AllFields(t *testing.T) {
	srv, _ := nvmltest.DGXH100(load(t, "h100_sxm5"))
	uuid0 := srv.Devices[0].(*server.Device).UUID
	oc := fixedOC{uuid0: {Profile: "eth-h100", PowerLimitW: telemetry.Ptr(450)}}
	c := nvidia.New(srv, telemetry.Config{OC: oc})
	defer c.Close()

	s := sample(t, c)
	if len(s.GPUs) != 8 {
		t.Fatalf("got %d GPUs, want 8", len(s.GPUs))
	}
	g := s.GPUs[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"vendor", g.Vendor, telemetry.VendorNVIDIA},
		{"name", g.Name, "NVIDIA H100 80GB HBM3"},
		{"bus", g.PCIBusID, "0000:18:00.0"},
		{"driver", g.Driver, "550.54.15"},
		{"cuda", g.CUDA, "12.4"},
		{"temp", *g.TempC, 31.0},
		{"memtemp", *g.MemTempC, 38.0},
		{"power", *g.PowerW, 71.432},
		{"limit", *g.PowerLimitW, 700.0},
		{"min", *g.PowerMinW, 200.0},
		{"max", *g.PowerMaxW, 700.0},
		{"smmax", *g.SMClockMaxMHz, 1980},
		{"mem", *g.MemClockMHz, 2619},
		{"pstate", *g.PState, 0},
		{"throttle", strings.Join(g.ThrottleReasons, ","), "gpu_idle"},
		{"pcie", *g.PCIeGen*100 + *g.PCIeWidth, 516},
		{"ecc", *g.ECCCorrected, uint64(0)},
		{"memtotal", *g.MemTotal, uint64(80 * 1024 * 1024 * 1024)},
		{"oc", g.Overclock.Profile, "eth-h100"},
		{"fans absent", g.FanPercent == nil, true},
		{"oc only where applied", s.GPUs[1].Overclock == nil, true},
		{"last bus", s.GPUs[7].PCIBusID, "0000:db:00.0"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestNotSupportedFieldsAreAbsent(t *testing.T) {
	srv := dgxa100.New()
	nvmltest.Replay(srv.Devices[0].(*server.Device), load(t, "rtx3090"))
	srv.Devices = srv.Devices[:1]
	c := nvidia.New(srv, telemetry.Config{})
	g := sample(t, c).GPUs[0]
	if g.MemTempC != nil || g.ECCCorrected != nil || g.ECCUncorrected != nil {
		t.Errorf("unsupported fields present: memtemp=%v ecc=%v/%v", g.MemTempC, g.ECCCorrected, g.ECCUncorrected)
	}
	if g.TempC == nil || *g.TempC != 58 || len(g.FanPercent) != 2 || g.FanPercent[1] != 62 {
		t.Errorf("supported fields wrong: temp=%v fans=%v", g.TempC, g.FanPercent)
	}
	if got := strings.Join(g.ThrottleReasons, ","); got != "sw_power_cap" {
		t.Errorf("throttle = %q", got)
	}
	if g.PCIBusID != "0000:0a:00.0" {
		t.Errorf("bus = %q", g.PCIBusID)
	}
}

func TestLostGPUAmongEight(t *testing.T) {
	var logs bytes.Buffer
	srv, states := nvmltest.DGXH100(load(t, "h100_sxm5"))
	c := nvidia.New(srv, telemetry.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	first := sample(t, c)

	states[5].SetLost()
	// Index 6 fails one step earlier: NVML cannot even hand out a handle.
	handle := srv.DeviceGetHandleByIndexFunc
	srv.DeviceGetHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i == 6 {
			return nil, nvml.ERROR_GPU_IS_LOST
		}
		return handle(i)
	}
	for range 2 {
		s := sample(t, c)
		if len(s.GPUs) != 8 {
			t.Fatalf("got %d GPUs, want 8", len(s.GPUs))
		}
		for i, g := range s.GPUs {
			wantLost := i == 5 || i == 6
			if g.Lost != wantLost {
				t.Errorf("gpu %d lost=%v", i, g.Lost)
			}
			if g.UUID != first.GPUs[i].UUID || g.PCIBusID != first.GPUs[i].PCIBusID {
				t.Errorf("gpu %d identity changed: %s %s", i, g.UUID, g.PCIBusID)
			}
			if wantLost && (g.TempC != nil || g.PowerW != nil) {
				t.Errorf("lost gpu %d still has readings", i)
			}
			if !wantLost && g.TempC == nil {
				t.Errorf("gpu %d stopped reporting", i)
			}
		}
	}
	if n := strings.Count(logs.String(), "GPU lost"); n != 2 {
		t.Errorf("lost logged %d times, want once per GPU:\n%s", n, logs.String())
	}
}

func TestInitFailureMeansNoGPUs(t *testing.T) {
	tests := []struct {
		name string
		ret  nvml.Return
	}{
		{"library missing", nvml.ERROR_LIBRARY_NOT_FOUND},
		{"driver not loaded", nvml.ERROR_DRIVER_NOT_LOADED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			lib := &mock.Interface{InitFunc: func() nvml.Return { return tt.ret }}
			c := nvidia.New(lib, telemetry.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			for range 3 {
				if s := sample(t, c); len(s.GPUs) != 0 {
					t.Fatalf("got %d GPUs", len(s.GPUs))
				}
			}
			if c.Available() {
				t.Error("Available() = true")
			}
			if err := c.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if n := strings.Count(logs.String(), "NVML unavailable"); n != 1 {
				t.Errorf("logged %d times, want 1:\n%s", n, logs.String())
			}
		})
	}
}

// TestRealLibrary runs against whatever this machine has: on a box with no
// NVIDIA driver it must report zero GPUs without failing.
func TestRealLibrary(t *testing.T) {
	col, err := nvidia.Factory(telemetry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := col.(*nvidia.Collector)
	defer c.Close()
	s := sample(t, c)
	if !c.Available() && len(s.GPUs) != 0 {
		t.Fatalf("NVML unavailable but %d GPUs reported", len(s.GPUs))
	}
	t.Logf("NVML available=%v gpus=%d", c.Available(), len(s.GPUs))
	if !c.Available() {
		return
	}
	// On a machine with a driver every card answers the fields every
	// NVIDIA board supports, with values in their physical ranges; a field
	// read wrongly (units, the wrong call) shows up here.
	if len(s.GPUs) == 0 {
		t.Fatal("NVML is available but no GPU was reported")
	}
	for _, g := range s.GPUs {
		if g.Lost {
			t.Errorf("GPU %d reported lost on a healthy machine", g.Index)
			continue
		}
		if g.Vendor != telemetry.VendorNVIDIA || g.UUID == "" || g.Name == "" || g.Driver == "" {
			t.Errorf("GPU %d identity incomplete: vendor %q uuid %q name %q driver %q", g.Index, g.Vendor, g.UUID, g.Name, g.Driver)
		}
		if _, err := telemetry.NormalizeBusID(g.PCIBusID); err != nil {
			t.Errorf("GPU %d bus id %q: %v", g.Index, g.PCIBusID, err)
		}
		if g.TempC == nil || *g.TempC < 5 || *g.TempC > 110 {
			t.Errorf("GPU %d temperature %v °C out of range", g.Index, deref(g.TempC))
		}
		if g.PowerW == nil || *g.PowerW <= 0 || *g.PowerW > 1500 {
			t.Errorf("GPU %d power %v W out of range", g.Index, deref(g.PowerW))
		}
		if g.PowerLimitW != nil && (*g.PowerLimitW < 10 || *g.PowerLimitW > 1500) {
			t.Errorf("GPU %d power limit %v W out of range", g.Index, *g.PowerLimitW)
		}
		if g.MemTotal == nil || *g.MemTotal < 1<<30 || g.MemUsed == nil || *g.MemUsed > *g.MemTotal {
			t.Errorf("GPU %d memory used %v of %v bytes implausible", g.Index, deref(g.MemUsed), deref(g.MemTotal))
		}
		if g.SMClockMHz == nil || *g.SMClockMHz <= 0 || *g.SMClockMHz > 5000 {
			t.Errorf("GPU %d SM clock %v MHz out of range", g.Index, deref(g.SMClockMHz))
		}
		if g.UtilPercent == nil || *g.UtilPercent < 0 || *g.UtilPercent > 100 {
			t.Errorf("GPU %d utilisation %v %% out of range", g.Index, deref(g.UtilPercent))
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return "absent"
	}
	return *p
}

func TestThrottleReasons(t *testing.T) {
	tests := []struct {
		mask uint64
		want string
	}{
		{0, ""},
		{1, "gpu_idle"},
		{4 | 64, "sw_power_cap,hw_thermal_slowdown"},
		{1 << 40, "bit_40"},
	}
	for _, tt := range tests {
		if got := strings.Join(nvidia.ThrottleReasons(tt.mask), ","); got != tt.want {
			t.Errorf("ThrottleReasons(%#x) = %q, want %q", tt.mask, got, tt.want)
		}
	}
}
