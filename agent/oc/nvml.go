//go:build linux && cgo

package oc

import (
	"context"
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/quarryfleet/quarry/pkg/telemetry"
)

// NVML is the part of the library the backend uses.
type NVML interface {
	Init() nvml.Return
	Shutdown() nvml.Return
	DeviceGetCount() (int, nvml.Return)
	DeviceGetHandleByIndex(int) (nvml.Device, nvml.Return)
}

// NVMLDevice is the part of a device handle the backend reads and drives.
type NVMLDevice interface {
	GetUUID() (string, nvml.Return)
	GetName() (string, nvml.Return)
	GetPciInfo() (nvml.PciInfo, nvml.Return)
	GetPowerManagementLimitConstraints() (uint32, uint32, nvml.Return)
	GetPowerManagementDefaultLimit() (uint32, nvml.Return)
	GetMaxClockInfo(nvml.ClockType) (uint32, nvml.Return)
	GetNumFans() (int, nvml.Return)
	GetMinMaxFanSpeed() (int, int, nvml.Return)
	SetPowerManagementLimit(uint32) nvml.Return
	SetGpuLockedClocks(uint32, uint32) nvml.Return
	ResetGpuLockedClocks() nvml.Return
	SetMemoryLockedClocks(uint32, uint32) nvml.Return
	ResetMemoryLockedClocks() nvml.Return
	SetFanSpeed_v2(int, int) nvml.Return
	SetDefaultFanSpeed_v2(int) nvml.Return
}

var _ NVMLDevice = nvml.Device(nil)

// NVMLBackend drives NVIDIA cards.
type NVMLBackend struct{ lib NVML }

// NewNVMLBackend initialises lib; the caller must Close it.
func NewNVMLBackend(lib NVML) (*NVMLBackend, error) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("oc: nvml init: %w", nvmlErr(ret))
	}
	return &NVMLBackend{lib: lib}, nil
}

// OpenSystem opens the host's NVML.
func OpenSystem() (*NVMLBackend, error) { return NewNVMLBackend(nvml.New()) }

// Close releases NVML.
func (b *NVMLBackend) Close() error {
	if ret := b.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("oc: nvml shutdown: %w", nvmlErr(ret))
	}
	return nil
}

// Cards lists NVML devices; lost ones are skipped (nothing can be set).
func (b *NVMLBackend) Cards(ctx context.Context) ([]Card, error) {
	n, ret := b.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("oc: nvml device count: %w", nvmlErr(ret))
	}
	var out []Card
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, ret := b.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			continue
		}
		out = append(out, newNVMLCard(i, h))
	}
	return out, nil
}

type nvmlCard struct {
	d    NVMLDevice
	info CardInfo
}

func newNVMLCard(i int, d NVMLDevice) *nvmlCard {
	c := &nvmlCard{d: d, info: CardInfo{Index: i}}
	in := &c.info
	if v, ret := d.GetUUID(); ret == nvml.SUCCESS {
		in.UUID = v
	}
	if v, ret := d.GetName(); ret == nvml.SUCCESS {
		in.Name = v
	}
	if p, ret := d.GetPciInfo(); ret == nvml.SUCCESS {
		var raw []byte
		for _, ch := range p.BusId {
			if ch == 0 {
				break
			}
			raw = append(raw, byte(ch))
		}
		in.BusID, _ = telemetry.NormalizeBusID(string(raw))
	}
	if lo, hi, ret := d.GetPowerManagementLimitConstraints(); ret == nvml.SUCCESS {
		in.PowerMinMW, in.PowerMaxMW = &lo, &hi
	}
	if v, ret := d.GetPowerManagementDefaultLimit(); ret == nvml.SUCCESS {
		in.PowerDefaultMW = &v
	}
	if v, ret := d.GetMaxClockInfo(nvml.CLOCK_SM); ret == nvml.SUCCESS {
		in.GPUClockMaxMHz = &v
	}
	if v, ret := d.GetMaxClockInfo(nvml.CLOCK_MEM); ret == nvml.SUCCESS {
		in.MemClockMaxMHz = &v
	}
	if v, ret := d.GetNumFans(); ret == nvml.SUCCESS {
		in.Fans = v
	}
	if lo, hi, ret := d.GetMinMaxFanSpeed(); ret == nvml.SUCCESS {
		in.FanMin, in.FanMax = &lo, &hi
	}
	return c
}

func (c *nvmlCard) Info() CardInfo { return c.info }

func (c *nvmlCard) SetPowerLimit(mw uint32) error {
	return nvmlErr(c.d.SetPowerManagementLimit(mw))
}
func (c *nvmlCard) SetGPULockedClocks(lo, hi uint32) error {
	return nvmlErr(c.d.SetGpuLockedClocks(lo, hi))
}
func (c *nvmlCard) ResetGPULockedClocks() error { return nvmlErr(c.d.ResetGpuLockedClocks()) }
func (c *nvmlCard) SetMemLockedClocks(lo, hi uint32) error {
	return nvmlErr(c.d.SetMemoryLockedClocks(lo, hi))
}
func (c *nvmlCard) ResetMemLockedClocks() error { return nvmlErr(c.d.ResetMemoryLockedClocks()) }
func (c *nvmlCard) SetFanSpeed(fan, pct int) error {
	return nvmlErr(c.d.SetFanSpeed_v2(fan, pct))
}
func (c *nvmlCard) SetDefaultFanSpeed(fan int) error {
	return nvmlErr(c.d.SetDefaultFanSpeed_v2(fan))
}

func nvmlErr(ret nvml.Return) error {
	if ret == nvml.SUCCESS {
		return nil
	}
	return fmt.Errorf("nvml: %s", nvml.ErrorString(ret))
}
