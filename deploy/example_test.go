package deploy_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/quarryfleet/quarry/agent/agentd"
	"github.com/quarryfleet/quarry/controller/server"
	"github.com/quarryfleet/quarry/deploy"
	"github.com/quarryfleet/quarry/pkg/config"
)

const controllerHeader = `quarry-controller configuration: every setting, at its default.
Install as /etc/quarry/controller.yaml; the unit runs
'quarry-controller -config /etc/quarry/controller.yaml'. Settings are applied
in layers: defaults, this file, QUARRY_* environment variables, then flags.
Regenerate with: QUARRY_UPDATE_EXAMPLES=1 go test ./deploy/`

const agentHeader = `quarry-agent configuration: every setting, at its default.
Install as /etc/quarry/agent.yaml (scripts/install-agent.sh writes one with
the controller address and join token filled in). Settings are applied in
layers: defaults, this file, QUARRY_* environment variables, then flags.
Regenerate with: QUARRY_UPDATE_EXAMPLES=1 go test ./deploy/`

// The example configs document every setting with its default; loading
// them changes nothing. When a setting is added, the test fails until the
// files are regenerated.
func TestExampleConfigs(t *testing.T) {
	tests := []struct {
		file     string
		header   string
		defaults func() any
		empty    func() any
	}{
		{"controller.yaml", controllerHeader, func() any { c := server.DefaultConfig(); return &c }, func() any { return &server.Config{} }},
		{"agent.yaml", agentHeader, func() any { c := agentd.DefaultConfig(); return &c }, func() any { return &agentd.Config{} }},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			want, err := deploy.ExampleYAML(tc.defaults(), tc.header)
			if err != nil {
				t.Fatal(err)
			}
			if os.Getenv("QUARRY_UPDATE_EXAMPLES") != "" {
				if err := os.WriteFile(tc.file, want, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("deploy/%s is stale: run QUARRY_UPDATE_EXAMPLES=1 go test ./deploy/", tc.file)
			}
			// Decoding onto zero values must give the defaults back: every
			// setting is in the file, with the right value. (Rendering again
			// compares them with nil and empty lists alike.)
			cfg := tc.empty()
			if err := config.DecodeYAML(got, cfg); err != nil {
				t.Fatalf("load %s: %v", tc.file, err)
			}
			again, err := deploy.ExampleYAML(cfg, tc.header)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, want) {
				t.Errorf("%s does not load back to the defaults:\n%s", tc.file, again)
			}
		})
	}
}

func TestExampleYAMLRefusesNonStruct(t *testing.T) {
	if _, err := deploy.ExampleYAML(42, ""); err == nil {
		t.Fatal("no error for an int")
	}
}
