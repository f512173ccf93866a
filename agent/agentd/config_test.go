package agentd

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/config"
)

func TestControllerAddrs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.yaml")
	for _, tc := range []struct {
		name string
		yaml string
		args []string
		env  []string
		want []string
	}{
		{"default", "", nil, nil, []string{DefaultController}},
		{"one", "controller: a:1\n", nil, nil, []string{"a:1"}},
		{"yaml list", "controllers: [a:1, b:2]\n", nil, nil, []string{"a:1", "b:2"}},
		{"both, controller first, no repeats", "controller: c:3\ncontrollers: [a:1, c:3]\n", nil, nil, []string{"c:3", "a:1"}},
		{"comma-separated flag", "", []string{"-controller", "a:1, b:2"}, nil, []string{"a:1", "b:2"}},
		{"flag beside yaml list", "controllers: [b:2]\n", []string{"-controller", "a:1"}, nil, []string{"a:1", "b:2"}},
		{"environment", "", nil, []string{"QUARRY_CONTROLLER=a:1,b:2"}, []string{"a:1", "b:2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(file, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			config.RegisterFlags(fs, &cfg)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if err := config.Load(&cfg, file, fs, tc.env); err != nil {
				t.Fatal(err)
			}
			if got := cfg.ControllerAddrs(); !slices.Equal(got, tc.want) {
				t.Errorf("ControllerAddrs = %q, want %q", got, tc.want)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestValidateEachController(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Controller = "a:1,nope"
	cfg.Controllers = []string{"b:x"}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), `"b:x"`) {
		t.Errorf("Validate = %v; want both bad addresses named", err)
	}
	cfg = DefaultConfig()
	for i := range 17 {
		cfg.Controllers = append(cfg.Controllers, "ctl-"+strings.Repeat("x", i)+":1")
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("Validate with 17 controllers = %v", err)
	}
}
