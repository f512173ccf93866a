package selfheal

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultMaxAttempts bounds a job whose spec does not say how many times to try.
const DefaultMaxAttempts = 4

// maxAttemptsLimit keeps a misconfigured job from looping for hours.
const maxAttemptsLimit = 20

// WhereController is the Spec.Where value for jobs run by the controller itself.
const WhereController = "controller"

// Spec describes one build job.
type Spec struct {
	// Name identifies the job to people; letters, digits, '.', '_' and '-'.
	Name string `yaml:"name" json:"name"`
	// Dir is the working directory every step runs in.
	Dir string `yaml:"dir" json:"dir"`
	// Build steps run in order; the first failure ends the attempt.
	Build []Step `yaml:"build" json:"build"`
	// Test steps run after a successful build.
	Test []Step `yaml:"test,omitempty" json:"test,omitempty"`
	// Checks run after the tests and are the job owner's own assertions
	// (a program's output, a file's checksum). They are never remediated:
	// a failing check ends the job, and a heal counts only when they pass.
	Checks []Step `yaml:"checks,omitempty" json:"checks,omitempty"`
	// RulePacks names the packs whose rules may heal this job, in priority order.
	RulePacks []string `yaml:"rule_packs" json:"rule_packs"`
	// MaxAttempts counts builds, the first one included.
	MaxAttempts int `yaml:"max_attempts,omitempty" json:"max_attempts,omitempty"`
	// Where is "controller" or "agent:<selector>", e.g. "agent:gpu=nvidia".
	Where string `yaml:"where,omitempty" json:"where,omitempty"`
	// Env is added to the environment of every step.
	Env map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
}

// Step is one command: either an argv list run directly or a shell line run
// with /bin/sh -c.
type Step struct {
	Argv  []string `json:"argv,omitempty"`
	Shell string   `json:"shell,omitempty"`
}

// String renders the step the way a person would type it.
func (s Step) String() string {
	if s.Shell != "" {
		return s.Shell
	}
	return strings.Join(s.Argv, " ")
}

// UnmarshalYAML accepts a YAML list (argv) or a YAML string (shell line).
func (s *Step) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		s.Shell = n.Value
		return nil
	case yaml.SequenceNode:
		var argv []string
		if err := n.Decode(&argv); err != nil {
			return fmt.Errorf("step argv: %w", err)
		}
		s.Argv = argv
		return nil
	default:
		return fmt.Errorf("line %d: a step is a shell line or a list of arguments", n.Line)
	}
}

// MarshalYAML writes the form UnmarshalYAML reads.
func (s Step) MarshalYAML() (any, error) {
	if s.Shell != "" {
		return s.Shell, nil
	}
	return s.Argv, nil
}

// FieldError names the spec field that failed validation.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

var (
	nameRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	envKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ParseSpec decodes a YAML job spec, fills defaults and validates it.
// Unknown fields are errors so a typo cannot silently disable a setting.
func ParseSpec(data []byte) (Spec, error) {
	var s Spec
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("parse job spec: %w", err)
	}
	if s.MaxAttempts == 0 {
		s.MaxAttempts = DefaultMaxAttempts
	}
	if s.Where == "" {
		s.Where = WhereController
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// Validate reports every problem, each as a *FieldError naming its field.
func (s Spec) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	if !nameRe.MatchString(s.Name) {
		bad("name", "%q must be 1-128 letters, digits, '.', '_' or '-'", s.Name)
	}
	if strings.TrimSpace(s.Dir) == "" {
		bad("dir", "is required")
	}
	if len(s.Build) == 0 {
		bad("build", "needs at least one step")
	}
	checkSteps := func(field string, steps []Step) {
		for i, st := range steps {
			f := fmt.Sprintf("%s[%d]", field, i)
			switch {
			case st.Shell != "" && len(st.Argv) > 0:
				bad(f, "has both a shell line and argv")
			case strings.TrimSpace(st.Shell) == "" && len(st.Argv) == 0:
				bad(f, "is empty")
			case len(st.Argv) > 0 && st.Argv[0] == "":
				bad(f, "argv[0] is empty")
			}
		}
	}
	checkSteps("build", s.Build)
	checkSteps("test", s.Test)
	checkSteps("checks", s.Checks)
	for i, p := range s.RulePacks {
		if strings.TrimSpace(p) == "" {
			bad(fmt.Sprintf("rule_packs[%d]", i), "is empty")
		}
	}
	if s.MaxAttempts < 1 || s.MaxAttempts > maxAttemptsLimit {
		bad("max_attempts", "%d is outside 1..%d", s.MaxAttempts, maxAttemptsLimit)
	}
	if s.Where != WhereController {
		sel, ok := strings.CutPrefix(s.Where, "agent:")
		if !ok || strings.TrimSpace(sel) == "" {
			bad("where", "%q must be %q or \"agent:<selector>\"", s.Where, WhereController)
		}
	}
	for k := range s.Env {
		if !envKeyRe.MatchString(k) {
			bad("env."+k, "is not a valid environment variable name")
		}
	}
	return errors.Join(errs...)
}

// AgentSelector returns the selector when the job runs on agents.
func (s Spec) AgentSelector() (string, bool) {
	sel, ok := strings.CutPrefix(s.Where, "agent:")
	return sel, ok
}
