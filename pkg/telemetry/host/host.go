// Package host reads operating-system figures through gopsutil: CPU,
// load, memory, disks, network throughput, uptime and temperature sensors.
package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/common"
	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/host"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/net"
	"github.com/shirou/gopsutil/v4/sensors"

	"github.com/quarryfleet/quarry/pkg/telemetry"
)

// Name is the collector's registry name.
const Name = "host"

// Collector keeps the previous CPU and network counters so utilisation and
// throughput come from the interval between two samples rather than from
// gopsutil's package-level "last call" state.
type Collector struct {
	env     common.EnvMap
	dataDir string
	now     func() time.Time

	static telemetry.Host // model, cores, kernel: read once

	mu       sync.Mutex
	prevCPU  []cpu.TimesStat
	prevNet  map[string]net.IOCountersStat
	prevTime time.Time
	rapl     rapl
}

var _ telemetry.Collector = (*Collector)(nil)

// Factory builds the host collector from cfg's roots and data directory.
func Factory(cfg telemetry.Config) (telemetry.Collector, error) {
	return New(context.Background(), cfg)
}

// New reads the static host facts once.
func New(ctx context.Context, cfg telemetry.Config) (*Collector, error) {
	sys := cfg.SysRoot
	if sys == "" {
		sys = "/sys"
	}
	c := &Collector{env: common.EnvMap{}, dataDir: cfg.DataDir, now: time.Now, rapl: rapl{root: sys}}
	if cfg.ProcRoot != "" {
		c.env[common.HostProcEnvKey] = cfg.ProcRoot
	}
	if cfg.SysRoot != "" {
		c.env[common.HostSysEnvKey] = cfg.SysRoot
	}
	ctx = c.ctx(ctx)
	if infos, err := cpu.InfoWithContext(ctx); err == nil && len(infos) > 0 {
		c.static.CPUModel = infos[0].ModelName
	}
	if n, err := cpu.CountsWithContext(ctx, true); err == nil {
		c.static.CPUCores = n
	}
	if hi, err := host.InfoWithContext(ctx); err == nil {
		c.static.Hostname, c.static.OS, c.static.Kernel = hi.Hostname, hi.OS, hi.KernelVersion
		c.static.Platform = hi.Platform + " " + hi.PlatformVersion
	}
	return c, nil
}

func (c *Collector) ctx(ctx context.Context) context.Context {
	if len(c.env) == 0 {
		return ctx
	}
	return context.WithValue(ctx, common.EnvKey, c.env)
}

// Update sets s.Host. Parts that cannot be read are left absent and named
// in the returned error.
func (c *Collector) Update(ctx context.Context, s *telemetry.Sample) error {
	ctx = c.ctx(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.static
	h.CorePercent = nil
	var errs []error
	fail := func(what string, err error) { errs = append(errs, fmt.Errorf("%s: %w", what, err)) }
	now := c.now()

	if up, err := host.UptimeWithContext(ctx); err == nil {
		h.Uptime = time.Duration(up) * time.Second
	} else {
		fail("uptime", err)
	}
	if times, err := cpu.TimesWithContext(ctx, true); err == nil {
		c.cpuPercent(&h, times)
	} else {
		fail("cpu", err)
	}
	if l, err := load.AvgWithContext(ctx); err == nil {
		h.Load = &telemetry.LoadAvg{Load1: l.Load1, Load5: l.Load5, Load15: l.Load15}
	} else {
		fail("load", err)
	}
	if m, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		h.Memory = &telemetry.Memory{Total: m.Total, Used: m.Total - m.Available}
		// From meminfo too: SwapMemory would call sysinfo(2), ignoring ProcRoot.
		h.Swap = &telemetry.Memory{Total: m.SwapTotal, Used: m.SwapTotal - m.SwapFree}
	} else {
		fail("memory", err)
	}
	for _, d := range []struct{ label, path string }{{"root", "/"}, {"data", c.dataDir}} {
		if d.path == "" {
			continue
		}
		u, err := disk.UsageWithContext(ctx, d.path)
		if err != nil {
			fail("disk "+d.label, err)
			continue
		}
		h.Disks = append(h.Disks, telemetry.DiskUsage{Label: d.label, Path: d.path, Total: u.Total, Used: u.Used})
	}
	if io, err := net.IOCountersWithContext(ctx, true); err == nil {
		c.netRates(&h, io, now)
	} else {
		fail("net", err)
	}
	temps, err := sensors.TemperaturesWithContext(ctx)
	for _, t := range temps {
		h.Temperatures = append(h.Temperatures, telemetry.TempSensor{Name: t.SensorKey, Celsius: t.Temperature})
	}
	// Many VMs and containers have no sensors at all; only a partial read
	// with nothing to show is worth reporting.
	if err != nil && len(temps) == 0 && !isNotExist(err) {
		fail("sensors", err)
	}
	if w, ok := c.rapl.power(now); ok {
		h.CPUPowerW, h.CPUPowerSource = telemetry.Ptr(w), "rapl"
	}
	c.prevTime = now
	s.Host = &h
	return errors.Join(errs...)
}

func isNotExist(err error) bool {
	var w *sensors.Warnings
	return errors.As(err, &w) || errors.Is(err, fs.ErrNotExist)
}

func (c *Collector) cpuPercent(h *telemetry.Host, times []cpu.TimesStat) {
	prev := c.prevCPU
	c.prevCPU = times
	if len(prev) != len(times) {
		return // first sample, or CPUs came and went: no interval to measure
	}
	var busyAll, totalAll float64
	h.CorePercent = make([]float64, len(times))
	for i, t := range times {
		busy, total := busyTotal(t)
		pb, pt := busyTotal(prev[i])
		db, dt := busy-pb, total-pt
		if dt > 0 && db >= 0 {
			h.CorePercent[i] = clamp(100 * db / dt)
		}
		busyAll += max(db, 0)
		totalAll += max(dt, 0)
	}
	if totalAll > 0 {
		h.CPUPercent = telemetry.Ptr(clamp(100 * busyAll / totalAll))
	}
}

func busyTotal(t cpu.TimesStat) (busy, total float64) {
	total = t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	return total - t.Idle - t.Iowait, total
}

func clamp(p float64) float64 { return min(max(p, 0), 100) }

func (c *Collector) netRates(h *telemetry.Host, io []net.IOCountersStat, now time.Time) {
	prev := c.prevNet
	c.prevNet = make(map[string]net.IOCountersStat, len(io))
	for _, n := range io {
		c.prevNet[n.Name] = n
	}
	if prev == nil {
		return
	}
	secs := now.Sub(c.prevTime).Seconds()
	if secs <= 0 {
		return
	}
	total := telemetry.NetRate{Interface: "total"}
	for _, n := range io {
		if n.Name == "lo" {
			continue
		}
		p, ok := prev[n.Name]
		// A counter that went backwards is a reset (driver reload), not
		// negative traffic.
		if !ok || n.BytesRecv < p.BytesRecv || n.BytesSent < p.BytesSent {
			continue
		}
		r := telemetry.NetRate{Interface: n.Name,
			RxBytesPS: float64(n.BytesRecv-p.BytesRecv) / secs,
			TxBytesPS: float64(n.BytesSent-p.BytesSent) / secs}
		total.RxBytesPS += r.RxBytesPS
		total.TxBytesPS += r.TxBytesPS
		h.Net = append(h.Net, r)
	}
	h.NetTotal = &total
}
