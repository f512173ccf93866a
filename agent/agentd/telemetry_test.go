package agentd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/quarryfleet/quarry/pkg/telemetry"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// grpc's and net/http's background goroutines end shortly after
		// their owners close.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// memberlist's last probe can outlive Shutdown by up to one probe
		// timeout; it holds no resources and ends on its own.
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
		// serf.Create starts its internal query handler before it creates
		// memberlist and leaves it running when that fails (the gossip port
		// is taken, here by another package's test): a goroutine of the
		// library's, which the node that failed to start never owned.
		goleak.IgnoreTopFunction("github.com/hashicorp/serf/serf.(*serfQueries).stream"),
	)
}

var ptr = telemetry.Ptr[float64]

func fullGPU() telemetry.GPU {
	i := telemetry.Ptr[int]
	u := telemetry.Ptr[uint64]
	return telemetry.GPU{
		Vendor: telemetry.VendorNVIDIA, Index: 1, UUID: "GPU-1", Name: "NVIDIA GeForce RTX 3090",
		PCIBusID: "0000:0a:00.0", Driver: "550.54", CUDA: "12.4",
		TempC: ptr(61), MemTempC: ptr(80), HotspotTempC: ptr(72),
		FanPercent: []int{55, 60}, FanRPM: []int{1800},
		PowerW: ptr(281.5), PowerLimitW: ptr(300), PowerDefaultW: ptr(350), PowerMinW: ptr(100), PowerMaxW: ptr(400),
		SMClockMHz: i(1500), SMClockMaxMHz: i(2100), MemClockMHz: i(9251), MemClockMaxMHz: i(9751),
		UtilPercent: i(99), MemUtilPercent: i(87), MemUsed: u(5 << 30), MemTotal: u(24 << 30),
		PState: i(2), ThrottleReasons: []string{"sw_power_cap"}, PCIeGen: i(4), PCIeWidth: i(16),
		ECCCorrected: u(3), ECCUncorrected: u(0),
		Overclock: &telemetry.AppliedOC{Profile: "eth-3090"},
	}
}

// setFields lists the populated fields of m by name.
func setFields(m proto.Message) map[string]bool {
	out := map[string]bool{}
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		out[string(fd.Name())] = true
		return true
	})
	return out
}

func TestGPUConversion(t *testing.T) {
	full := fullGPU()
	sparse := telemetry.GPU{Vendor: telemetry.VendorAMD, Index: 0, Name: "Radeon RX 6800", PCIBusID: "0000:03:00.0", TempC: ptr(55)}
	lost := fullGPU()
	lost.Lost = true
	neg := telemetry.GPU{Vendor: telemetry.VendorAMD, PCIeGen: telemetry.Ptr(-1), FanRPM: []int{-5}}

	tests := []struct {
		name      string
		in        telemetry.GPU
		wantSet   []string
		wantUnset []string
		check     func(t *testing.T, g *quarryv1.GPUStats)
	}{
		{
			name: "every field present",
			in:   full,
			// index 1 is set; lost false is proto3's default and so unset.
			wantSet:   allGPUFieldsExcept("lost"),
			wantUnset: []string{"lost"},
			check: func(t *testing.T, g *quarryv1.GPUStats) {
				if g.GetPowerLimitW() != 300 || g.GetSmClockMaxMhz() != 2100 || g.GetPerformanceState() != 2 ||
					g.GetMemoryUtilizationPercent() != 87 || g.GetAppliedProfile() != "eth-3090" || g.GetHotspotTemperatureC() != 72 ||
					len(g.FanPercent) != 2 || g.FanPercent[1] != 60 || g.FanRpm[0] != 1800 || g.GetDriverVersion() != "550.54" {
					t.Errorf("values: %v", g)
				}
			},
		},
		{
			name:      "absent figures stay unset, not zero",
			in:        sparse,
			wantSet:   []string{"vendor", "name", "bus_id", "temperature_c"},
			wantUnset: allGPUFieldsExcept("vendor", "name", "bus_id", "temperature_c"),
		},
		{
			name:      "lost GPU keeps identity only",
			in:        lost,
			wantSet:   []string{"index", "vendor", "uuid", "name", "bus_id", "driver_version", "lost"},
			wantUnset: []string{"temperature_c", "power_w", "fan_percent", "applied_profile", "memory_total_bytes", "sm_clock_mhz"},
		},
		{
			name:      "negative readings are dropped, not wrapped",
			in:        neg,
			wantUnset: []string{"pcie_generation"},
			check: func(t *testing.T, g *quarryv1.GPUStats) {
				if len(g.FanRpm) != 1 || g.FanRpm[0] != 0 {
					t.Errorf("fan_rpm = %v, want [0]", g.FanRpm)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ReportFromSample(&telemetry.Sample{GPUs: []telemetry.GPU{tt.in}})
			if len(r.Gpus) != 1 {
				t.Fatalf("gpus = %d", len(r.Gpus))
			}
			g := r.Gpus[0]
			set := setFields(g)
			for _, f := range tt.wantSet {
				if !set[f] {
					t.Errorf("%s unset", f)
				}
			}
			for _, f := range tt.wantUnset {
				if set[f] {
					t.Errorf("%s set, want unset", f)
				}
			}
			if tt.check != nil {
				tt.check(t, g)
			}
			// Absent stays absent on the wire too.
			b, err := proto.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var back quarryv1.Report
			if err := proto.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&back, r) {
				t.Errorf("round trip changed the report")
			}
		})
	}
}

