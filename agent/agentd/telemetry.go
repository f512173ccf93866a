package agentd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"

	"github.com/quarryfleet/quarry/agent/oc"
	"github.com/quarryfleet/quarry/pkg/telemetry"
	"github.com/quarryfleet/quarry/pkg/telemetry/amdgpu"
	"github.com/quarryfleet/quarry/pkg/telemetry/host"
	"github.com/quarryfleet/quarry/pkg/telemetry/nvidia"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Hardware is the agent's view of the rig: the telemetry sampler (host,
// NVIDIA and AMD collectors) and the overclock applier that drives the
// same cards. It implements Sampler.
type Hardware struct {
	log     *slog.Logger
	dataDir string
	ocFile  string  // oc_profiles from the configuration
	cpuW    float64 // cpu_power_w: the CPU figure when RAPL gives none

	sampler *telemetry.Sampler
	applier *oc.Applier
	backend oc.Backend
	ocErr   error // why the rig cannot be overclocked, if it cannot
	closers []func() error

	mu     sync.Mutex // one Sample at a time; guards last and warned
	last   *telemetry.Sample
	warned map[string]bool
}

var _ Sampler = (*Hardware)(nil)

// HardwareOption changes how OpenHardware reaches devices; tests use them
// to put fakes in place of the system's NVML.
type HardwareOption func(*hardwareOpts)

type hardwareOpts struct {
	collectors map[string]telemetry.Factory
	backend    oc.Backend
	noOC       bool
}

// WithCollector replaces the named collector ("host", "nvidia", "amdgpu")
// with f.
func WithCollector(name string, f telemetry.Factory) HardwareOption {
	return func(o *hardwareOpts) { o.collectors[name] = f }
}

// WithOCBackend drives overclocks through b instead of the system NVML.
func WithOCBackend(b oc.Backend) HardwareOption {
	return func(o *hardwareOpts) { o.backend = b }
}

// withoutOC reads what a running agent applied but never opens a backend
// (inspect must not change or reset cards).
func withoutOC() HardwareOption {
	return func(o *hardwareOpts) { o.noOC = true }
}

// OpenHardware builds the collectors and the overclock applier from cfg.
// Missing hardware is not an error: a rig without NVIDIA cards logs it once
// and reports the rest.
func OpenHardware(ctx context.Context, cfg Config, log *slog.Logger, opts ...HardwareOption) (*Hardware, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := hardwareOpts{collectors: map[string]telemetry.Factory{
		host.Name: host.Factory, nvidia.Name: nvidia.Factory, amdgpu.Name: amdgpu.Factory,
	}}
	for _, opt := range opts {
		opt(&o)
	}
	h := &Hardware{log: log, dataDir: cfg.DataDir, ocFile: cfg.OCProfiles, cpuW: cfg.CPUPowerW, warned: map[string]bool{}}
	if err := h.openOC(o); err != nil {
		return nil, err
	}
	reg := telemetry.NewRegistry()
	for _, name := range []string{host.Name, nvidia.Name, amdgpu.Name} {
		if err := reg.Register(name, o.collectors[name]); err != nil {
			_ = h.closeAll()
			return nil, err
		}
	}
	tcfg := telemetry.Config{Logger: log, ProcRoot: cfg.ProcfsRoot, SysRoot: cfg.SysfsRoot, OC: h.applier}
	if o.noOC {
		// Report the data dir's disk only if it is there; never create it.
		if st, err := os.Stat(cfg.DataDir); err == nil && st.IsDir() {
			tcfg.DataDir = cfg.DataDir
		}
	} else {
		tcfg.DataDir = cfg.DataDir
	}
	s, err := reg.Build(tcfg)
	if err != nil {
		_ = h.closeAll()
		return nil, err
	}
	h.sampler = s
	h.closers = append(h.closers, s.Close)
	return h, nil
}

// Sample reads the rig once and converts it for the controller. A
// collector that fails leaves its part out; that is logged (once per
// distinct failure) rather than returned, so the rest is still reported.
func (h *Hardware) Sample(ctx context.Context) (*quarryv1.Report, error) {
	s, err := h.sample(ctx)
	r := ReportFromSample(s)
	if hs := r.Host; hs != nil && hs.CpuPowerW == nil && h.cpuW > 0 {
		// Without RAPL a CPU rig would report no power and profit would
		// ignore its electricity; the operator's figure stands in.
		w := h.cpuW
		hs.CpuPowerW, hs.CpuPowerSource = &w, "configured"
	}
	if err != nil {
		if ctx.Err() != nil || (r.Host == nil && len(r.Gpus) == 0) {
			return r, err
		}
		h.warnOnce(err)
	}
	return r, nil
}

