package sim

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quarryfleet/quarry/pkg/minerapi"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestParseProfile(t *testing.T) {
	ok := `
gpu_models:
  A: {algorithms: {etchash: {hashrate: 60 MH/s, power: 120}}}
rigs: [{name: a, gpus: {A: 2}}]
`
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"valid", ok, ""},
		{"unknown field", ok + "bogus: 1\n", "bogus"},
		{"unknown model", strings.Replace(ok, "{A: 2}", "{B: 2}", 1), `unknown GPU model "B"`},
		{"no gpus", strings.Replace(ok, "{A: 2}", "{A: 0}", 1), "no GPUs"},
		{"negative hashrate", strings.Replace(ok, "60 MH/s", "-1", 1), "non-negative"},
		{"zero hashrate", strings.Replace(ok, "60 MH/s", "0", 1), "must be positive"},
		{"too many cards", strings.Replace(ok, "{A: 2}", "{A: 1000}", 1), "want 0 to 32"},
		{"bad noise", ok + "noise: 2\n", "noise"},
		{"no models", "rigs: []\n", "gpu_models"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProfile([]byte(tc.yaml))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
	if _, err := DefaultProfile(); err != nil {
		t.Fatalf("built-in profile: %v", err)
	}
}

func testRig(t *testing.T, path string, i int) *Rig {
	t.Helper()
	p, err := DefaultProfile()
	if err != nil {
		t.Fatal(err)
	}
	p.CrashesPerHour, p.GPULossesPerHour = 0, 0
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r, err := newRig("sim-x", i, p, db, "sim-x/", 1, newAPIReader())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func sheet(algo string) []byte { return sheetFor(algo, "trex") }

func sheetFor(algo, miner string) []byte {
	return []byte("name: s-" + algo + "\ncoin: c-" + algo + "\nalgorithm: " + algo + "\nminer: {name: " + miner + ", path: " + miner + ", sha256: 00}\npools: [{url: 'stratum+tcp://p:1', user: w}]\n")
}

func TestRigObeysCommandsAndKeepsThemAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rigs.db")
	r := testRig(t, path, 0)
	ctx := context.Background()
	first := r.Report(ctx, time.Now())
	if len(first.Gpus) != 6 || first.Miners[0].Algorithm != "etchash" || first.Miners[0].State != "running" || first.Miners[0].Hashrate < 300e6 {
		t.Fatalf("first report %v: want 6 GPUs mining etchash from the profile's initial job", first)
	}
	if _, err := r.HandleCommand(ctx, &quarryv1.Command{Kind: quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, Payload: sheet("kawpow")}); err != nil {
		t.Fatal(err)
	}
	rep := r.Report(ctx, time.Now().Add(10*time.Second))
	if m := rep.Miners[0]; m.Algorithm != "kawpow" || m.Coin != "c-kawpow" || m.Hashrate < 100e6 || m.Hashrate > 200e6 {
		t.Fatalf("after the sheet: %v, want kawpow at about 6×25 MH/s", m)
	}
	if *rep.Gpus[0].PowerW < 140 {
		t.Fatalf("power %v W on kawpow, want about 160", *rep.Gpus[0].PowerW)
	}
	// A sheet for an algorithm the cards have no figures for changes nothing.
	if _, err := r.HandleCommand(ctx, &quarryv1.Command{Kind: quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, Payload: sheet("randomx")}); err == nil {
		t.Fatal("randomx sheet accepted by cards without randomx figures")
	}
	if _, algo, mining := r.Job(); algo != "kawpow" || !mining {
		t.Fatalf("job %s mining=%v after a refused sheet, want kawpow still mining", algo, mining)
	}
	if _, err := r.HandleCommand(ctx, &quarryv1.Command{Kind: quarryv1.CommandKind_COMMAND_KIND_STOP_MINER}); err != nil {
		t.Fatal(err)
	}
	rep = r.Report(ctx, time.Now().Add(20*time.Second))
	if m := rep.Miners[0]; m.State != "stopped" || m.Hashrate != 0 {
		t.Fatalf("after stop: %v", m)
	}
	r.db.Close()
	again := testRig(t, path, 0)
	if _, algo, mining := again.Job(); algo != "kawpow" || mining {
		t.Fatalf("after restart: job %s mining=%v, want kawpow stopped", algo, mining)
	}
}