// allGPUFieldsExcept names every GPUStats field but the given ones, so a
// field added to the proto and not converted fails the full-GPU case.
func allGPUFieldsExcept(skip ...string) []string {
	fields := (&quarryv1.GPUStats{}).ProtoReflect().Descriptor().Fields()
	var out []string
outer:
	for i := range fields.Len() {
		n := string(fields.Get(i).Name())
		for _, s := range skip {
			if n == s {
				continue outer
			}
		}
		out = append(out, n)
	}
	return out
}

func TestHostConversion(t *testing.T) {
	tests := []struct {
		name string
		in   *telemetry.Host
		want *quarryv1.HostStats
	}{
		{
			name: "full",
			in: &telemetry.Host{
				Uptime: 90 * time.Minute, CPUPercent: ptr(42.5), CorePercent: []float64{40, 45},
				Load:   &telemetry.LoadAvg{Load1: 1, Load5: 2, Load15: 3},
				Memory: &telemetry.Memory{Total: 16 << 30, Used: 4 << 30}, Swap: &telemetry.Memory{Total: 2 << 30, Used: 1 << 20},
				Disks:        []telemetry.DiskUsage{{Label: "data", Path: "/var/lib/quarry", Total: 100, Used: 10}, {Label: "root", Path: "/", Total: 500, Used: 50}},
				NetTotal:     &telemetry.NetRate{Interface: "total", RxBytesPS: 1000, TxBytesPS: 250},
				Temperatures: []telemetry.TempSensor{{Name: "k10temp_tctl", Celsius: 48}},
			},
			want: &quarryv1.HostStats{
				UptimeSeconds: 5400, CpuPercent: 42.5, CpuCorePercent: []float64{40, 45}, Load1: 1, Load5: 2, Load15: 3,
				MemoryTotalBytes: 16 << 30, MemoryUsedBytes: 4 << 30, SwapTotalBytes: 2 << 30, SwapUsedBytes: 1 << 20,
				DiskTotalBytes: 500, DiskUsedBytes: 50, NetRxBytesPerSecond: 1000, NetTxBytesPerSecond: 250,
				Sensors: []*quarryv1.Sensor{{Name: "k10temp_tctl", Celsius: 48}},
			},
		},
		{
			name: "first sample: no rates, data disk only",
			in:   &telemetry.Host{Disks: []telemetry.DiskUsage{{Label: "data", Total: 100, Used: 10}}},
			want: &quarryv1.HostStats{DiskTotalBytes: 100, DiskUsedBytes: 10},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ReportFromSample(&telemetry.Sample{Host: tt.in}).Host
			if !proto.Equal(got, tt.want) {
				t.Errorf("got  %v\nwant %v", protojson.Format(got), protojson.Format(tt.want))
			}
		})
	}
}

func TestReportAndInventoryFromEmptySample(t *testing.T) {
	if r := ReportFromSample(nil); r.Host != nil || len(r.Gpus) != 0 {
		t.Errorf("nil sample: %v", r)
	}
	when := time.Unix(1700000000, 5)
	if r := ReportFromSample(&telemetry.Sample{Time: when}); r.TimeUnixNano != when.UnixNano() || r.Host != nil {
		t.Errorf("empty sample: %v", r)
	}
	if inv := InventoryFromSample(nil); inv.Os == "" || inv.CpuCores == 0 {
		t.Errorf("nil sample inventory lacks runtime facts: %v", inv)
	}
}

