package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/minerarchive/archivetest"
)

func catalogueSheet(name, version, control string) string {
	return `name: ` + name + `
coin: RVN
algorithm: kawpow
miner:
  name: custom
  version: "` + version + `"
pools:
  - url: stratum+tcp://rvn.example.org:6060
    user: RWallet.e2e
extra_args: ["-control", "` + control + `"]
`
}

// The miner catalogue end to end through the real binaries: an admin adds
// the (fake) miner's tar.gz and zip with quarryctl, a flight sheet names
// a version, and the agent downloads it over its mTLS link, checks it,
// unpacks it into its miners_dir and runs it; an archive changed on the
// controller after it was pinned is refused with an event; a viewer may
// list the catalogue but not add to it; the agent reports what it holds.
func TestCatalogueEndToEnd(t *testing.T) {
	dir := t.TempDir()
	build := filepath.Join(dir, "build", "fakeminer")
	if out, err := exec.Command("go", "build", "-o", build, "github.com/quarryfleet/quarry/pkg/minerapi/fakeminer").CombinedOutput(); err != nil {
		t.Fatalf("build fakeminer: %v\n%s", err, out)
	}
	prog, err := os.ReadFile(build)
	if err != nil {
		t.Fatal(err)
	}
	archives := map[string][]byte{
		"fake-1.0.tar.gz": archivetest.TarGz(
			archivetest.Member{Name: "fake-1.0/", Dir: true},
			archivetest.Member{Name: "fake-1.0/fakeminer", Body: prog, Mode: 0o755},
			archivetest.Member{Name: "fake-1.0/README", Body: []byte("a fake miner")}),
		"fake-1.1.zip":    archivetest.Zip(archivetest.Member{Name: "fakeminer", Body: prog, Mode: 0o755}),
		"fake-9.0.tar.gz": archivetest.TarGz(archivetest.Member{Name: "fakeminer", Body: prog, Mode: 0o755}),
	}
	control := filepath.Join(dir, "control")
	cfgFile := filepath.Join(dir, "agent.yaml")
	files := map[string]string{cfgFile: fakeMinerAgentConfig}
	for _, v := range []string{"1.0", "1.1", "9.0"} {
		files[filepath.Join(dir, "sheet-"+v+".yaml")] = catalogueSheet("fake-"+v, v, control)
	}
	for name, body := range archives {
		files[filepath.Join(dir, name)] = string(body)
	}
	for name, body := range files {
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	ctrl := startController(t, dir, freePort(t), freePort(t))
	viewer := adminToken(t, ctrl, "wall", "viewer")
	out, err := ctrl.ctl(t, "--token", viewer, "miner", "add", "custom", "1.0", "--file", filepath.Join(dir, "fake-1.0.tar.gz"))
	if err == nil || !strings.Contains(out, "needs role admin") {
		t.Fatalf("viewer miner add: %v\n%s", err, out)
	}
	for _, a := range [][]string{{"1.0", "fake-1.0.tar.gz"}, {"1.1", "fake-1.1.zip"}, {"9.0", "fake-9.0.tar.gz"}} {
		out, err := ctrl.ctl(t, "miner", "add", "custom", a[0], "--file", filepath.Join(dir, a[1]))
		if err != nil || !strings.Contains(out, "added custom "+a[0]) || !strings.Contains(out, "fakeminer") {
			t.Fatalf("miner add %s: %v\n%s", a[0], err, out)
		}
	}
	out, err = ctrl.ctl(t, "--token", viewer, "miner", "list")
	if err != nil || !strings.Contains(out, "fake-1.0/fakeminer") || !strings.Contains(out, "zip") {
		t.Fatalf("viewer miner list: %v\n%s", err, out)
	}
	// Changed on the controller's disk after it was pinned.
	stored := filepath.Join(dir, "quarry-data", "catalogue", "custom-9.0.archive")
	b, err := os.ReadFile(stored)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x55
	if err := os.WriteFile(stored, b, 0o600); err != nil {
		t.Fatal(err)
	}

	minersDir := filepath.Join(dir, "miners")
	agent := startAgent(t, dir, ctrl.grpc, ctrl.newToken(t, "--rig-name", "cat-rig"), "-config", cfgFile, "-miners-dir", minersDir)
	eventually(t, "rig online", 30*time.Second, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "cat-rig")
		return ok && r.Online
	})

	out, err = ctrl.ctl(t, "--timeout", "2m", "flightsheet", "apply", "-f", filepath.Join(dir, "sheet-1.0.yaml"), "--rigs", "cat-rig", "--wait")
	if err != nil || !strings.Contains(out, "mining fake-1.0") {
		t.Fatalf("apply 1.0: %v\n%s", err, out)
	}
	bin10 := filepath.Join(minersDir, "custom-1.0", "fake-1.0", "fakeminer")
	first := onePID(t, bin10)
	eventually(t, "catalogue miner's stats at the controller", 15*time.Second, func() bool {
		ms := ctrl.rigMiners(t, "cat-rig")
		return len(ms) == 1 && ms[0].State == "running" && ms[0].Hashrate == fakeTrexHashrate
	})
	eventually(t, "install event at the controller", 10*time.Second, func() bool {
		return ctrl.hasEvent(t, "cat-rig", "miner_installed")
	})

	out, err = ctrl.ctl(t, "--timeout", "2m", "flightsheet", "apply", "-f", filepath.Join(dir, "sheet-1.1.yaml"), "--rigs", "cat-rig", "--wait")
	if err != nil || !strings.Contains(out, "mining fake-1.1") {
		t.Fatalf("apply 1.1 (zip): %v\n%s", err, out)
	}
	onePID(t, filepath.Join(minersDir, "custom-1.1", "fakeminer"))
	eventually(t, "1.0 miner replaced", 10*time.Second, func() bool { return gonePID(first) })

	// The tampered archive: refused, nothing unpacked, the miner running
	// before keeps running.
	out, err = ctrl.ctl(t, "--timeout", "2m", "flightsheet", "apply", "-f", filepath.Join(dir, "sheet-9.0.yaml"), "--rigs", "cat-rig", "--wait")
	if err == nil || !strings.Contains(out, "archive sha256 mismatch") {
		t.Fatalf("apply of a tampered archive: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(minersDir, "custom-9.0")); !os.IsNotExist(err) {
		t.Error("the tampered archive was unpacked")
	}
	onePID(t, filepath.Join(minersDir, "custom-1.1", "fakeminer"))
	eventually(t, "refusal event at the controller", 10*time.Second, func() bool {
		out, _ := ctrl.ctl(t, "rig", "events", "cat-rig")
		return strings.Contains(out, "flight_sheet_refused") && strings.Contains(out, "archive sha256 mismatch")
	})

	// On its next connection the agent says what it holds.
	agent.stop()
	startAgent(t, dir, ctrl.grpc, "", "-config", cfgFile, "-miners-dir", minersDir)
	eventually(t, "installed miners at the controller", 30*time.Second, func() bool {
		out, err := ctrl.ctl(t, "rig", "show", "cat-rig", "-o", "json")
		if err != nil {
			return false
		}
		var r struct {
			InstalledMiners []struct{ Name, Version string } `json:"installedMiners"`
		}
		if json.Unmarshal([]byte(out), &r) != nil {
			return false
		}
		var got []string
		for _, m := range r.InstalledMiners {
			got = append(got, m.Name+" "+m.Version)
		}
		return strings.Join(got, ",") == "custom 1.1,custom 1.0"
	})

	out, err = ctrl.ctl(t, "audit")
	if err != nil || !strings.Contains(out, "miner add") || !strings.Contains(out, "miner fetch") {
		t.Errorf("audit lacks the catalogue: %v\n%s", err, out)
	}
}