func TestRigCrashAndLostGPU(t *testing.T) {
	ctx := context.Background()
	r := testRig(t, filepath.Join(t.TempDir(), "rigs.db"), 2)
	now := time.Now()
	r.Report(ctx, now)
	r.Crash()
	r.LoseGPU()
	rep := r.Report(ctx, now.Add(10*time.Second))
	if m := rep.Miners[0]; m.State != "crashed" || m.Hashrate != 0 {
		t.Fatalf("after a crash: %v", m)
	}
	kinds := map[string]bool{}
	for _, e := range rep.Events {
		kinds[e.Kind] = true
	}
	for _, k := range []string{"miner_exited", "watchdog_restart_miner", "watchdog_gpu_lost"} {
		if !kinds[k] {
			t.Errorf("no %s event in %v", k, rep.Events)
		}
	}
	lost := 0
	for _, g := range rep.Gpus {
		if g.Lost {
			lost++
		}
	}
	if lost != 1 {
		t.Errorf("%d GPUs lost, want 1", lost)
	}
	if rep = r.Report(ctx, now.Add(20*time.Second)); rep.Miners[0].State != "running" || len(rep.Events) != 0 {
		t.Fatalf("the report after a crash: %v, want running again and no repeated events", rep)
	}
}

// A rig mining on a sheet that names miner X serves X's recorded stats
// reply with its simulated figures, and its report carries what X's
// adapter reads from it: the same total and per-card hash rates, and the
// version the real miner's capture names.
func TestRigReportsWhatItsMinerAPISays(t *testing.T) {
	ctx := context.Background()
	r := testRig(t, filepath.Join(t.TempDir(), "rigs.db"), 2) // the 4x3080 rig
	reg := minerapi.Default()
	tests := []struct {
		miner, algo, version string
	}{
		{"trex", "kawpow", "0.26.8"},
		{"lolminer", "etchash", "1.82"},
		{"xmrig", "autolykos2", "6.21.0"},
		{"gminer", "etchash", "GMiner 3.44"},
		{"teamredminer", "etchash", ""},
	}
	now := time.Now()
	for i, tc := range tests {
		t.Run(tc.miner, func(t *testing.T) {
			if _, err := r.HandleCommand(ctx, &quarryv1.Command{Kind: quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, Payload: sheetFor(tc.algo, tc.miner)}); err != nil {
				t.Fatal(err)
			}
			miner, ep, ok := r.MinerAPI()
			if !ok || miner != tc.miner {
				t.Fatalf("miner API %q (%v), want %s serving", miner, ok, tc.miner)
			}
			rep := r.Report(ctx, now.Add(time.Duration(i+1)*10*time.Second))
			ms := rep.Miners[0]
			if ms.State != "running" {
				t.Fatalf("miner %+v, want running", ms)
			}
			// What the simulated miner says now, read independently.
			ad, err := reg.New(tc.miner, minerapi.Options{Algorithm: tc.algo})
			if err != nil {
				t.Fatal(err)
			}
			st, err := ad.Stats(ctx, ep)
			if err != nil {
				t.Fatal(err)
			}
			if ms.Hashrate != st.TotalHashrate || ms.Hashrate < 4*0.8*float64(r.gpus[0].fig.Algorithms[tc.algo].Hashrate) {
				t.Errorf("reported %v H/s, the API says %v H/s; want equal and about 4 cards' worth", ms.Hashrate, st.TotalHashrate)
			}
			if len(ms.Gpus) != 4 || len(st.GPUs) != 4 {
				t.Fatalf("%d GPUs reported, %d in the API, want 4", len(ms.Gpus), len(st.GPUs))
			}
			for k, g := range ms.Gpus {
				if g.Hashrate != st.GPUs[k].Hashrate {
					t.Errorf("GPU %d: reported %v, API %v", k, g.Hashrate, st.GPUs[k].Hashrate)
				}
			}
			if tc.version != "" && ms.Version != tc.version {
				t.Errorf("version %q, want the capture's %q", ms.Version, tc.version)
			}
		})
	}
	// Stopping the miner closes its API.
	if _, err := r.HandleCommand(ctx, &quarryv1.Command{Kind: quarryv1.CommandKind_COMMAND_KIND_STOP_MINER}); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := r.MinerAPI(); ok {
		t.Error("a stopped miner still serves its API")
	}
	// A miner with no recorded reply mines with the simulation's figures.
	if _, err := r.HandleCommand(ctx, &quarryv1.Command{Kind: quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, Payload: sheetFor("etchash", "nbminer")}); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := r.MinerAPI(); ok {
		t.Error("nbminer has no recorded reply here, yet an API serves")
	}
	if ms := r.Report(ctx, now.Add(time.Minute)).Miners[0]; ms.State != "running" || ms.Hashrate <= 0 {
		t.Errorf("nbminer: %+v, want running with the simulated hash rate", ms)
	}
}

