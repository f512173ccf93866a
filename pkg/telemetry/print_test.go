package telemetry

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func fixtureSample() *Sample {
	return &Sample{
		Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Host: &Host{Hostname: "rig-07", Platform: "debian 13", Kernel: "6.12.9", Uptime: 49 * time.Hour,
			CPUModel: "AMD Ryzen 5 3600", CPUCores: 12, CPUPercent: Ptr(12.5),
			Load:   &LoadAvg{Load1: 0.5, Load5: 0.4, Load15: 0.3},
			Memory: &Memory{Total: 16 << 30, Used: 3 << 30},
			Disks:  []DiskUsage{{Label: "root", Path: "/", Total: 100 << 30, Used: 20 << 30}},
		},
		GPUs: []GPU{
			{Vendor: VendorNVIDIA, Index: 0, Name: "NVIDIA GeForce RTX 3090", PCIBusID: "0000:0a:00.0",
				TempC: Ptr(58.0), FanPercent: []int{62, 62}, PowerW: Ptr(287.6), PowerLimitW: Ptr(300.0),
				SMClockMHz: Ptr(1395), MemClockMHz: Ptr(9501), UtilPercent: Ptr(100), PState: Ptr(2),
				MemUsed: Ptr(uint64(5 << 30)), MemTotal: Ptr(uint64(24 << 30)),
				ThrottleReasons: []string{"sw_power_cap"}, Overclock: &AppliedOC{Profile: "eth-3090"}},
			{Vendor: VendorNVIDIA, Index: 1, Name: "NVIDIA GeForce RTX 3090", PCIBusID: "0000:0b:00.0", Lost: true},
			{Vendor: VendorAMD, Index: 0, Name: "AMD Radeon 0x67df", FanRPM: []int{2100}, TempC: Ptr(66.0)},
		},
	}
}

func TestPrintTableGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := Print(&buf, fixtureSample(), "table"); err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/print.golden"
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("table differs from %s:\n%s", golden, buf.String())
	}
}

func TestPrintJSONOmitsAbsent(t *testing.T) {
	var buf bytes.Buffer
	if err := Print(&buf, fixtureSample(), "json"); err != nil {
		t.Fatal(err)
	}
	var back struct {
		GPUs []map[string]any `json:"gpus"`
	}
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	lost := back.GPUs[1]
	for _, k := range []string{"temp_c", "power_w", "fan_percent", "ecc_corrected"} {
		if _, ok := lost[k]; ok {
			t.Errorf("absent field %q present in JSON", k)
		}
	}
	if lost["lost"] != true {
		t.Errorf("lost = %v", lost["lost"])
	}
	if err := Print(&buf, fixtureSample(), "xml"); err == nil {
		t.Error("unknown format accepted")
	}
}
