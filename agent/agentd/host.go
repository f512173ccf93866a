package agentd

import (
	"context"
	"runtime"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/host"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// HostSampler reports the basic host figures through gopsutil.
type HostSampler struct{}

// Sample reads CPU, memory, load and uptime. A figure that cannot be read
// is left out rather than reported as zero.
func (HostSampler) Sample(ctx context.Context) (*quarryv1.Report, error) {
	h := &quarryv1.HostStats{}
	if p, err := cpu.PercentWithContext(ctx, 0, false); err == nil && len(p) == 1 {
		h.CpuPercent = p[0]
	}
	if m, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		h.MemoryUsedBytes, h.MemoryTotalBytes = m.Used, m.Total
	}
	if l, err := load.AvgWithContext(ctx); err == nil {
		h.Load1, h.Load5, h.Load15 = l.Load1, l.Load5, l.Load15
	}
	if u, err := host.UptimeWithContext(ctx); err == nil {
		h.UptimeSeconds = u
	}
	return &quarryv1.Report{Host: h}, nil
}

// Inventory describes the machine once per connection.
func (HostSampler) Inventory(ctx context.Context) *quarryv1.Inventory {
	inv := &quarryv1.Inventory{Os: runtime.GOOS, CpuCores: uint32(runtime.NumCPU())}
	if i, err := host.InfoWithContext(ctx); err == nil {
		inv.Os = i.Platform + " " + i.PlatformVersion
		inv.Kernel = i.KernelVersion
	}
	if c, err := cpu.InfoWithContext(ctx); err == nil && len(c) > 0 {
		inv.CpuModel = c[0].ModelName
	}
	if m, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		inv.MemoryTotalBytes = m.Total
	}
	return inv
}