// warnOnce logs a partial-sample failure the first time it is seen; a
// collector failing the same way every 10s would otherwise flood the log.
func (h *Hardware) warnOnce(err error) {
	msg := err.Error()
	h.mu.Lock()
	seen := h.warned[msg]
	if !seen && len(h.warned) < 64 {
		h.warned[msg] = true
	}
	h.mu.Unlock()
	if !seen {
		h.log.Warn("sample incomplete; reporting the rest", "err", err)
	}
}

func (h *Hardware) sample(ctx context.Context) (*telemetry.Sample, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := h.sampler.Sample(ctx)
	h.last = s
	return s, err
}

// Inventory describes the rig from the latest sample, taking one if none
// has been taken yet.
func (h *Hardware) Inventory(ctx context.Context) *quarryv1.Inventory {
	h.mu.Lock()
	s := h.last
	h.mu.Unlock()
	if s == nil {
		var err error
		if s, err = h.sample(ctx); err != nil {
			h.log.Debug("inventory sample incomplete", "err", err)
		}
	}
	return InventoryFromSample(s)
}

// Close puts overclocked cards back to their defaults and releases NVML.
func (h *Hardware) Close(ctx context.Context) error {
	var errs []error
	if h.applier != nil && h.backend != nil {
		if err := h.applier.Restore(ctx); err != nil {
			errs = append(errs, fmt.Errorf("restore overclock defaults: %w", err))
		} else {
			h.log.Info("overclock defaults restored")
		}
	}
	if err := h.closeAll(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (h *Hardware) closeAll() error {
	var first error
	for i := len(h.closers) - 1; i >= 0; i-- {
		if err := h.closers[i](); err != nil && first == nil {
			first = err
		}
	}
	h.closers = nil
	return first
}

// ReportFromSample converts a telemetry sample into a report. Figures the
// sample lacks stay unset in the report; a lost GPU carries only its
// identity and lost=true.
func ReportFromSample(s *telemetry.Sample) *quarryv1.Report {
	r := &quarryv1.Report{}
	if s == nil {
		return r
	}
	if !s.Time.IsZero() {
		r.TimeUnixNano = s.Time.UnixNano()
	}
	if s.Host != nil {
		r.Host = hostStats(s.Host)
	}
	for i := range s.GPUs {
		r.Gpus = append(r.Gpus, gpuStats(&s.GPUs[i]))
	}
	return r
}

func hostStats(h *telemetry.Host) *quarryv1.HostStats {
	out := &quarryv1.HostStats{
		UptimeSeconds:  uint64(h.Uptime.Seconds()),
		CpuCorePercent: h.CorePercent,
	}
	if h.CPUPercent != nil {
		out.CpuPercent = *h.CPUPercent
	}
	if l := h.Load; l != nil {
		out.Load1, out.Load5, out.Load15 = l.Load1, l.Load5, l.Load15
	}
	if m := h.Memory; m != nil {
		out.MemoryUsedBytes, out.MemoryTotalBytes = m.Used, m.Total
	}
	if m := h.Swap; m != nil {
		out.SwapUsedBytes, out.SwapTotalBytes = m.Used, m.Total
	}
	if h.CPUPowerW != nil {
		w := *h.CPUPowerW
		out.CpuPowerW, out.CpuPowerSource = &w, h.CPUPowerSource
	}
	// The root filesystem is the rig's disk; the data dir stands in when
	// the root cannot be read.
	for _, label := range []string{"root", "data"} {
		if d := findDisk(h.Disks, label); d != nil {
			out.DiskUsedBytes, out.DiskTotalBytes = d.Used, d.Total
			break
		}
	}
	if n := h.NetTotal; n != nil {
		out.NetRxBytesPerSecond, out.NetTxBytesPerSecond = n.RxBytesPS, n.TxBytesPS
	}
	for _, t := range h.Temperatures {
		out.Sensors = append(out.Sensors, &quarryv1.Sensor{Name: t.Name, Celsius: t.Celsius})
	}
	return out
}

func findDisk(disks []telemetry.DiskUsage, label string) *telemetry.DiskUsage {
	for i := range disks {
		if disks[i].Label == label {
			return &disks[i]
		}
	}
	return nil
}

func gpuStats(g *telemetry.GPU) *quarryv1.GPUStats {
	out := &quarryv1.GPUStats{
		Index:         uint32(max(g.Index, 0)),
		Vendor:        string(g.Vendor),
		Uuid:          g.UUID,
		Name:          g.Name,
		BusId:         g.PCIBusID,
		DriverVersion: g.Driver,
		Lost:          g.Lost,
	}
	if g.Lost {
		return out
	}
	out.TemperatureC = g.TempC
	out.MemoryTemperatureC = g.MemTempC
	out.HotspotTemperatureC = g.HotspotTempC
	for _, f := range g.FanPercent {
		out.FanPercent = append(out.FanPercent, float64(f))
	}
	for _, f := range g.FanRPM {
		out.FanRpm = append(out.FanRpm, uint32(max(f, 0)))
	}
	out.PowerW = g.PowerW
	out.PowerLimitW = g.PowerLimitW
	out.PowerLimitDefaultW = g.PowerDefaultW
	out.PowerLimitMinW = g.PowerMinW
	out.PowerLimitMaxW = g.PowerMaxW
	out.SmClockMhz = u32(g.SMClockMHz)
	out.SmClockMaxMhz = u32(g.SMClockMaxMHz)
	out.MemoryClockMhz = u32(g.MemClockMHz)
	out.MemoryClockMaxMhz = u32(g.MemClockMaxMHz)
	out.UtilizationPercent = f64(g.UtilPercent)
	out.MemoryUtilizationPercent = f64(g.MemUtilPercent)
	out.MemoryUsedBytes = g.MemUsed
	out.MemoryTotalBytes = g.MemTotal
	if g.PState != nil {
		v := int32(*g.PState)
		out.PerformanceState = &v
	}
	out.ThrottleReasons = g.ThrottleReasons
	out.PcieGeneration = u32(g.PCIeGen)
	out.PcieWidth = u32(g.PCIeWidth)
	out.EccErrorsCorrected = g.ECCCorrected
	out.EccErrorsUncorrected = g.ECCUncorrected
	if g.Overclock != nil {
		out.AppliedProfile = g.Overclock.Profile
	}
	return out
}

// u32 converts a present, non-negative int; a negative reading is treated
// as absent rather than wrapped.
func u32(p *int) *uint32 {
	if p == nil || *p < 0 {
		return nil
	}
	v := uint32(*p)
	return &v
}

func f64(p *int) *float64 {
	if p == nil {
		return nil
	}
	v := float64(*p)
	return &v
}

// InventoryFromSample describes the machine: OS, CPU, memory and each
// GPU's identity and fixed limits.
func InventoryFromSample(s *telemetry.Sample) *quarryv1.Inventory {
	inv := &quarryv1.Inventory{Os: runtime.GOOS, CpuCores: uint32(runtime.NumCPU())}
	if s == nil {
		return inv
	}
	if h := s.Host; h != nil {
		if h.Platform != "" {
			inv.Os = h.Platform
		}
		inv.Kernel = h.Kernel
		inv.CpuModel = h.CPUModel
		if h.CPUCores > 0 {
			inv.CpuCores = uint32(h.CPUCores)
		}
		if h.Memory != nil {
			inv.MemoryTotalBytes = h.Memory.Total
		}
	}
	for i := range s.GPUs {
		g := &s.GPUs[i]
		inv.Gpus = append(inv.Gpus, &quarryv1.GPUStats{
			Index: uint32(max(g.Index, 0)), Vendor: string(g.Vendor), Uuid: g.UUID, Name: g.Name,
			BusId: g.PCIBusID, DriverVersion: g.Driver, Lost: g.Lost,
			MemoryTotalBytes: g.MemTotal, PowerLimitDefaultW: g.PowerDefaultW,
			PowerLimitMinW: g.PowerMinW, PowerLimitMaxW: g.PowerMaxW,
			SmClockMaxMhz: u32(g.SMClockMaxMHz), MemoryClockMaxMhz: u32(g.MemClockMaxMHz),
		})
	}
	return inv
}
