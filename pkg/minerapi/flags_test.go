package minerapi_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/minerapi"
)

// TestOwnedFlagsCoverLaunch: every option an adapter's Launch emits is
// either listed as owned (so extra_args cannot override it) or one of the
// few cosmetic options Quarry adds, and every field that shows up in the
// arguments has its flags listed.
func TestOwnedFlagsCoverLaunch(t *testing.T) {
	cosmetic := map[string]bool{"--no-color": true, "--color": true, "--watchdog": true, "-r": true,
		"--no_ntime_roll": true, "--ssl": true, "--tls": true}
	for _, name := range minerapi.Default().Names() {
		if name == "custom" || name == "whatsminer" {
			if len(minerapi.OwnedFlags(name)) != 0 {
				t.Errorf("%s: owns flags but takes no command line", name)
			}
			continue
		}
		owned := map[string]string{}
		for _, o := range minerapi.OwnedFlags(name) {
			owned[o.Flag] = o.Field
		}
		if len(owned) == 0 {
			t.Errorf("%s: no owned flags listed", name)
			continue
		}
		fs := sheet()
		fs.ExtraArgs = nil
		for i := range fs.Pools {
			fs.Pools[i].Password = "" // NBMiner takes none
		}
		l, err := newAdapter(t, name, minerapi.Options{}).Launch(fs)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, a := range l.Args {
			if !strings.HasPrefix(a, "-") || strings.HasPrefix(a, "-4") { // "-4067": claymore's read-only port value
				continue
			}
			flag, _, _ := strings.Cut(a, "=")
			if _, ok := owned[flag]; !ok && !cosmetic[flag] {
				t.Errorf("%s: Launch emits %s, which extra_args could override", name, flag)
			}
		}
	}
}

func TestCheckExtraArgs(t *testing.T) {
	tests := []struct {
		adapter string
		extra   []string
		field   string // "" = accepted
	}{
		{"xmrig", []string{"--http-port", "9999"}, "api"},
		{"xmrig", []string{"--http-access-token=abc"}, "api"},
		{"xmrig", []string{"-o", "pool:1"}, "pools"},
		{"xmrig", []string{"--randomx-1gb-pages", "--cpu-priority=2"}, ""},
		{"trex", []string{"--api-bind-http", "0.0.0.0:1"}, "api"},
		{"lolminer", []string{"--algo", "ETHASH"}, "algorithm"},
		{"gminer", []string{"--devices", "0"}, "devices"},
		{"phoenixminer", []string{"-cdmport", "1"}, "api"},
		{"nbminer", []string{"-o1", "x"}, "pools"},
		{"ccminer", []string{"--intensity=21"}, ""},
		{"custom", []string{"--anything"}, ""},
	}
	for _, tc := range tests {
		err := minerapi.CheckExtraArgs(tc.adapter, tc.extra)
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s %q: %v, want accepted", tc.adapter, tc.extra, err)
		case tc.field != "" && (!errors.Is(err, minerapi.ErrConfig) || !strings.Contains(err.Error(), "flight sheet's "+tc.field)):
			t.Errorf("%s %q: err = %v, want a refusal naming %s", tc.adapter, tc.extra, err, tc.field)
		}
	}
}
