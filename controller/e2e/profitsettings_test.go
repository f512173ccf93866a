package e2e

import (
	"strings"
	"testing"
)

// The profit settings seeded from the real controller's config file are
// changed with quarryctl over mTLS: an operator's changes become
// versions with their name, bad input is refused with the reason and
// stores nothing, a viewer is refused every change, an earlier version is
// restored, every change is audited, and after a restart the stored
// settings, not the file's, are in force.
func TestProfitSettingsThroughQuarryctl(t *testing.T) {
	dir := t.TempDir()
	_, cfgPath := profitSetup(t, dir)
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr, "-config", cfgPath)
	as := func(token string, args ...string) (string, error) {
		t.Helper()
		return ctrl.ctl(t, append([]string{"--token", token}, args...)...)
	}
	must := func(out string, err error, want ...string) string {
		t.Helper()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Fatalf("output lacks %q:\n%s", w, out)
			}
		}
		return out
	}

	out, err := ctrl.ctl(t, "profit", "settings")
	must(out, err, "version 1 by config file (seed)", "seeded from config file at", "0 edits since", "etc-lolminer", "rvn-trex")
	out, err = ctrl.ctl(t, "flightsheet", "list")
	must(out, err, "etc-lolminer", "rvn-trex")

	viewer := adminToken(t, ctrl, "wall", "viewer")
	operator := adminToken(t, ctrl, "ops", "operator")
	out, err = as(viewer, "profit", "settings")
	must(out, err, "version 1")
	changes := [][]string{
		{"profit", "sites", "set", "default", "--default", "0.05"},
		{"profit", "sites", "remove", "default"},
		{"profit", "options", "add", "--flight-sheet", "etc-lolminer", "--pool", "other"},
		{"profit", "options", "edit", "1", "--pool-fee", "0.02"},
		{"profit", "options", "remove", "rvn-trex"},
		{"profit", "rules", "pin", "etc"},
		{"profit", "rules", "exclude", "--rig", "rig0", "rvn"},
		{"profit", "policy", "set", "--min-dwell", "1m"},
		{"profit", "settings", "restore", "1"},
	}
	for _, c := range changes {
		out, err := as(viewer, c...)
		if err == nil || !strings.Contains(out, "needs role operator") {
			t.Errorf("viewer %v: want a refusal naming operator, got %v\n%s", c, err, out)
		}
	}

	// Bad input: a clear error, and nothing stored.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"profit", "sites", "set", "default", "--rule", "25-3=0.1"}, "hours 25-3"},
		{[]string{"profit", "sites", "set", "default", "--rule", "22-6"}, "no price"},
		{[]string{"profit", "sites", "set", "default", "--timezone", "Mars/Olympus"}, "Mars/Olympus"},
		{[]string{"profit", "options", "add", "--flight-sheet", "nope"}, `flight sheet "nope"`},
		{[]string{"profit", "options", "remove", "9"}, "there are 2 options"},
		{[]string{"profit", "rules", "exclude", "--rig", "rig0", "--pool", "--algorithm", "x"}, "give one"},
		{[]string{"profit", "policy", "set", "--relative-threshold", "-1"}, "relative threshold"},
	} {
		out, err := as(operator, c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%v: want an error containing %q, got %v\n%s", c.args, c.want, err, out)
		}
	}
	out, err = as(operator, "profit", "settings", "history")
	if must(out, err, "seeded from the config file"); strings.Count(out, "\n") != 2 {
		t.Fatalf("refused changes stored versions:\n%s", out)
	}

	out, err = as(operator, "profit", "sites", "set", "default", "--default", "0.05", "--timezone", "UTC", "--rule", "22-6=0.07", "--rule", "sat,sun:0-24=0.04")
	must(out, err, "stored version 2", "site changed default")
	out, err = as(operator, "profit", "rules", "exclude", "--rig", "rig0", "rvn")
	must(out, err, "stored version 3", "rig changed rig0")
	out, err = as(operator, "profit", "policy", "set", "--relative-threshold", "0.1", "--min-dwell", "90s")
	must(out, err, "stored version 4", "relative_threshold 0.05 → 0.1", "min_dwell 0s → 1m30s")
	out, err = as(operator, "profit", "options", "edit", "rvn-trex", "--pool-fee", "0.02")
	must(out, err, "stored version 5", "option changed rvn-trex@2miners")
	out, err = as(viewer, "profit", "sites", "list")
	must(out, err, "22-6=0.07", "sat,sun:0-24=0.04", "UTC")
	out, err = as(viewer, "profit", "rules")
	must(out, err, "rig rig0", "coin rvn")
	out, err = as(viewer, "profit", "settings", "history")
	must(out, err, "ops", "config file (seed)")

	out, err = as(operator, "profit", "settings", "restore", "1")
	must(out, err, "stored version 6", "restored version 1")
	out, err = as(viewer, "profit", "policy")
	must(out, err, "5%", "0s")
	out, err = ctrl.ctl(t, "audit")
	must(out, err, "profit.settings-update", "profit.settings-restore", "ops")

	// A restart with the same file keeps the stored settings.
	ctrl.stop()
	ctrl = startController(t, dir, grpcAddr, httpAddr, "-config", cfgPath)
	out, err = ctrl.ctl(t, "profit", "settings")
	must(out, err, "version 6 by ops", "5 edits since")
	if !strings.Contains(ctrl.output(), "the settings stored in the database are in force") {
		t.Errorf("the controller does not say the stored settings are in force:\n%s", ctrl.output())
	}
}
