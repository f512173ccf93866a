package miner

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/minerapi"
)

// The xmrig adapter configures the miner by file: the supervisor must write
// it into the miner's working directory before the miner reads it.
func TestAdapterConfigFileReachesMiner(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "xmrig")
	body := "#!/bin/sh\necho \"args: $*\"\ncat xmrig.json\necho\nexec sleep 30\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	adapter, err := minerapi.Default().New("xmrig", minerapi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{Launcher: ForAdapter(adapter), MinersDir: filepath.Dir(script)})
	sheet := sheetFor(script)
	sheet.Miner.API = flightsheet.API{Port: 18080, Token: "tok"}
	sheet.Pools[0].Password = "secret"
	if err := h.s.Start(context.Background(), sheet); err != nil {
		t.Fatal(err)
	}
	lines := waitTail(t, h.s, "\"user\"")
	if !strings.Contains(strings.Join(lines, "\n"), "args: --config=xmrig.json") {
		t.Errorf("miner did not get the config argument:\n%s", strings.Join(lines, "\n"))
	}
	cfgPath := filepath.Join(h.dir, "miner", "xmrig.json")
	st, err := os.Stat(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, want 0600: it holds pool passwords", st.Mode().Perm())
	}
	b, _ := os.ReadFile(cfgPath)
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("config is not JSON: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), "wallet.rig") || !strings.Contains(string(b), "secret") {
		t.Errorf("config lacks the pool login:\n%s", b)
	}
}

func TestLauncherRejectsPathInConfigName(t *testing.T) {
	h := newHarness(t, Config{Launcher: launcherFunc(func(*flightsheet.FlightSheet) (Launch, error) {
		return Launch{ConfigName: "../escape.json", Config: []byte("{}")}, nil
	})})
	err := h.s.Start(context.Background(), sheetFor(testMiner))
	if err == nil || !strings.Contains(err.Error(), "plain file name") {
		t.Fatalf("Start = %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "escape.json")); err == nil {
		t.Error("config written outside the work dir")
	}
}

type launcherFunc func(*flightsheet.FlightSheet) (Launch, error)

func (f launcherFunc) Launch(fs *flightsheet.FlightSheet) (Launch, error) { return f(fs) }
