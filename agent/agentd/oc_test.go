//go:build linux && cgo

package agentd

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nvmlmock "github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/quarryfleet/quarry/agent/oc"
	"github.com/quarryfleet/quarry/controller/server"
	"github.com/quarryfleet/quarry/pkg/telemetry"
	"github.com/quarryfleet/quarry/pkg/telemetry/nvidia"
	"github.com/quarryfleet/quarry/pkg/telemetry/nvidia/nvmltest"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

const (
	h100Model  = "NVIDIA H100 80GB HBM3"
	defaultMW  = 700000 // h100_sxm5 recording: default and maximum limit
	tooHighOC  = "profiles:\n  - name: too-hot\n    match: {model: " + h100Model + "}\n    power_limit_w: 900\n"
	ecoFirst2  = "profiles:\n  - name: eco\n    match: {index: [0, 1]}\n    power_limit_w: 450\n    gpu_clock_mhz: {min: 1200, max: 1755}\n"
	waitPeriod = 30 * time.Second
)

// fakeGPUs is an eight-card DGX H100 replaying a recorded card, wired in
// for both telemetry and overclocking.
func fakeGPUs(t *testing.T) ([]*nvmltest.State, []HardwareOption) {
	t.Helper()
	rec, err := nvmltest.Load("h100_sxm5")
	if err != nil {
		t.Fatal(err)
	}
	srv, states := nvmltest.DGXH100(rec)
	return states, nvmlOpts(t, srv)
}

func nvmlOpts(t *testing.T, srv *nvmlmock.Server) []HardwareOption {
	t.Helper()
	b, err := oc.NewNVMLBackend(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return []HardwareOption{
		WithCollector(nvidia.Name, func(cfg telemetry.Config) (telemetry.Collector, error) { return nvidia.New(srv, cfg), nil }),
		WithOCBackend(b),
	}
}

func powerLimits(states []*nvmltest.State) []uint32 {
	out := make([]uint32, len(states))
	for i, s := range states {
		out[i] = s.Snapshot().PowerLimitMW
	}
	return out
}

func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// A set-overclock command goes from the controller over the real stream
// to an agent driving fake NVML cards: out-of-range values are refused
// with a clear error and change nothing, valid ones show up in the rig's
// GPU rows, and a clean stop puts the cards back.
func TestSetOverclockThroughController(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := testLog(t)

	scfg := server.DefaultConfig()
	scfg.DataDir, scfg.GRPCAddr, scfg.HTTPAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	scfg.ShutdownGrace = 2 * time.Second
	ctrl, err := server.New(scfg, "test", log)
	if err != nil {
		t.Fatal(err)
	}
	ctrlCtx, stopCtrl := context.WithCancel(ctx)
	ctrlDone := make(chan error, 1)
	go func() { ctrlDone <- ctrl.Serve(ctrlCtx) }()
	defer func() { stopCtrl(); <-ctrlDone }()
	tok, _, err := ctrl.Fleet().CreateToken(ctrl.CA().Hash(), time.Hour, 1, "oc-rig", "test")
	if err != nil {
		t.Fatal(err)
	}

	states, opts := fakeGPUs(t)
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Controller, cfg.Token, cfg.TokenFile = t.TempDir(), ctrl.GRPCAddr(), tok, ""
	cfg.ReportInterval = 100 * time.Millisecond
	hw, err := OpenHardware(ctx, cfg, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(ctx, cfg, "test", hw, log)
	if err != nil {
		t.Fatal(err)
	}
	hw.Attach(a)
	if err := hw.StartOverclock(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stopAgent := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- a.Run(runCtx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopAgent()
			<-runDone
			if err := hw.Close(ctx); err != nil {
				t.Errorf("close: %v", err)
			}
		}
	}
	defer stop()
	rig := a.RigID()
	f := ctrl.Fleet()

	rigGPUs := func() []*quarryv1.GPUStats {
		r, err := f.Rig(rig)
		if err != nil {
			return nil
		}
		return r.Gpus
	}
	eventually(t, "eight GPU rows on the controller", func() bool {
		g := rigGPUs()
		return len(g) == 8 && g[7].Name == h100Model && g[7].GetPowerLimitW() == 700 && g[7].BusId != ""
	})

	run := func(payload string) *quarryv1.CommandRecord {
		t.Helper()
		rec, err := f.QueueCommand(rig, quarryv1.CommandKind_COMMAND_KIND_SET_OVERCLOCK, []byte(payload), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		var done *quarryv1.CommandRecord
		eventually(t, "command result", func() bool {
			r, err := f.Command(rec.Command.Id)
			if err == nil && (r.Status == quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED || r.Status == quarryv1.CommandStatus_COMMAND_STATUS_FAILED) {
				done = r
				return true
			}
			return false
		})
		return done
	}

	res := run(tooHighOC)
	if res.Status != quarryv1.CommandStatus_COMMAND_STATUS_FAILED {
		t.Fatalf("900 W on a 700 W card: %v", res)
	}
	for _, want := range []string{"refused, nothing changed", "power_limit_w 900", "outside the card's limits", "allowed 200..700 W"} {
		if !strings.Contains(res.Error, want) {
			t.Errorf("error %q lacks %q", res.Error, want)
		}
	}
	for i, mw := range powerLimits(states) {
		if mw != defaultMW {
			t.Errorf("gpu %d power limit %d mW after a refused profile", i, mw)
		}
	}

	res = run("profiles: [{name: x, match: {index: [0]}, power_limt_w: 1}]")
	if res.Status != quarryv1.CommandStatus_COMMAND_STATUS_FAILED || !strings.Contains(res.Error, "invalid profile file") || !strings.Contains(res.Error, "power_limt_w") {
		t.Errorf("misspelt key: %v", res)
	}

	res = run(ecoFirst2)
	if res.Status != quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
		t.Fatalf("eco profile: %v", res)
	}
	if got := string(res.Output); got != "defaults on GPU 2,3,4,5,6,7; eco on GPU 0,1" {
		t.Errorf("output %q", got)
	}
	if s := states[0].Snapshot(); s.PowerLimitMW != 450000 || s.GPULocked != [2]uint32{1200, 1755} {
		t.Errorf("gpu 0 after eco: %+v", s)
	}
	if s := states[2].Snapshot(); s.PowerLimitMW != defaultMW || s.GPULocked != [2]uint32{} {
		t.Errorf("gpu 2 untargeted but changed: %+v", s)
	}
	eventually(t, "applied profile in the rig's GPU rows", func() bool {
		g := rigGPUs()
		return len(g) == 8 && g[0].AppliedProfile == "eco" && g[1].AppliedProfile == "eco" && g[2].AppliedProfile == "" && g[0].GetPowerLimitW() == 450
	})

	// Clean stop restores defaults; the commanded file is kept for the
	// next start.
	stop()
	for i, s := range states {
		if v := s.Snapshot(); v.PowerLimitMW != defaultMW || v.GPULocked != [2]uint32{} {
			t.Errorf("gpu %d after clean stop: %+v", i, v)
		}
	}
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, OCCommandFile)); err != nil || string(b) != ecoFirst2 {
		t.Errorf("commanded profile record: %q %v", b, err)
	}
}

