//go:build linux && cgo

package nvidia

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/quarryfleet/quarry/pkg/telemetry"
)

// Lib is the part of NVML the collector uses; nvml.New() and go-nvml's
// mock servers satisfy it.
type Lib interface {
	Init() nvml.Return
	Shutdown() nvml.Return
	DeviceGetCount() (int, nvml.Return)
	DeviceGetHandleByIndex(int) (nvml.Device, nvml.Return)
	SystemGetDriverVersion() (string, nvml.Return)
	SystemGetCudaDriverVersion() (int, nvml.Return)
}

// Device is the part of an NVML device handle the collector reads.
type Device interface {
	GetUUID() (string, nvml.Return)
	GetName() (string, nvml.Return)
	GetPciInfo() (nvml.PciInfo, nvml.Return)
	GetTemperature(nvml.TemperatureSensors) (uint32, nvml.Return)
	GetFieldValues([]nvml.FieldValue) nvml.Return
	GetNumFans() (int, nvml.Return)
	GetFanSpeed_v2(int) (uint32, nvml.Return)
	GetPowerUsage() (uint32, nvml.Return)
	GetPowerManagementLimit() (uint32, nvml.Return)
	GetPowerManagementDefaultLimit() (uint32, nvml.Return)
	GetPowerManagementLimitConstraints() (uint32, uint32, nvml.Return)
	GetClockInfo(nvml.ClockType) (uint32, nvml.Return)
	GetMaxClockInfo(nvml.ClockType) (uint32, nvml.Return)
	GetUtilizationRates() (nvml.Utilization, nvml.Return)
	GetMemoryInfo() (nvml.Memory, nvml.Return)
	GetPerformanceState() (nvml.Pstates, nvml.Return)
	GetCurrentClocksEventReasons() (uint64, nvml.Return)
	GetCurrPcieLinkGeneration() (int, nvml.Return)
	GetCurrPcieLinkWidth() (int, nvml.Return)
	GetEccMode() (nvml.EnableState, nvml.EnableState, nvml.Return)
	GetTotalEccErrors(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return)
}

var _ Device = nvml.Device(nil)

// Factory opens the system NVML. A missing driver or library yields a
// collector with no GPUs, logged once.
func Factory(cfg telemetry.Config) (telemetry.Collector, error) {
	return New(nvml.New(), cfg), nil
}

// Collector reads every NVML device on each Update.
type Collector struct {
	lib    Lib
	logger *slog.Logger
	oc     telemetry.OCSource
	ok     bool // NVML initialised

	driver, cuda string

	mu     sync.Mutex
	ident  map[int]identity // by index, so a lost GPU keeps its name
	warned map[string]bool
}

type identity struct{ uuid, name, busID string }

// New initialises lib. On failure the collector reports no NVIDIA GPUs and
// says why once, so the agent keeps running on rigs without them.
func New(lib Lib, cfg telemetry.Config) *Collector {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Collector{lib: lib, logger: logger, oc: cfg.OC, ident: map[int]identity{}, warned: map[string]bool{}}
	if ret := lib.Init(); ret != nvml.SUCCESS {
		logger.Info("NVIDIA GPUs not read: NVML unavailable", "reason", nvml.ErrorString(ret), "code", int(ret))
		return c
	}
	c.ok = true
	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		c.driver = v
	}
	if v, ret := lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS && v > 0 {
		c.cuda = fmt.Sprintf("%d.%d", v/1000, v%1000/10)
	}
	return c
}

// Available reports whether NVML initialised.
func (c *Collector) Available() bool { return c.ok }

// Close shuts NVML down.
func (c *Collector) Close() error {
	if !c.ok {
		return nil
	}
	c.ok = false
	if ret := c.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml shutdown: %s", nvml.ErrorString(ret))
	}
	return nil
}

// errLost aborts reading a device that fell off the bus.
var errLost = errors.New("gpu is lost")

