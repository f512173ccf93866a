package selfheal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestParseSpec(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "specs", "good.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSpec(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Build) != 2 || s.Build[0].Argv[0] != "xbuild" || s.Build[1].Shell != "make -j8 all" {
		t.Errorf("build steps %+v", s.Build)
	}
	if sel, ok := s.AgentSelector(); !ok || sel != "site=reykjavik,gpu=nvidia" {
		t.Errorf("selector %q %v", sel, ok)
	}
	if s.MaxAttempts != 5 || s.Env["MONO_IOMAP"] != "all" || len(s.RulePacks) != 2 {
		t.Errorf("spec %+v", s)
	}
	// Round trip through YAML keeps step forms.
	out, err := yaml.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := ParseSpec(out)
	if err != nil || s2.Build[0].String() != s.Build[0].String() || s2.Build[1].Shell != s.Build[1].Shell {
		t.Errorf("round trip: %v %+v", err, s2.Build)
	}
}

func TestParseSpecErrorsNameFields(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "specs", "bad.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseSpec(b)
	if err == nil {
		t.Fatal("bad spec accepted")
	}
	for _, field := range []string{"name:", "dir:", "build[0]:", "build[1]:", "rule_packs[0]:", "max_attempts:", "where:", "env.1BAD:"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error lacks field %q: %v", field, err)
		}
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("error %T is not a *FieldError", err)
	}
	for _, bad := range []string{"name: x\ndir: .\nbuild: [{a: 1}]\n", "name: x\nbogus: 1\n", "{{{"} {
		if _, err := ParseSpec([]byte(bad)); err == nil {
			t.Errorf("ParseSpec(%q) accepted", bad)
		}
	}
}
