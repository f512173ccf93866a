package metrics_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/metrics"
	"github.com/quarryfleet/quarry/controller/server"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

func fixture(t testing.TB) *quarryv1.Report {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "report_gpus.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := &quarryv1.Report{}
	if err := protojson.Unmarshal(b, r); err != nil {
		t.Fatal(err)
	}
	return r
}

func openFleet(t *testing.T) *fleet.Fleet {
	t.Helper()
	db := testsupport.OpenStore(t, filepath.Join(t.TempDir(), "quarry.db"), fleet.Buckets...)
	f, err := fleet.Open(db, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func commit(t *testing.T, f *fleet.Fleet, rigID string, r *quarryv1.Report) {
	t.Helper()
	done := make(chan struct{})
	if err := f.Ingest(context.Background(), rigID, r, func(uint64) { close(done) }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("report not committed")
	}
}

// The fleet's latest state comes out as the series in testdata/rig.prom,
// with the miner's per-GPU figures joined to NVML's cards by bus id.
func TestRigSeries(t *testing.T) {
	f := openFleet(t)
	if err := f.RegisterRig("rig-a", "alpha", "alpha.local"); err != nil {
		t.Fatal(err)
	}
	if err := f.RegisterRig("rig-b", "bravo", "bravo.local"); err != nil {
		t.Fatal(err)
	}
	r := fixture(t)
	r.Seq, r.TimeUnixNano = 1, 1700000000e9
	commit(t, f, "rig-a", r)
	e := metrics.New(f, metrics.Options{})
	e.SetProfit(func(id string) (float64, bool) { return 4.5, id == "rig-a" })
	e.SetOutboxDepth(func() map[string]int { return map[string]int{"billing": 3} })

	golden, err := os.Open(filepath.Join("testdata", "rig.prom"))
	if err != nil {
		t.Fatal(err)
	}
	defer golden.Close()
	names := []string{
		"quarry_rig_online", "quarry_rig_info", "quarry_rig_last_report_timestamp_seconds", "quarry_rig_reports_total", "quarry_rig_profit_usd_per_day", "quarry_rig_power_watts",
		"quarry_rig_cpu_usage_ratio", "quarry_rig_memory_used_bytes",
		"quarry_miner_hashrate_hashes_per_second", "quarry_miner_shares_total",
		"quarry_gpu_hashrate_hashes_per_second", "quarry_gpu_temperature_celsius", "quarry_gpu_fan_ratio", "quarry_gpu_power_watts",
		"quarry_gpu_sm_clock_hertz", "quarry_gpu_memory_clock_hertz", "quarry_gpu_lost",
		"quarry_controller_rigs", "quarry_controller_agents_connected", "quarry_controller_reports_committed_total", "quarry_controller_outbox_depth",
	}
	if err := testutil.CollectAndCompare(e, golden, names...); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(e.Registry()); err != nil || n == 0 {
		t.Errorf("gather: %d series, %v", n, err)
	}
}

// Absent readings stay absent: a card that reports no fan has no fan
// series rather than a zero.
func TestAbsentReadingsHaveNoSeries(t *testing.T) {
	f := openFleet(t)
	if err := f.RegisterRig("rig-a", "alpha", "alpha.local"); err != nil {
		t.Fatal(err)
	}
	commit(t, f, "rig-a", &quarryv1.Report{Seq: 1, TimeUnixNano: 1, Gpus: []*quarryv1.GPUStats{{Index: 0, Name: "passive card"}}})
	e := metrics.New(f, metrics.Options{})
	for _, name := range []string{"quarry_gpu_fan_ratio", "quarry_gpu_temperature_celsius", "quarry_gpu_power_watts", "quarry_rig_profit_usd_per_day", "quarry_controller_outbox_depth"} {
		if n := testutil.CollectAndCount(e, name); n != 0 {
			t.Errorf("%s: %d series for a reading nobody made", name, n)
		}
	}
	if n := testutil.CollectAndCount(e, "quarry_gpu_lost"); n != 1 {
		t.Errorf("quarry_gpu_lost: %d series, want 1", n)
	}
}

// A miner whose hashrate is unknown (warming, unreachable, crashed,
// stopped) has no hashrate sample, miner or GPU, and quarry_miner_up 0; a
// running one has both and up 1.
func TestUnknownHashrateHasNoSample(t *testing.T) {
	tests := []struct {
		state string
		up    float64
	}{
		{quarryv1.MinerRunning, 1},
		{quarryv1.MinerWarming, 0},
		{quarryv1.MinerAPIUnreachable, 0},
		{quarryv1.MinerCrashed, 0},
		{quarryv1.MinerStopped, 0},
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			f := openFleet(t)
			if err := f.RegisterRig("rig-a", "alpha", "alpha.local"); err != nil {
				t.Fatal(err)
			}
			ms := &quarryv1.MinerStats{Miner: "xmrig", Algorithm: "rx/0", Coin: "XMR", State: tt.state,
				Gpus: []*quarryv1.MinerGPU{{BusId: "0000:01:00.0"}}}
			if tt.state == quarryv1.MinerRunning {
				ms.Hashrate, ms.Gpus[0].Hashrate = 19.2, 19.2
			}
			commit(t, f, "rig-a", &quarryv1.Report{Seq: 1, TimeUnixNano: 1, Miners: []*quarryv1.MinerStats{ms}})
			e := metrics.New(f, metrics.Options{})
			want := 0
			if tt.up == 1 {
				want = 1
			}
			for _, name := range []string{"quarry_miner_hashrate_hashes_per_second", "quarry_gpu_hashrate_hashes_per_second"} {
				if n := testutil.CollectAndCount(e, name); n != want {
					t.Errorf("%s: %d samples, want %d", name, n, want)
				}
			}
			exp := fmt.Sprintf(`# HELP quarry_miner_up 1 when the miner's hashrate is known (its stats API gave a reading); 0 when it is warming, unreachable, crashed or stopped, and then no hashrate sample is exported.
# TYPE quarry_miner_up gauge
quarry_miner_up{algorithm="rx/0",coin="XMR",miner="xmrig",name="alpha",rig="rig-a"} %g
`, tt.up)
			if err := testutil.CollectAndCompare(e, strings.NewReader(exp), "quarry_miner_up"); err != nil {
				t.Error(err)
			}
		})
	}
}