// Update appends one GPU per NVML device. A lost GPU is reported with
// Lost set; the others carry on.
func (c *Collector) Update(ctx context.Context, s *telemetry.Sample) error {
	if !c.ok {
		return nil
	}
	n, ret := c.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return fmt.Errorf("nvml device count: %s", nvml.ErrorString(ret))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		g := telemetry.GPU{Vendor: telemetry.VendorNVIDIA, Index: i, Driver: c.driver, CUDA: c.cuda}
		h, ret := c.lib.DeviceGetHandleByIndex(i)
		switch {
		case ret == nvml.ERROR_GPU_IS_LOST:
			c.markLost(&g)
		case ret != nvml.SUCCESS:
			c.warnOnce(fmt.Sprintf("%d/handle", i), "NVML device handle", "index", i, "reason", nvml.ErrorString(ret))
			continue
		default:
			if err := c.read(h, &g); errors.Is(err, errLost) {
				c.markLost(&g)
			}
		}
		if c.oc != nil && g.UUID != "" && !g.Lost {
			g.Overclock = c.oc.Applied(g.UUID)
		}
		s.GPUs = append(s.GPUs, g)
	}
	return nil
}

func (c *Collector) markLost(g *telemetry.GPU) {
	id := c.ident[g.Index]
	*g = telemetry.GPU{Vendor: g.Vendor, Index: g.Index, Driver: g.Driver, CUDA: g.CUDA,
		UUID: id.uuid, Name: id.name, PCIBusID: id.busID, Lost: true}
	c.warnOnce(fmt.Sprintf("%d/lost", g.Index), "NVIDIA GPU lost", "index", g.Index, "uuid", id.uuid)
}

func (c *Collector) warnOnce(key, msg string, args ...any) {
	if c.warned[key] {
		return
	}
	c.warned[key] = true
	c.logger.Warn(msg, args...)
}

// reader carries one device read: the first lost error stops it, other
// failures leave the field absent.
type reader struct {
	c     *Collector
	index int
	lost  bool
}

// ok reports whether ret is a value; NOT_SUPPORTED and permission errors
// are the card saying "no such figure" and stay quiet.
func (r *reader) ok(field string, ret nvml.Return) bool {
	switch ret {
	case nvml.SUCCESS:
		return true
	case nvml.ERROR_GPU_IS_LOST:
		r.lost = true
	case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_NO_PERMISSION, nvml.ERROR_FUNCTION_NOT_FOUND, nvml.ERROR_NO_DATA:
	default:
		r.c.warnOnce(fmt.Sprintf("%d/%s", r.index, field), "NVML field unreadable", "index", r.index, "field", field, "reason", nvml.ErrorString(ret))
	}
	return false
}

func watts(mw uint32) *float64 { return telemetry.Ptr(float64(mw) / 1000) }