// A restarted agent re-applies the profile the controller last sent, in
// preference to its own oc_profiles file; an empty command clears it for
// good.
func TestOverclockSurvivesRestartAndClear(t *testing.T) {
	ctx := context.Background()
	states, opts := fakeGPUs(t)
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.OCProfiles = filepath.Join(t.TempDir(), "local.yaml")
	local := "profiles:\n  - name: local\n    match: {index: [3]}\n    power_limit_w: 300\n"
	if err := os.WriteFile(cfg.OCProfiles, []byte(local), 0o600); err != nil {
		t.Fatal(err)
	}
	open := func() *Hardware {
		t.Helper()
		hw, err := OpenHardware(ctx, cfg, testLog(t), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := hw.StartOverclock(ctx); err != nil {
			t.Fatal(err)
		}
		return hw
	}

	hw := open()
	if got := powerLimits(states); got[3] != 300000 || got[0] != defaultMW {
		t.Fatalf("local file not applied: %v", got)
	}
	r, err := hw.Sample(ctx)
	if err != nil {
		t.Logf("sample: %v", err)
	}
	if len(r.Gpus) != 8 || r.Gpus[3].AppliedProfile != "local" || r.Gpus[0].AppliedProfile != "" {
		t.Errorf("applied profile in report: %v", r.Gpus)
	}
	if _, err := hw.SetOverclock(ctx, []byte(ecoFirst2)); err != nil {
		t.Fatal(err)
	}
	if got := powerLimits(states); got[3] != defaultMW || got[0] != 450000 {
		t.Errorf("commanded profile must replace the local one: %v", got)
	}
	if err := hw.Close(ctx); err != nil {
		t.Fatal(err)
	}

	hw = open()
	if got := powerLimits(states); got[0] != 450000 || got[1] != 450000 || got[3] != defaultMW {
		t.Errorf("after restart: %v", got)
	}
	out, err := hw.SetOverclock(ctx, nil)
	if err != nil || string(out) != "defaults on GPU 0,1,2,3,4,5,6,7" {
		t.Fatalf("clear: %q %v", out, err)
	}
	for i, s := range states {
		if v := s.Snapshot(); v.PowerLimitMW != defaultMW || v.GPULocked != [2]uint32{} {
			t.Errorf("gpu %d after clear: %+v", i, v)
		}
	}
	if err := hw.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Cleared stays cleared: the local file does not come back.
	hw = open()
	defer hw.Close(ctx)
	if got := powerLimits(states); got[3] != defaultMW {
		t.Errorf("local profile came back after a clear: %v", got)
	}
}

// A card that falls off the bus is reported lost, and the others keep
// their figures.
func TestLostGPUReported(t *testing.T) {
	ctx := context.Background()
	states, opts := fakeGPUs(t)
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	hw, err := OpenHardware(ctx, cfg, testLog(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer hw.Close(ctx)
	if _, err := hw.Sample(ctx); err != nil {
		t.Logf("sample: %v", err)
	}
	states[5].SetLost()
	r, _ := hw.Sample(ctx)
	if len(r.Gpus) != 8 {
		t.Fatalf("gpus = %d", len(r.Gpus))
	}
	lost := r.Gpus[5]
	if !lost.Lost || lost.Name != h100Model || lost.TemperatureC != nil || lost.PowerW != nil {
		t.Errorf("lost gpu: %v", lost)
	}
	if g := r.Gpus[4]; g.Lost || g.TemperatureC == nil || g.GetTemperatureC() != 31 {
		t.Errorf("healthy gpu: %v", g)
	}
}

// Without NVML the rig still reports and says why it cannot overclock.
func TestSetOverclockWithoutGPUs(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	hw, err := OpenHardware(ctx, cfg, testLog(t),
		WithCollector(nvidia.Name, func(telemetry.Config) (telemetry.Collector, error) { return noGPUs{}, nil }),
		WithOCBackend(noCards{}))
	if err != nil {
		t.Fatal(err)
	}
	defer hw.Close(ctx)
	hw.ocErr = errors.New("nvml: library not found")
	_, err = hw.SetOverclock(ctx, []byte(ecoFirst2))
	if err == nil || !strings.Contains(err.Error(), "this rig cannot overclock: nvml: library not found") {
		t.Errorf("profile on a rig without NVML: %v", err)
	}
	if out, err := hw.SetOverclock(ctx, nil); err != nil || string(out) != "no GPU to overclock" {
		t.Errorf("clear on a rig without NVML: %q %v", out, err)
	}
	r, err := hw.Sample(ctx)
	if r.Host == nil || r.Host.MemoryTotalBytes == 0 {
		t.Errorf("host figures missing: %v (%v)", r.Host, err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, what, waitPeriod, cond)
}

// BenchmarkHardwareSample is one report as the agent makes it: the real
// host plus eight fake H100s, converted to the wire type.
func BenchmarkHardwareSample(b *testing.B) {
	rec, err := nvmltest.Load("h100_sxm5")
	if err != nil {
		b.Fatal(err)
	}
	srv, _ := nvmltest.DGXH100(rec)
	ocb, err := oc.NewNVMLBackend(srv)
	if err != nil {
		b.Fatal(err)
	}
	defer ocb.Close()
	cfg := DefaultConfig()
	cfg.DataDir = b.TempDir()
	ctx := context.Background()
	hw, err := OpenHardware(ctx, cfg, nil,
		WithCollector(nvidia.Name, func(c telemetry.Config) (telemetry.Collector, error) { return nvidia.New(srv, c), nil }),
		WithOCBackend(ocb))
	if err != nil {
		b.Fatal(err)
	}
	defer hw.Close(ctx)
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := hw.Sample(ctx); len(r.Gpus) != 8 {
			b.Fatalf("gpus = %d", len(r.Gpus))
		}
	}
}
