package agentd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/telemetry"
)

const amdSys = "../../pkg/telemetry/amdgpu/testdata/sys"

func TestInspect(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "not-created")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		check    func(t *testing.T, out, errOut string)
	}{
		{
			name: "json on fixture sysfs",
			args: []string{"-o", "json", "--interval", "0", "--path.sysfs", amdSys, "--data-dir", dataDir},
			check: func(t *testing.T, out, _ string) {
				var s telemetry.Sample
				if err := json.Unmarshal([]byte(out), &s); err != nil {
					t.Fatalf("json: %v\n%s", err, out)
				}
				if s.Host == nil || s.Host.CPUCores == 0 || s.Host.Memory == nil {
					t.Errorf("host figures missing: %+v", s.Host)
				}
				var amd []telemetry.GPU
				for _, g := range s.GPUs {
					if g.Vendor == telemetry.VendorAMD {
						amd = append(amd, g)
					}
				}
				if len(amd) != 2 || amd[0].PCIBusID != "0000:03:00.0" || amd[0].HotspotTempC == nil || *amd[0].HotspotTempC != 78 {
					t.Errorf("amd gpus from fixture: %+v", amd)
				}
			},
		},
		{
			name: "table with rates after the interval",
			args: []string{"--interval", "50ms", "--path.sysfs", amdSys, "--data-dir", dataDir},
			check: func(t *testing.T, out, _ string) {
				for _, want := range []string{"HOST", "CPU", "% busy", "MEM", "GPU", "amd0", "0000:03:00.0"} {
					if !strings.Contains(out, want) {
						t.Errorf("output lacks %q:\n%s", want, out)
					}
				}
			},
		},
		{name: "bad format", args: []string{"-o", "yaml"}, wantCode: 2, check: wantErr("want table or json")},
		{name: "stray argument", args: []string{"now"}, wantCode: 2, check: wantErr(`unexpected argument "now"`)},
		{name: "negative interval", args: []string{"--interval", "-1s"}, wantCode: 2, check: wantErr("must not be negative")},
		{name: "bad config value", args: []string{"--log-level", "loud"}, wantCode: 2, check: wantErr("log_level")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Inspect(context.Background(), tt.args, &out, &errOut)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out.String(), errOut.String())
			}
			tt.check(t, out.String(), errOut.String())
		})
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("inspect created the data dir: %v", err)
	}
}

func wantErr(s string) func(t *testing.T, _, errOut string) {
	return func(t *testing.T, _, errOut string) {
		if !strings.Contains(errOut, s) {
			t.Errorf("stderr %q lacks %q", errOut, s)
		}
	}
}
