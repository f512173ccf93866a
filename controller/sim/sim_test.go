package sim

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

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
	r, err := newRig("sim-x", i, p, db, "sim-x/", 1)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sheet(algo string) []byte {
	return []byte("name: s-" + algo + "\ncoin: c-" + algo + "\nalgorithm: " + algo + "\nminer: {name: trex, path: trex, sha256: 00}\npools: [{url: 'stratum+tcp://p:1', user: w}]\n")
}

func TestRigObeysCommandsAndKeepsThemAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rigs.db")
	r := testRig(t, path, 0)
	ctx := context.Background()
	first := r.Report(time.Now())
	if len(first.Gpus) != 6 || first.Miners[0].Algorithm != "etchash" || first.Miners[0].State != "running" || first.Miners[0].Hashrate < 300e6 {
		t.Fatalf("first report %v: want 6 GPUs mining etchash from the profile's initial job", first)
	}
	if _, err := r.HandleCommand(ctx, &quarryv1.Command{Kind: quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, Payload: sheet("kawpow")}); err != nil {
		t.Fatal(err)
	}
	rep := r.Report(time.Now().Add(10 * time.Second))
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
	rep = r.Report(time.Now().Add(20 * time.Second))
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
	r := testRig(t, filepath.Join(t.TempDir(), "rigs.db"), 2)
	now := time.Now()
	r.Report(now)
	r.Crash()
	r.LoseGPU()
	rep := r.Report(now.Add(10 * time.Second))
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
	if rep = r.Report(now.Add(20 * time.Second)); rep.Miners[0].State != "running" || len(rep.Events) != 0 {
		t.Fatalf("the report after a crash: %v, want running again and no repeated events", rep)
	}
}