func TestInventoryFromSample(t *testing.T) {
	s := &telemetry.Sample{
		Host: &telemetry.Host{Platform: "debian 12.5", Kernel: "6.1.0", CPUModel: "AMD Ryzen 5 5600", CPUCores: 12, Memory: &telemetry.Memory{Total: 16 << 30}},
		GPUs: []telemetry.GPU{fullGPU(), {Vendor: telemetry.VendorNVIDIA, Index: 2, UUID: "GPU-2", Lost: true}},
	}
	inv := InventoryFromSample(s)
	if inv.Os != "debian 12.5" || inv.Kernel != "6.1.0" || inv.CpuModel != "AMD Ryzen 5 5600" || inv.CpuCores != 12 || inv.MemoryTotalBytes != 16<<30 {
		t.Errorf("host part: %v", inv)
	}
	if len(inv.Gpus) != 2 {
		t.Fatalf("gpus = %d", len(inv.Gpus))
	}
	g := inv.Gpus[0]
	if g.Uuid != "GPU-1" || g.GetMemoryTotalBytes() != 24<<30 || g.GetPowerLimitMaxW() != 400 || g.GetSmClockMaxMhz() != 2100 {
		t.Errorf("gpu 0: %v", g)
	}
	// Inventory is identity and limits, not readings.
	if g.TemperatureC != nil || g.PowerW != nil || g.AppliedProfile != "" {
		t.Errorf("gpu 0 carries readings: %v", g)
	}
	if !inv.Gpus[1].Lost || inv.Gpus[1].Index != 2 {
		t.Errorf("gpu 1: %v", inv.Gpus[1])
	}
}

type noGPUs struct{}

func (noGPUs) Update(context.Context, *telemetry.Sample) error { return nil }

type brokenGPUs struct{}

func (brokenGPUs) Update(context.Context, *telemetry.Sample) error {
	return errors.New("card1: hwmon vanished")
}

func fixed(c telemetry.Collector) telemetry.Factory {
	return func(telemetry.Config) (telemetry.Collector, error) { return c, nil }
}

// One failing collector costs its own part of the report, not the report,
// and is logged once rather than every interval.
func TestPartialSampleStillReported(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	hw, err := OpenHardware(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)),
		WithCollector("nvidia", fixed(noGPUs{})), WithCollector("amdgpu", fixed(brokenGPUs{})), WithOCBackend(noCards{}))
	if err != nil {
		t.Fatal(err)
	}
	defer hw.Close(ctx)
	for range 3 {
		r, err := hw.Sample(ctx)
		if err != nil || r.Host == nil || r.Host.MemoryTotalBytes == 0 {
			t.Fatalf("partial sample: %v %v", r, err)
		}
	}
	if n := strings.Count(logs.String(), "hwmon vanished"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, logs.String())
	}

	// Nothing at all read: that is an error.
	hw2, err := OpenHardware(ctx, cfg, nil, WithCollector("host", fixed(noGPUs{})),
		WithCollector("nvidia", fixed(noGPUs{})), WithCollector("amdgpu", fixed(brokenGPUs{})), WithOCBackend(noCards{}))
	if err != nil {
		t.Fatal(err)
	}
	defer hw2.Close(ctx)
	if _, err := hw2.Sample(ctx); err == nil || !strings.Contains(err.Error(), "hwmon vanished") {
		t.Errorf("empty sample error = %v", err)
	}
}

// A CPU rig reports package power from RAPL where the kernel exposes it,
// else the configured cpu_power_w, else none.
func TestCPUPower(t *testing.T) {
	ctx := context.Background()
	zone := func(sys string, energy int) {
		dir := filepath.Join(sys, "class", "powercap", "intel-rapl:0")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f, v := range map[string]string{"name": "package-0", "energy_uj": strconv.Itoa(energy), "max_energy_range_uj": "262143328850"} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name       string
		rapl       bool
		configured float64
		source     string // "" = no figure
	}{
		{"rapl", true, 65, "rapl"},
		{"configured", false, 65, "configured"},
		{"unknown", false, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.DataDir, cfg.SysfsRoot, cfg.CPUPowerW = t.TempDir(), t.TempDir(), tt.configured
			if tt.rapl {
				zone(cfg.SysfsRoot, 1_000_000)
			}
			hw, err := OpenHardware(ctx, cfg, nil, WithCollector("nvidia", fixed(noGPUs{})), WithCollector("amdgpu", fixed(noGPUs{})), WithOCBackend(noCards{}))
			if err != nil {
				t.Fatal(err)
			}
			defer hw.Close(ctx)
			var r *quarryv1.Report
			for i := range 2 { // RAPL needs two readings
				if tt.rapl {
					zone(cfg.SysfsRoot, 1_000_000+i*50_000_000)
				}
				if r, err = hw.Sample(ctx); err != nil || r.Host == nil {
					t.Fatalf("sample: %v %v", r, err)
				}
			}
			h := r.Host
			switch {
			case tt.source == "" && h.CpuPowerW != nil:
				t.Fatalf("CPU power %v from %q with neither RAPL nor a configured figure", *h.CpuPowerW, h.CpuPowerSource)
			case tt.source != "" && (h.CpuPowerW == nil || h.CpuPowerSource != tt.source || !(*h.CpuPowerW > 0)):
				t.Fatalf("CPU power %v from %q, want a figure from %s", h.CpuPowerW, h.CpuPowerSource, tt.source)
			case tt.source == "configured" && *h.CpuPowerW != tt.configured:
				t.Fatalf("configured CPU power %v, want %v", *h.CpuPowerW, tt.configured)
			}
		})
	}
}