func (c *Collector) read(d Device, g *telemetry.GPU) error {
	r := &reader{c: c, index: g.Index}
	step := func(f func()) bool { f(); return !r.lost }
	id := c.ident[g.Index]
	steps := []func(){
		func() {
			if v, ret := d.GetUUID(); r.ok("uuid", ret) {
				id.uuid = v
			}
			if v, ret := d.GetName(); r.ok("name", ret) {
				id.name = v
			}
			if p, ret := d.GetPciInfo(); r.ok("pci", ret) {
				if b, err := telemetry.NormalizeBusID(cString(p.BusId[:])); err == nil {
					id.busID = b
				}
			}
			c.ident[g.Index] = id
			g.UUID, g.Name, g.PCIBusID = id.uuid, id.name, id.busID
		},
		func() {
			if v, ret := d.GetTemperature(nvml.TEMPERATURE_GPU); r.ok("temp", ret) {
				g.TempC = telemetry.Ptr(float64(v))
			}
			fv := []nvml.FieldValue{{FieldId: nvml.FI_DEV_MEMORY_TEMP}}
			if r.ok("mem_temp", d.GetFieldValues(fv)) && r.ok("mem_temp", nvml.Return(fv[0].NvmlReturn)) {
				if v, ok := fieldFloat(fv[0]); ok && v > 0 {
					g.MemTempC = telemetry.Ptr(v)
				}
			}
		},
		func() {
			n, ret := d.GetNumFans()
			if !r.ok("fans", ret) {
				return
			}
			for f := range n {
				v, ret := d.GetFanSpeed_v2(f)
				if !r.ok("fan", ret) {
					return
				}
				g.FanPercent = append(g.FanPercent, int(v))
			}
		},
		func() {
			if v, ret := d.GetPowerUsage(); r.ok("power", ret) {
				g.PowerW = watts(v)
			}
			if v, ret := d.GetPowerManagementLimit(); r.ok("power_limit", ret) {
				g.PowerLimitW = watts(v)
			}
			if v, ret := d.GetPowerManagementDefaultLimit(); r.ok("power_default", ret) {
				g.PowerDefaultW = watts(v)
			}
			if lo, hi, ret := d.GetPowerManagementLimitConstraints(); r.ok("power_constraints", ret) {
				g.PowerMinW, g.PowerMaxW = watts(lo), watts(hi)
			}
		},
		func() {
			clock := func(name string, get func(nvml.ClockType) (uint32, nvml.Return), t nvml.ClockType) *int {
				if v, ret := get(t); r.ok(name, ret) {
					return telemetry.Ptr(int(v))
				}
				return nil
			}
			g.SMClockMHz = clock("sm_clock", d.GetClockInfo, nvml.CLOCK_SM)
			g.SMClockMaxMHz = clock("sm_clock_max", d.GetMaxClockInfo, nvml.CLOCK_SM)
			g.MemClockMHz = clock("mem_clock", d.GetClockInfo, nvml.CLOCK_MEM)
			g.MemClockMaxMHz = clock("mem_clock_max", d.GetMaxClockInfo, nvml.CLOCK_MEM)
		},
		func() {
			if u, ret := d.GetUtilizationRates(); r.ok("util", ret) {
				g.UtilPercent, g.MemUtilPercent = telemetry.Ptr(int(u.Gpu)), telemetry.Ptr(int(u.Memory))
			}
			if m, ret := d.GetMemoryInfo(); r.ok("memory", ret) {
				g.MemUsed, g.MemTotal = telemetry.Ptr(m.Used), telemetry.Ptr(m.Total)
			}
			if p, ret := d.GetPerformanceState(); r.ok("pstate", ret) && p != nvml.PSTATE_UNKNOWN {
				g.PState = telemetry.Ptr(int(p))
			}
			if v, ret := d.GetCurrentClocksEventReasons(); r.ok("throttle", ret) {
				g.ThrottleReasons = ThrottleReasons(v)
			}
		},
		func() {
			if v, ret := d.GetCurrPcieLinkGeneration(); r.ok("pcie_gen", ret) {
				g.PCIeGen = telemetry.Ptr(v)
			}
			if v, ret := d.GetCurrPcieLinkWidth(); r.ok("pcie_width", ret) {
				g.PCIeWidth = telemetry.Ptr(v)
			}
		},
		func() {
			cur, _, ret := d.GetEccMode()
			if !r.ok("ecc_mode", ret) || cur != nvml.FEATURE_ENABLED {
				return
			}
			if v, ret := d.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.VOLATILE_ECC); r.ok("ecc", ret) {
				g.ECCCorrected = telemetry.Ptr(v)
			}
			if v, ret := d.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC); r.ok("ecc", ret) {
				g.ECCUncorrected = telemetry.Ptr(v)
			}
		},
	}
	for _, f := range steps {
		if !step(f) {
			return errLost
		}
	}
	return nil
}

func cString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

func fieldFloat(v nvml.FieldValue) (float64, bool) {
	b := v.Value[:]
	switch nvml.ValueType(v.ValueType) {
	case nvml.VALUE_TYPE_DOUBLE:
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), true
	case nvml.VALUE_TYPE_UNSIGNED_INT:
		return float64(binary.LittleEndian.Uint32(b)), true
	case nvml.VALUE_TYPE_SIGNED_INT:
		return float64(int32(binary.LittleEndian.Uint32(b))), true
	case nvml.VALUE_TYPE_UNSIGNED_LONG, nvml.VALUE_TYPE_UNSIGNED_LONG_LONG:
		return float64(binary.LittleEndian.Uint64(b)), true
	case nvml.VALUE_TYPE_SIGNED_LONG_LONG:
		return float64(int64(binary.LittleEndian.Uint64(b))), true
	}
	return 0, false
}
