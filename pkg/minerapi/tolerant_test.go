package minerapi

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/minerapi/internal/recorded"
)

// TestDecodeTolerantShapes feeds real captures carrying each firmware defect
// through the tolerant decoder. The `}{` captures are verbatim; the other
// defects are applied to a real capture at the place the firmware puts them
// (see internal/recorded/README.md for where each shape was reported).
func TestDecodeTolerantShapes(t *testing.T) {
	sum := string(recorded.MustGet(recorded.AntminerD3Summary))
	edit := func(old, new string) []byte {
		t.Helper()
		if !strings.Contains(sum, old) {
			t.Fatalf("capture lacks %q", old)
		}
		return []byte(strings.Replace(sum, old, new, 1))
	}
	type summary struct {
		Status  []cgStatus `json:"STATUS"`
		Summary []struct {
			Elapsed num `json:"Elapsed"`
			GHS5s   num `json:"GHS 5s"`
			GHSav   num `json:"GHS av"`
		} `json:"SUMMARY"`
	}
	tests := []struct {
		name  string
		in    []byte
		check func(s summary) bool
	}{
		{"valid", []byte(sum), func(s summary) bool { return s.Summary[0].GHSav.V == 15914.88 }},
		{"trailing NUL", append([]byte(sum), 0), func(s summary) bool { return s.Summary[0].Elapsed.V == 87733 }},
		{"bytes after the closing brace", append([]byte(sum), "\x00{\"STATUS\":[{\"STA"...),
			func(s summary) bool { return s.Summary[0].Elapsed.V == 87733 }},
		{"escaped single quote", edit(`"Description":"cgminer 4.10.0"`, `"Description":"cgminer \'4.10.0\'"`),
			func(s summary) bool { return s.Status[0].Description == "cgminer '4.10.0'" }},
		{"bare nan", edit(`"GHS av":15914.88`, `"GHS av":nan`),
			func(s summary) bool { return !s.Summary[0].GHSav.OK && s.Summary[0].GHS5s.V == 15679.6 }},
		{"bare -nan and inf", edit(`"GHS av":15914.88,"Found Blocks":7`, `"GHS av":-nan,"Found Blocks":inf`),
			func(s summary) bool { return !s.Summary[0].GHSav.OK && s.Summary[0].Elapsed.V == 87733 }},
		{"raw newline in a string", edit(`"Msg":"Summary"`, "\"Msg\":\"Sum\nmary\tok\""),
			func(s summary) bool { return s.Status[0].Msg == "Sum\nmary\tok" }},
		{"comma before closing brace", edit(`"Last getwork":1513826969}`, `"Last getwork":1513826969,}`),
			func(s summary) bool { return s.Summary[0].Elapsed.V == 87733 }},
		{"comma after opening bracket", edit(`"SUMMARY":[{`, `"SUMMARY":[,{`),
			func(s summary) bool { return s.Summary[0].Elapsed.V == 87733 }},
		{"missing comma between members", edit(`"Description":"cgminer 4.10.0"`, `"Description":"cgminer 4.10.0""temp0":1`),
			func(s summary) bool { return s.Status[0].Description == "cgminer 4.10.0" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s summary
			if err := decodeTolerant(tc.in, &s); err != nil {
				t.Fatalf("decodeTolerant: %v", err)
			}
			if len(s.Status) == 0 || len(s.Summary) == 0 || !tc.check(s) {
				t.Errorf("decoded %+v", s)
			}
		})
	}
	for _, name := range []string{recorded.AntminerL3PlusStats, recorded.AntminerD3Stats, recorded.BMMinerStats} {
		var env struct {
			Stats []map[string]json.RawMessage `json:"STATS"`
		}
		if err := decodeTolerant(recorded.MustGet(name), &env); err != nil || len(env.Stats) != 2 {
			t.Errorf("%s: %d STATS objects, %v; want 2", name, len(env.Stats), err)
		}
	}
}

func TestDecodeTolerantRefusesGarbage(t *testing.T) {
	for _, in := range []string{
		"", "\x00", "STATUS=S,When=1|garbage\x00", "<html>nginx</html>",
		"\x1b[31mGPU0 HW error\x00\xff\xfe{{\"hashrate\":[nan,}]]\n",
		`{"STATUS":[{"STATUS":"S"`, // truncated
		`{"a":[1,2}`,
	} {
		var v map[string]any
		if err := decodeTolerant([]byte(in), &v); err == nil {
			t.Errorf("decodeTolerant(%q) = %v, want an error", in, v)
		}
	}
}

// FuzzDecodeTolerant: no input panics, and a reply that is already JSON
// decodes exactly as the strict decoder decodes it.
func FuzzDecodeTolerant(f *testing.F) {
	for _, n := range []string{recorded.AntminerL3PlusStats, recorded.AntminerD3Summary, recorded.InnosiliconA9Stats, recorded.CGMinerDevs} {
		f.Add(recorded.MustGet(n))
	}
	f.Add([]byte("{\"a\":\"x\\'y\n\",\"b\":nan,}\x00tail"))
	f.Add([]byte(`[,{"a":1}{"b":-inf}""c"]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got any
		err := decodeTolerant(b, &got)
		if !json.Valid(b) {
			return
		}
		var want any
		_ = json.Unmarshal(b, &want)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("valid JSON %q decoded as %v, %v; want %v", b, got, err, want)
		}
		// Repairing valid JSON changes nothing but whitespace.
		if fixed, ok := repairJSON(b); ok && !bytes.Equal(compact(t, fixed), compact(t, b)) {
			t.Fatalf("repairJSON changed valid JSON %q into %q", b, fixed)
		}
	})
}

func compact(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, bytes.TrimRight(b, "\x00 \r\n\t")); err != nil {
		t.Fatalf("compact %q: %v", b, err)
	}
	return buf.Bytes()
}
