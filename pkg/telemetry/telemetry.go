// Package telemetry defines the rig sample the agent reports — host
// figures plus one entry per GPU — and the collector registry that fills it.
//
// A figure a device cannot report is absent (a nil pointer or an omitted
// field), never zero, so the controller can tell "0 W" from "unknown".
package telemetry

import "time"

// Sample is one reading of the whole rig.
type Sample struct {
	Time time.Time `json:"time"`
	Host *Host     `json:"host,omitempty"`
	GPUs []GPU     `json:"gpus,omitempty"`
}

// Host holds operating-system level figures.
type Host struct {
	Hostname     string        `json:"hostname,omitempty"`
	OS           string        `json:"os,omitempty"`
	Platform     string        `json:"platform,omitempty"`
	Kernel       string        `json:"kernel,omitempty"`
	Uptime       time.Duration `json:"uptime_ns,omitempty"`
	CPUModel     string        `json:"cpu_model,omitempty"`
	CPUCores     int           `json:"cpu_cores,omitempty"`
	CPUPercent   *float64      `json:"cpu_percent,omitempty"`
	CorePercent  []float64     `json:"core_percent,omitempty"`
	Load         *LoadAvg      `json:"load,omitempty"`
	Memory       *Memory       `json:"memory,omitempty"`
	Swap         *Memory       `json:"swap,omitempty"`
	Disks        []DiskUsage   `json:"disks,omitempty"`
	Net          []NetRate     `json:"net,omitempty"`
	NetTotal     *NetRate      `json:"net_total,omitempty"`
	Temperatures []TempSensor  `json:"temperatures,omitempty"`
	// CPUPowerW is the CPU package power, from RAPL or configured (see
	// CPUPowerSource: "rapl" or "configured"); nil when unknown.
	CPUPowerW      *float64 `json:"cpu_power_w,omitempty"`
	CPUPowerSource string   `json:"cpu_power_source,omitempty"`
}

// LoadAvg is the 1, 5 and 15 minute run-queue average.
type LoadAvg struct {
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
}

// Memory is a used/total pair in bytes.
type Memory struct {
	Total uint64 `json:"total"`
	Used  uint64 `json:"used"`
}

// DiskUsage is the filesystem usage of one path.
type DiskUsage struct {
	Label string `json:"label"` // "root" or "data"
	Path  string `json:"path"`
	Total uint64 `json:"total"`
	Used  uint64 `json:"used"`
}

// NetRate is throughput computed from the counter delta between two
// samples; the first sample after start has no rates.
type NetRate struct {
	Interface string  `json:"interface"`
	RxBytesPS float64 `json:"rx_bytes_per_s"`
	TxBytesPS float64 `json:"tx_bytes_per_s"`
}

// TempSensor is one hardware temperature reading in °C.
type TempSensor struct {
	Name    string  `json:"name"`
	Celsius float64 `json:"celsius"`
}

// Vendor names a GPU maker.
type Vendor string

// GPU vendors we read.
const (
	VendorNVIDIA Vendor = "nvidia"
	VendorAMD    Vendor = "amd"
)

// GPU is one card. Units: °C, watts, MHz, percent, bytes.
type GPU struct {
	Vendor   Vendor `json:"vendor"`
	Index    int    `json:"index"`
	UUID     string `json:"uuid,omitempty"`
	Name     string `json:"name,omitempty"`
	PCIBusID string `json:"pci_bus_id,omitempty"`
	Driver   string `json:"driver,omitempty"`
	CUDA     string `json:"cuda,omitempty"`
	// Lost means the card stopped answering (fell off the bus); only its
	// identity is reported.
	Lost bool `json:"lost,omitempty"`

	TempC        *float64 `json:"temp_c,omitempty"`
	MemTempC     *float64 `json:"mem_temp_c,omitempty"`
	HotspotTempC *float64 `json:"hotspot_temp_c,omitempty"`
	FanPercent   []int    `json:"fan_percent,omitempty"`
	FanRPM       []int    `json:"fan_rpm,omitempty"`

	PowerW        *float64 `json:"power_w,omitempty"`
	PowerLimitW   *float64 `json:"power_limit_w,omitempty"`
	PowerDefaultW *float64 `json:"power_default_w,omitempty"`
	PowerMinW     *float64 `json:"power_min_w,omitempty"`
	PowerMaxW     *float64 `json:"power_max_w,omitempty"`

	SMClockMHz     *int `json:"sm_clock_mhz,omitempty"`
	SMClockMaxMHz  *int `json:"sm_clock_max_mhz,omitempty"`
	MemClockMHz    *int `json:"mem_clock_mhz,omitempty"`
	MemClockMaxMHz *int `json:"mem_clock_max_mhz,omitempty"`

	UtilPercent    *int    `json:"util_percent,omitempty"`
	MemUtilPercent *int    `json:"mem_util_percent,omitempty"`
	MemUsed        *uint64 `json:"mem_used,omitempty"`
	MemTotal       *uint64 `json:"mem_total,omitempty"`

	PState          *int     `json:"pstate,omitempty"`
	ThrottleReasons []string `json:"throttle_reasons,omitempty"`
	PCIeGen         *int     `json:"pcie_gen,omitempty"`
	PCIeWidth       *int     `json:"pcie_width,omitempty"`
	ECCCorrected    *uint64  `json:"ecc_corrected,omitempty"`
	ECCUncorrected  *uint64  `json:"ecc_uncorrected,omitempty"`

	Overclock *AppliedOC `json:"overclock,omitempty"`
}

// AppliedOC is the overclock profile currently in force on a GPU, as the
// applier recorded it.
type AppliedOC struct {
	Profile        string `json:"profile"`
	PowerLimitW    *int   `json:"power_limit_w,omitempty"`
	GPUClockMinMHz *int   `json:"gpu_clock_min_mhz,omitempty"`
	GPUClockMaxMHz *int   `json:"gpu_clock_max_mhz,omitempty"`
	MemClockMinMHz *int   `json:"mem_clock_min_mhz,omitempty"`
	MemClockMaxMHz *int   `json:"mem_clock_max_mhz,omitempty"`
	FanPercent     *int   `json:"fan_percent,omitempty"`
}

// OCSource reports the overclock applied to a GPU, keyed by UUID. The
// overclock applier implements it; GPU collectors consult it.
type OCSource interface {
	Applied(uuid string) *AppliedOC
}

// Ptr returns a pointer to v; collectors use it to mark a field present.
func Ptr[T any](v T) *T { return &v }
