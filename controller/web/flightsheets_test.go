package web_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/controller/web"
)

// The flight sheet editor has the controller read a sheet's YAML into its
// fields: any signed-in user (it reads nothing stored), CSRF-checked like
// every POST, bad YAML a 400 naming the problem, the size capped.
func TestParseFlightSheetForTheEditor(t *testing.T) {
	e := newEnv(t, web.Options{})
	viewer := e.login("viewer")
	sheet := `name: rvn
coin: RVN
algorithm: kawpow
miner: {name: trex, version: 0.26.8, api: {port: 4067, token: s3cret}}
pools:
  - {url: "stratum+tcp://rvn.example:6060", user: W.rig1, password: x}
  - {url: "daemon+http://127.0.0.1:8766", user: W}
extra_args: ["--intensity", "22"]
overclock: eco
expected_hashrate: 54 MH/s
`
	body, _ := json.Marshal(map[string]string{"yaml": sheet})
	code, out := viewer.do("POST", "/api/flightsheets/parse", string(body))
	if code != http.StatusOK {
		t.Fatalf("parse: %d %s", code, out)
	}
	var f web.SheetForm
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatal(err)
	}
	if f.Name != "rvn" || f.Miner.Version != "0.26.8" || f.Miner.APIPort != 4067 || f.Miner.APIToken != "s3cret" || len(f.Pools) != 2 ||
		f.Pools[0].Solo || !f.Pools[1].Solo || f.Pools[0].Password != "x" || strings.Join(f.ExtraArgs, " ") != "--intensity 22" ||
		f.Overclock != "eco" || f.ExpectedHashrate != "54 MH/s" {
		t.Errorf("form %+v", f)
	}
	for _, tt := range []struct {
		name, body string
		csrf       bool
		want       int
		says       string
	}{
		{"unknown field", `{"yaml": "name: x\npoools: []\n"}`, true, 400, "poools"},
		{"not json", `yaml: x`, true, 400, "want"},
		{"too big", `{"yaml": "` + strings.Repeat("a", 200<<10) + `"}`, true, 413, "64 KiB"},
		{"no CSRF header", string(body), false, 403, "X-Quarry-CSRF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, _ := viewer.doHeader("POST", "/api/flightsheets/parse", tt.body, tt.csrf)
			if code != tt.want || !strings.Contains(out, tt.says) {
				t.Errorf("%d %s, want %d saying %q", code, out, tt.want, tt.says)
			}
		})
	}
	if code, _ := e.client().do("POST", "/api/flightsheets/parse", string(body)); code != http.StatusUnauthorized {
		t.Errorf("signed out: %d, want 401", code)
	}
}