func TestMinerAPIsSetting(t *testing.T) {
	p, err := DefaultProfile()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		set  string
		rigs int
		want bool
	}{
		{"", 5, true}, {"", MaxMinerAPIRigs, true}, {"", MaxMinerAPIRigs + 1, false},
		{"auto", 10000, false}, {"on", 10000, true}, {"off", 1, false},
	} {
		p.MinerAPIs = tc.set
		if got := p.minerAPIs(tc.rigs); got != tc.want {
			t.Errorf("miner_apis %q with %d rigs: %v, want %v", tc.set, tc.rigs, got, tc.want)
		}
	}
	if _, err := ParseProfile(append(slices.Clone(defaultProfileYAML), "miner_apis: sometimes\n"...)); err == nil || !strings.Contains(err.Error(), "miner_apis") {
		t.Errorf("miner_apis: sometimes: %v, want refused", err)
	}
}

func TestNewRefusesAnInFlightWindowOverTheBuffer(t *testing.T) {
	for _, c := range []struct {
		inFlight int
		want     string
	}{{-1, "in-flight reports: -1"}, {11, "in-flight reports: 11 is outside 1 to the buffer's 10"}} {
		_, err := New(context.Background(), Options{Addr: "127.0.0.1:7443", DataDir: t.TempDir(), Rigs: 1, BufferSize: 10, Saturate: true, InFlight: c.inFlight})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("in-flight %d: got %v, want an error with %q", c.inFlight, err, c.want)
		}
	}
}

// A switch measured to one algorithm times only the sheets that move a
// rig there (or that it refuses), each from its arrival on the stream.
func TestMeasureSwitchToAlgorithm(t *testing.T) {
	var st Stats
	if got := st.MeasureSwitch(true, "Autolykos2"); got != nil {
		t.Fatalf("nothing was being measured, got %v", got)
	}
	t0 := time.Now()
	st.noteArrived("a", "c1")
	st.noteApplied("a", "c1", "etchash", Applied{Queued: t0, Received: t0, Done: t0})
	if n := st.SwitchAcked(); n != 0 {
		t.Fatalf("a late first assignment to etchash was timed (%d)", n)
	}
	st.noteArrived("a", "c2")
	st.noteApplied("a", "c2", "autolykos2", Applied{Queued: t0, Received: t0.Add(time.Hour), Done: t0.Add(time.Hour)})
	st.noteApplied("b", "c3", "etchash", Applied{Queued: t0, Received: t0, Done: t0, Err: true})
	st.noteApplied("a", "c4", "autolykos2", Applied{Queued: t0, Received: t0, Done: t0})
	got := st.MeasureSwitch(false, "")
	if len(got) != 2 || !got["b"].Err {
		t.Fatalf("timed %v, want rig a's switch and rig b's refusal", got)
	}
	if a := got["a"]; a.Arrived.IsZero() || !a.Arrived.Before(a.Received) {
		t.Errorf("rig a arrived %v, handled %v: want its arrival on the stream, before its handling", a.Arrived, a.Received)
	}
	if b := got["b"]; !b.Arrived.Equal(b.Received) {
		t.Errorf("rig b had no arrival noted: want its handling time, got %v", b.Arrived)
	}
	if got := st.MeasureSwitch(false, ""); got != nil {
		t.Errorf("after stopping, %v", got)
	}
}

func TestProfileMinesAlgorithm(t *testing.T) {
	p, err := DefaultProfile()
	if err != nil {
		t.Fatal(err)
	}
	for algo, want := range map[string]bool{"etchash": true, "Autolykos2": true, "autolykos": true, "sha256d": false, "autolykos3": false, "": false} {
		if got := p.Mines(algo); got != want {
			t.Errorf("Mines(%q) = %v, want %v", algo, got, want)
		}
	}
}