// CPU package power is exported when the rig reports it, and only then.
func TestCPUPowerSeries(t *testing.T) {
	f := openFleet(t)
	for _, id := range []string{"rig-a", "rig-b"} {
		if err := f.RegisterRig(id, id, id); err != nil {
			t.Fatal(err)
		}
	}
	w := 65.5
	commit(t, f, "rig-a", &quarryv1.Report{Seq: 1, TimeUnixNano: 1, Host: &quarryv1.HostStats{CpuPowerW: &w, CpuPowerSource: "rapl"}})
	commit(t, f, "rig-b", &quarryv1.Report{Seq: 1, TimeUnixNano: 1, Host: &quarryv1.HostStats{CpuPercent: 50}})
	e := metrics.New(f, metrics.Options{})
	exp := `# HELP quarry_rig_cpu_power_watts CPU package power, from RAPL or the agent's configured figure; absent when unknown.
# TYPE quarry_rig_cpu_power_watts gauge
quarry_rig_cpu_power_watts{name="rig-a",rig="rig-a"} 65.5
`
	if err := testutil.CollectAndCompare(e, strings.NewReader(exp), "quarry_rig_cpu_power_watts"); err != nil {
		t.Error(err)
	}
}

// liveController serves a real controller on loopback until the test ends.
func liveController(t *testing.T, tune func(*server.Config)) *server.Controller {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ShutdownGrace = 2 * time.Second
	if tune != nil {
		tune(&cfg)
	}
	c, err := server.New(cfg, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// A live scrape of a real controller passes promtool's metric lint.
func TestPromtoolCheckLiveScrape(t *testing.T) {
	promtool := testsupport.RequireTool(t, "promtool", "apt-get install prometheus, or make tools")
	c := liveController(t, nil)
	if err := c.Fleet().RegisterRig("rig-a", "alpha", "alpha.local"); err != nil {
		t.Fatal(err)
	}
	r := fixture(t)
	r.Seq, r.TimeUnixNano = 1, time.Now().UnixNano()
	commit(t, c.Fleet(), "rig-a", r)
	c.Fleet().CommandHandedToStream(&quarryv1.Command{CreatedUnixNano: time.Now().Add(-30 * time.Millisecond).UnixNano()})
	c.Metrics().SetProfit(func(string) (float64, bool) { return 1.25, true })
	c.Metrics().SetOutboxDepth(func() map[string]int { return map[string]int{"commands": 0} })

	resp, err := http.Get("http://" + c.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{"quarry_gpu_temperature_celsius{", "quarry_controller_reports_committed_total 1", "quarry_controller_report_ack_seconds_count 1", `quarry_controller_report_ack_seconds_bucket{le="+Inf"} 1`,
		`quarry_controller_command_send_seconds_bucket{le="0.025"} 0`, `quarry_controller_command_send_seconds_bucket{le="0.05"} 1`, "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(body))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// A scrape that takes longer than the dashboard's write timeout still
// arrives whole: a big fleet's /metrics is not cut off mid-body.
func TestScrapeOutlivesWriteTimeout(t *testing.T) {
	c := liveController(t, func(cfg *server.Config) { cfg.Web.WriteTimeout = 5 * time.Millisecond })
	// Enough rigs that building the scrape takes far longer than 5 ms.
	const rigs = 300
	for i := range rigs {
		id := fmt.Sprintf("rig-%03d", i)
		if err := c.Fleet().RegisterRig(id, id, id); err != nil {
			t.Fatal(err)
		}
		r := fixture(t)
		r.Seq, r.TimeUnixNano = 1, time.Now().UnixNano()
		commit(t, c.Fleet(), id, r)
	}
	start := time.Now()
	resp, err := http.Get("http://" + c.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape after %v: %d, %v (%d bytes)", time.Since(start), resp.StatusCode, err, len(body))
	}
	// The exposition is sorted by family name; the last rig's series and
	// the families after every rig's are there.
	for _, want := range []string{fmt.Sprintf(`rig="rig-%03d"`, rigs-1), "quarry_rig_reports_total", "process_resident_memory_bytes"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape of %d bytes after %v lacks %q", len(body), time.Since(start), want)
		}
	}
}
