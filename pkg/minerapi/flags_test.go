package minerapi_test

import (
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
