//go:build linux && cgo

package nvmltest

import (
	"embed"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

//go:embed testdata/*.json
var recordings embed.FS

// Recording is one card's idle reading; see testdata/README.md.
type Recording struct {
	BusID          string   `json:"bus_id"`
	TempC          uint32   `json:"temp_c"`
	MemTempC       uint32   `json:"mem_temp_c"`
	Fans           []uint32 `json:"fans"`
	PowerMW        uint32   `json:"power_mw"`
	PowerLimitMW   uint32   `json:"power_limit_mw"`
	PowerDefaultMW uint32   `json:"power_default_mw"`
	PowerMinMW     uint32   `json:"power_min_mw"`
	PowerMaxMW     uint32   `json:"power_max_mw"`
	SMClock        uint32   `json:"sm_clock"`
	SMClockMax     uint32   `json:"sm_clock_max"`
	MemClock       uint32   `json:"mem_clock"`
	MemClockMax    uint32   `json:"mem_clock_max"`
	UtilGPU        uint32   `json:"util_gpu"`
	UtilMem        uint32   `json:"util_mem"`
	MemUsed        uint64   `json:"mem_used"`
	PState         int      `json:"pstate"`
	EventReasons   uint64   `json:"event_reasons"`
	PCIeGen        int      `json:"pcie_gen"`
	PCIeWidth      int      `json:"pcie_width"`
	ECCEnabled     bool     `json:"ecc_enabled"`
	ECCCorrected   uint64   `json:"ecc_corrected"`
	ECCUncorrected uint64   `json:"ecc_uncorrected"`
	NotSupported   []string `json:"not_supported"`
}

// Load reads testdata/<name>.json ("h100_sxm5", "rtx3090").
func Load(name string) (Recording, error) {
	var r Recording
	b, err := recordings.ReadFile("testdata/" + name + ".json")
	if err != nil {
		return r, fmt.Errorf("recording %q: %w", name, err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("recording %q: %w", name, err)
	}
	return r, nil
}

// State is what a replayed device has been told to do; tests read it to
// check overclock writes. Zero clock pairs mean "not locked".
type State struct {
	mu sync.Mutex
	Values
}

// Values is a copy of a device's State.
type Values struct {
	PowerLimitMW uint32
	GPULocked    [2]uint32
	MemLocked    [2]uint32
	FanPercent   []int // -1: automatic (driver default)
	Lost         bool
	Calls        []string
}

// Snapshot copies the state under its lock.
func (s *State) Snapshot() Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Values{PowerLimitMW: s.PowerLimitMW, GPULocked: s.GPULocked, MemLocked: s.MemLocked,
		FanPercent: slices.Clone(s.FanPercent), Lost: s.Lost, Calls: slices.Clone(s.Calls)}
}

// SetLost makes every later query on the device answer ERROR_GPU_IS_LOST.
func (s *State) SetLost() {
	s.mu.Lock()
	s.Lost = true
	s.mu.Unlock()
}

// dgxH100Bus are the bus numbers of the eight GPUs in a DGX H100.
var dgxH100Bus = []int{0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb}

// DGXH100 returns go-nvml's eight-GPU DGX H100 fake with every device
// replaying rec at the machine's real bus addresses.
func DGXH100(rec Recording) (*server.Server, []*State) {
	s := dgxh100.New()
	states := make([]*State, len(s.Devices))
	for i, d := range s.Devices {
		r := rec
		r.BusID = fmt.Sprintf("00000000:%02X:00.0", dgxH100Bus[i%len(dgxH100Bus)])
		states[i] = Replay(d.(*server.Device), r)
	}
	return s, states
}

// Replay makes d answer the queries the telemetry collector and the
// overclock applier use with rec's values, and accept overclock writes.
func Replay(d *server.Device, rec Recording) *State {
	st := &State{Values: Values{PowerLimitMW: rec.PowerLimitMW}}
	for range rec.Fans {
		st.FanPercent = append(st.FanPercent, -1)
	}
	ns := map[string]bool{}
	for _, n := range rec.NotSupported {
		ns[n] = true
	}
	// ret decides the answer for one query: lost beats unsupported.
	ret := func(name string) nvml.Return {
		st.mu.Lock()
		defer st.mu.Unlock()
		switch {
		case st.Lost:
			return nvml.ERROR_GPU_IS_LOST
		case ns[name]:
			return nvml.ERROR_NOT_SUPPORTED
		}
		return nvml.SUCCESS
	}
	uuid, name, total := d.UUID, d.Config.Name, d.MemoryInfo.Total
	d.GetUUIDFunc = func() (string, nvml.Return) { return uuid, ret("uuid") }
	d.GetNameFunc = func() (string, nvml.Return) { return name, ret("name") }
	d.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
		var p nvml.PciInfo
		for i := 0; i < len(rec.BusID) && i < len(p.BusId)-1; i++ {
			p.BusId[i] = int8(rec.BusID[i])
		}
		p.PciDeviceId = d.Config.PciDeviceId
		return p, ret("pci")
	}
	d.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return rec.TempC, ret("temp") }
	d.GetFieldValuesFunc = func(fv []nvml.FieldValue) nvml.Return {
		if r := ret("field_values"); r != nvml.SUCCESS {
			return r
		}
		for i := range fv {
			fv[i].NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
			if fv[i].FieldId == nvml.FI_DEV_MEMORY_TEMP && !ns["mem_temp"] {
				fv[i].NvmlReturn = uint32(nvml.SUCCESS)
				fv[i].ValueType = uint32(nvml.VALUE_TYPE_UNSIGNED_INT)
				fv[i].Value = [8]byte{byte(rec.MemTempC), byte(rec.MemTempC >> 8)}
			}
		}
		return nvml.SUCCESS
	}
	d.GetNumFansFunc = func() (int, nvml.Return) { return len(rec.Fans), ret("fans") }
	d.GetFanSpeed_v2Func = func(i int) (uint32, nvml.Return) {
		if i < 0 || i >= len(rec.Fans) {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		st.mu.Lock()
		v := rec.Fans[i]
		if st.FanPercent[i] >= 0 {
			v = uint32(st.FanPercent[i])
		}
		st.mu.Unlock()
		return v, ret("fan")
	}
	d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return rec.PowerMW, ret("power") }
	d.GetPowerManagementLimitFunc = func() (uint32, nvml.Return) {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.Lost {
			return 0, nvml.ERROR_GPU_IS_LOST
		}
		return st.PowerLimitMW, nvml.SUCCESS
	}
	d.GetPowerManagementDefaultLimitFunc = func() (uint32, nvml.Return) { return rec.PowerDefaultMW, ret("power_default") }
	d.GetPowerManagementLimitConstraintsFunc = func() (uint32, uint32, nvml.Return) {
		return rec.PowerMinMW, rec.PowerMaxMW, ret("power_constraints")
	}
	d.GetClockInfoFunc = func(t nvml.ClockType) (uint32, nvml.Return) {
		if t == nvml.CLOCK_MEM {
			return rec.MemClock, ret("mem_clock")
		}
		return rec.SMClock, ret("sm_clock")
	}
	d.GetMaxClockInfoFunc = func(t nvml.ClockType) (uint32, nvml.Return) {
		if t == nvml.CLOCK_MEM {
			return rec.MemClockMax, ret("mem_clock_max")
		}
		return rec.SMClockMax, ret("sm_clock_max")
	}
	d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		return nvml.Utilization{Gpu: rec.UtilGPU, Memory: rec.UtilMem}, ret("util")
	}
	d.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
		return nvml.Memory{Total: total, Used: rec.MemUsed, Free: total - rec.MemUsed}, ret("memory")
	}
	d.GetPerformanceStateFunc = func() (nvml.Pstates, nvml.Return) { return nvml.Pstates(rec.PState), ret("pstate") }
	d.GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) { return rec.EventReasons, ret("throttle") }
	d.GetCurrPcieLinkGenerationFunc = func() (int, nvml.Return) { return rec.PCIeGen, ret("pcie_gen") }
	d.GetCurrPcieLinkWidthFunc = func() (int, nvml.Return) { return rec.PCIeWidth, ret("pcie_width") }
	d.GetEccModeFunc = func() (nvml.EnableState, nvml.EnableState, nvml.Return) {
		e := nvml.FEATURE_DISABLED
		if rec.ECCEnabled {
			e = nvml.FEATURE_ENABLED
		}
		return e, e, ret("ecc_mode")
	}
	d.GetTotalEccErrorsFunc = func(t nvml.MemoryErrorType, _ nvml.EccCounterType) (uint64, nvml.Return) {
		if t == nvml.MEMORY_ERROR_TYPE_UNCORRECTED {
			return rec.ECCUncorrected, ret("ecc")
		}
		return rec.ECCCorrected, ret("ecc")
	}

	// Writes. A real driver refuses values outside the card's range with
	// INVALID_ARGUMENT; the fake does the same so callers' checks are not
	// the only line of defence being tested.
	record := func(call string, apply func() nvml.Return) nvml.Return {
		if r := ret(call); r != nvml.SUCCESS {
			return r
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		r := apply()
		if r == nvml.SUCCESS {
			st.Calls = append(st.Calls, call)
		}
		return r
	}
	d.SetPowerManagementLimitFunc = func(mw uint32) nvml.Return {
		return record("SetPowerManagementLimit", func() nvml.Return {
			if mw < rec.PowerMinMW || mw > rec.PowerMaxMW {
				return nvml.ERROR_INVALID_ARGUMENT
			}
			st.PowerLimitMW = mw
			return nvml.SUCCESS
		})
	}
	d.SetGpuLockedClocksFunc = func(lo, hi uint32) nvml.Return {
		return record("SetGpuLockedClocks", func() nvml.Return { st.GPULocked = [2]uint32{lo, hi}; return nvml.SUCCESS })
	}
	d.ResetGpuLockedClocksFunc = func() nvml.Return {
		return record("ResetGpuLockedClocks", func() nvml.Return { st.GPULocked = [2]uint32{}; return nvml.SUCCESS })
	}
	d.SetMemoryLockedClocksFunc = func(lo, hi uint32) nvml.Return {
		return record("SetMemoryLockedClocks", func() nvml.Return { st.MemLocked = [2]uint32{lo, hi}; return nvml.SUCCESS })
	}
	d.ResetMemoryLockedClocksFunc = func() nvml.Return {
		return record("ResetMemoryLockedClocks", func() nvml.Return { st.MemLocked = [2]uint32{}; return nvml.SUCCESS })
	}
	d.SetFanSpeed_v2Func = func(fan, pct int) nvml.Return {
		if len(rec.Fans) == 0 {
			return nvml.ERROR_NOT_SUPPORTED
		}
		return record("SetFanSpeed_v2", func() nvml.Return {
			if fan < 0 || fan >= len(st.FanPercent) || pct < 0 || pct > 100 {
				return nvml.ERROR_INVALID_ARGUMENT
			}
			st.FanPercent[fan] = pct
			return nvml.SUCCESS
		})
	}
	d.SetDefaultFanSpeed_v2Func = func(fan int) nvml.Return {
		if len(rec.Fans) == 0 {
			return nvml.ERROR_NOT_SUPPORTED
		}
		return record("SetDefaultFanSpeed_v2", func() nvml.Return {
			if fan < 0 || fan >= len(st.FanPercent) {
				return nvml.ERROR_INVALID_ARGUMENT
			}
			st.FanPercent[fan] = -1
			return nvml.SUCCESS
		})
	}
	d.GetMinMaxFanSpeedFunc = func() (int, int, nvml.Return) {
		if len(rec.Fans) == 0 {
			return 0, 0, nvml.ERROR_NOT_SUPPORTED
		}
		return 30, 100, ret("fan_range")
	}
	d.GetSupportedMemoryClocksFunc = func() (int, uint32, nvml.Return) {
		return 1, rec.MemClockMax, ret("supported_mem_clocks")
	}
	return st
}
