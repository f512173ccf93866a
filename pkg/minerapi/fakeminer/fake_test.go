package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/minerapi/internal/recorded"
)

func TestReplyMutations(t *testing.T) {
	m := &miner{api: "bmminer", stderr: io.Discard}
	m.base = cues{scale: 0.5, hot: 99}
	m.file = m.base
	m.shares = 7
	b, ok := m.reply("stats")
	if !ok {
		t.Fatal("no stats route")
	}
	if !bytes.Contains(b, []byte("}{")) || json.Valid(b) {
		t.Errorf("stats reply lost the firmware's missing comma: %.200s", b)
	}
	fixed := bytes.Replace(b, []byte("}{"), []byte("},{"), 1)
	var doc struct {
		STATS []map[string]any
	}
	if err := json.Unmarshal(fixed, &doc); err != nil {
		t.Fatal(err)
	}
	s := doc.STATS[1]
	if s["GHS 5s"] != "6993.71" || s["chain_rate6"] != "2335.91" {
		t.Errorf("rates not scaled as strings: %v %v", s["GHS 5s"], s["chain_rate6"])
	}
	// The first board that has a temperature gets the hot reading; empty
	// slots (0) stay empty.
	if s["temp2_6"] != float64(99) || s["temp2_1"] != float64(0) || s["temp2_7"] != float64(78) {
		t.Errorf("hot = %v %v %v", s["temp2_1"], s["temp2_6"], s["temp2_7"])
	}

	m = &miner{api: "xmrig", stderr: io.Discard, base: cues{scale: 1}, shares: 5}
	m.file = m.base
	b, _ = m.reply("/2/summary")
	var sum struct {
		Connection struct{ Accepted int } `json:"connection"`
		Hashrate   struct{ Total []float64 }
		Resources  struct{ Memory struct{ Total int64 } }
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Connection.Accepted != 417 || sum.Hashrate.Total[0] != 13321.44 || sum.Resources.Memory.Total != 16659546112 {
		t.Errorf("xmrig summary = %+v", sum)
	}
}

func TestControlFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "control")
	var errs bytes.Buffer
	m := &miner{api: "trex", stderr: &errs, exitCode: 3, base: cues{scale: 1}}
	m.file = m.base
	if _, exit := m.readControl(path); exit {
		t.Fatal("missing control file made the miner exit")
	}
	os.WriteFile(path, []byte("# comment\nhashrate 0.25\nhot 91\nnoshares\nbogus\n"), 0o600)
	m.readControl(path)
	if c := m.cues(); c.scale != 0.25 || c.hot != 91 || !c.noshares || c.hang || c.garbage {
		t.Errorf("cues = %+v", c)
	}
	if !strings.Contains(errs.String(), `unknown cue "bogus"`) {
		t.Errorf("unknown cue not reported: %s", errs.String())
	}
	os.WriteFile(path, nil, 0o600)
	m.readControl(path)
	if c := m.cues(); c != m.base {
		t.Errorf("empty file did not restore flags: %+v", c)
	}
	for text, want := range map[string]int{"crash\n": 3, "exit 7\n": 7} {
		os.WriteFile(path, []byte(text), 0o600)
		if code, exit := m.readControl(path); !exit || code != want {
			t.Errorf("%q: exit=%v code=%d, want %d", text, exit, code, want)
		}
	}
}

func TestGarbageAndUnknownRoute(t *testing.T) {
	m := &miner{api: "gminer", stderr: io.Discard, base: cues{scale: 1, garbage: true}}
	m.file = m.base
	if b, _ := m.reply("/stat"); json.Valid(b) {
		t.Error("garbage cue served valid JSON")
	}
	if _, ok := m.reply("/nope"); ok {
		t.Error("unknown route answered")
	}
	if _, err := recorded.Get(recorded.GminerStat); err != nil {
		t.Fatal(err)
	}
}
