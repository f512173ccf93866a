package minerfetch

import (
	"context"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
)

// Refusals that need no controller: the sheet came from the controller,
// but names that could leave miners_dir, an unpinned catalogue sheet and
// an archive over the rig's cap are refused before any download.
func TestInstallRefusesBeforeDownloading(t *testing.T) {
	pin := &flightsheet.Archive{SHA256: strings.Repeat("a", 64), Size: 10, Binary: "x"}
	cases := []struct {
		name string
		m    flightsheet.Miner
		want string
	}{
		{"no pin", flightsheet.Miner{Name: "xmrig", Version: "1"}, "no archive pin"},
		{"path sheet", flightsheet.Miner{Name: "xmrig", Path: "/m/x", SHA256: pin.SHA256}, "no archive pin"},
		{"name climbs", flightsheet.Miner{Name: "..", Version: "1", SHA256: pin.SHA256, Archive: pin}, "not a plain name"},
		{"version climbs", flightsheet.Miner{Name: "xmrig", Version: "../../etc", SHA256: pin.SHA256, Archive: pin}, "not a plain name"},
		{"hidden", flightsheet.Miner{Name: "xmrig", Version: ".unpack", SHA256: pin.SHA256, Archive: pin}, "not a plain name"},
		{"dash in name", flightsheet.Miner{Name: "a-b", Version: "1", SHA256: pin.SHA256, Archive: pin}, "'-'"},
		{"too large", flightsheet.Miner{Name: "xmrig", Version: "1", SHA256: pin.SHA256, Archive: &flightsheet.Archive{SHA256: pin.SHA256, Size: 1 << 40, Binary: "x"}}, "more than"},
	}
	in := &Installer{MinersDir: t.TempDir(), StateDir: t.TempDir()}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := in.Install(context.Background(), c.m, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}
