package deploy_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/metrics"
	"github.com/quarryfleet/quarry/controller/server"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// unit reads a systemd unit into section → key → values.
func unit(t *testing.T, name string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	sec := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			sec = strings.Trim(line, "[]")
			out[sec] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || sec == "" {
				t.Fatalf("%s: bad line %q", name, line)
			}
			out[sec][k] = append(out[sec][k], v)
		}
	}
	return out
}

func TestUnits(t *testing.T) {
	tests := []struct {
		file   string
		want   map[string]string // Service key → value
		absent []string          // Service keys that would break the service
	}{
		{"quarry-controller.service", map[string]string{
			"User": "quarry", "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/quarry", "StateDirectory": "quarry",
			"WorkingDirectory": "/var/lib/quarry", "NoNewPrivileges": "yes", "Restart": "on-failure",
			"ExecStart": "/usr/local/bin/quarry-controller -config /etc/quarry/controller.yaml",
		}, []string{"MemoryDenyWriteExecute"}},
		{"quarry-agent.service", map[string]string{
			"User": "root", "Restart": "always", "KillMode": "mixed", "StateDirectory": "quarry-agent", "NoNewPrivileges": "yes",
			"ExecStart": "/usr/local/bin/quarry-agent -config /etc/quarry/agent.yaml",
		}, []string{"PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "MemoryDenyWriteExecute", "SystemCallFilter", "DeviceAllow"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			u := unit(t, tc.file)
			svc := u["Service"]
			for k, v := range tc.want {
				if got := svc[k]; len(got) != 1 || got[0] != v {
					t.Errorf("%s=%v, want %s", k, got, v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := svc[k]; ok {
					t.Errorf("%s is set; it breaks this service", k)
				}
			}
			if u["Install"]["WantedBy"][0] != "multi-user.target" {
				t.Error("not wanted by multi-user.target")
			}
		})
	}
	analyze := testsupport.RequireTool(t, "systemd-analyze", "apt-get install systemd, or make tools")
	dir := t.TempDir()
	var paths []string
	for _, tc := range tests {
		// verify wants ExecStart to exist; the binaries are not installed here.
		b, _ := os.ReadFile(tc.file)
		s := regexp.MustCompile(`ExecStart=/usr/local/bin/\S+`).ReplaceAllString(string(b), "ExecStart=/bin/true")
		p := filepath.Join(dir, tc.file)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, paths...)...).CombinedOutput()
	if err != nil || strings.Contains(string(out), "Unknown") || strings.Contains(string(out), "ignoring") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

type noRigs struct{}

func (noRigs) Rigs() []*quarryv1.Rig    { return nil }
func (noRigs) Stats() fleet.IngestStats { return fleet.IngestStats{} }
func (noRigs) Connected() int           { return 0 }

var metricName = regexp.MustCompile(`\bquarry_[a-z0-9_]+`)

// exported is every metric family name the exporter describes.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	ch := make(chan *prometheus.Desc, 100)
	metrics.New(noRigs{}, metrics.Options{}).Describe(ch)
	close(ch)
	names := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		names[fq.FindStringSubmatch(d.String())[1]] = true
	}
	return names
}

// Every metric the Grafana dashboard and the alert rules query exists.
func TestDashboardAndRulesUseExportedMetrics(t *testing.T) {
	names := exported(t)
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard json: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	rules, err := os.ReadFile("quarry-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	exprs = append(exprs, string(rules))
	used := 0
	for _, e := range exprs {
		for _, m := range metricName.FindAllString(e, -1) {
			used++
			if !names[m] {
				t.Errorf("%q is not a metric the controller exports", m)
			}
		}
	}
	if used < 20 {
		t.Errorf("only %d metric references found", used)
	}
	promtool := testsupport.RequireTool(t, "promtool", "apt-get install prometheus, or make tools")
	{
		for _, args := range [][]string{{"check", "config", "prometheus.yml"}, {"check", "rules", "quarry-rules.yml"}} {
			if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
				t.Errorf("promtool %v: %v\n%s", args, err, out)
			}
		}
	}
}

// The scrape config points at the controller's default HTTP address.
func TestScrapeTargetIsTheDefaultHTTPAddr(t *testing.T) {
	b, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if addr := server.DefaultConfig().HTTPAddr; !strings.Contains(string(b), `"`+addr+`"`) {
		t.Errorf("prometheus.yml does not scrape %s", addr)
	}
}
