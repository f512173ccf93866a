package selfheal

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed packs/*.yaml
var builtinPacks embed.FS

// Remediation actions. This is the closed set: a rule naming anything else
// loads, but when it matches it is reported and never executed.
const (
	ActionCsprojAddCompile    = "csproj-add-compile"
	ActionCsprojAddReference  = "csproj-add-reference"
	ActionCsprojAddProjectRef = "csproj-add-project-reference"
	ActionCsprojFixCase       = "csproj-fix-compile-case"
	ActionNuGetRestoreLocal   = "nuget-restore-local"
	ActionPackageRefRestore   = "package-reference-restore-local"
	ActionCsprojRepointHint   = "csproj-repoint-hintpath"
	ActionCsprojSetFramework  = "csproj-set-framework"
	ActionXMLRepair           = "xml-repair"
	ActionCleanOutput         = "clean-output"
	ActionLowerParallelism    = "lower-parallelism"
	ActionRunWhitelisted      = "run-whitelisted"
	ActionSetEnv              = "set-env"
	ActionReport              = "report" // explain, change nothing, stop
)

// KnownAction reports whether name is in the closed set of remediations.
func KnownAction(name string) bool {
	switch name {
	case ActionCsprojAddCompile, ActionCsprojAddReference, ActionCsprojAddProjectRef, ActionCsprojFixCase, ActionNuGetRestoreLocal, ActionPackageRefRestore, ActionCsprojRepointHint,
		ActionCsprojSetFramework, ActionXMLRepair, ActionCleanOutput, ActionLowerParallelism,
		ActionRunWhitelisted, ActionSetEnv, ActionReport:
		return true
	}
	return false
}

// RulePack is a named, ordered list of rules loaded from YAML.
type RulePack struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Lookup maps a subject to a hint shown by report templates as {{lookup}},
	// e.g. a CMake package name to the Debian package that provides it.
	Lookup map[string]string `yaml:"lookup"`
	Rules  []Rule            `yaml:"rules"`
	// Source is where the pack came from (embedded:..., or a file path).
	Source string `yaml:"-"`
}

// Rule pairs a diagnostic pattern with one remediation.
type Rule struct {
	ID          string            `yaml:"id"`
	Description string            `yaml:"description"`
	Match       Match             `yaml:"match"`
	Action      string            `yaml:"action"`
	Params      map[string]string `yaml:"params"`
	// Report is the text a person reads when the rule ends the job; it may
	// use {{subject}} {{file}} {{line}} {{code}} {{message}} {{lookup}}.
	Report string `yaml:"report"`

	pack string
	re   compiled
}

// Match selects diagnostics. Empty fields match anything; Code, Message
// and File are regular expressions (anchored by the author where needed).
type Match struct {
	Tool     string `yaml:"tool"`
	Code     string `yaml:"code"`
	Message  string `yaml:"message"`
	File     string `yaml:"file"`
	Severity string `yaml:"severity"`
}

type compiled struct{ code, message, file *regexp.Regexp }

func (r *Rule) matches(d Diagnostic) bool {
	if r.Match.Tool != "" && r.Match.Tool != d.Tool {
		return false
	}
	if r.Match.Severity != "" && r.Match.Severity != d.Severity {
		return false
	}
	if r.re.code != nil && !r.re.code.MatchString(d.Code) {
		return false
	}
	if r.re.message != nil && !r.re.message.MatchString(d.Message) {
		return false
	}
	if r.re.file != nil && !r.re.file.MatchString(d.File) {
		return false
	}
	return true
}

// PackSet holds loaded rule packs by name.
type PackSet struct {
	packs map[string]*RulePack
}

// Names lists the loaded packs, sorted.
func (s *PackSet) Names() []string {
	names := make([]string, 0, len(s.packs))
	for n := range s.packs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Pack returns one pack by name.
func (s *PackSet) Pack(name string) (*RulePack, bool) {
	p, ok := s.packs[name]
	return p, ok
}

// Select returns the named packs in the given order; an unknown name is an error.
func (s *PackSet) Select(names []string) ([]*RulePack, error) {
	out := make([]*RulePack, 0, len(names))
	for _, n := range names {
		p, ok := s.packs[n]
		if !ok {
			return nil, fmt.Errorf("rule pack %q is not loaded (have %s)", n, strings.Join(s.Names(), ", "))
		}
		out = append(out, p)
	}
	return out, nil
}

// BuiltinPacks loads only the packs shipped inside the binary.
func BuiltinPacks() (*PackSet, error) { return LoadPacks("") }

// LoadPacks loads the embedded packs, then every *.yaml/*.yml file in dir
// (if dir is not empty). A file pack with the same name as an embedded one
// replaces it, so a site can tune a shipped pack without rebuilding.
func LoadPacks(dir string) (*PackSet, error) {
	set := &PackSet{packs: map[string]*RulePack{}}
	ents, err := fs.ReadDir(builtinPacks, "packs")
	if err != nil {
		return nil, fmt.Errorf("read embedded packs: %w", err)
	}
	for _, e := range ents {
		data, err := builtinPacks.ReadFile("packs/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("read embedded pack %s: %w", e.Name(), err)
		}
		p, err := ParsePack(data, "embedded:"+e.Name())
		if err != nil {
			return nil, err
		}
		set.packs[p.Name] = p
	}
	if dir == "" {
		return set, nil
	}
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, fmt.Errorf("list rule packs in %s: %w", dir, err)
		}
		files = append(files, m...)
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("rule pack directory: %w", err)
	}
	sort.Strings(files)
	fromFile := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read rule pack: %w", err)
		}
		p, err := ParsePack(data, f)
		if err != nil {
			return nil, err
		}
		if prev, dup := fromFile[p.Name]; dup {
			return nil, fmt.Errorf("rule pack %q defined twice: %s and %s", p.Name, prev, f)
		}
		fromFile[p.Name] = f
		set.packs[p.Name] = p
	}
	return set, nil
}

// ParsePack decodes and checks one pack. source names it in errors.
func ParsePack(data []byte, source string) (*RulePack, error) {
	var p RulePack
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("rule pack %s: %w", source, err)
	}
	p.Source = source
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("rule pack %s: %s: %s", source, field, fmt.Sprintf(format, a...)))
	}
	if !nameRe.MatchString(p.Name) {
		bad("name", "%q is not a valid pack name", p.Name)
	}
	if len(p.Rules) == 0 {
		bad("rules", "pack has no rules")
	}
	ids := map[string]bool{}
	for i := range p.Rules {
		r := &p.Rules[i]
		field := "rules[" + strconv.Itoa(i) + "]"
		if r.ID == "" {
			bad(field+".id", "is required")
		} else if ids[r.ID] {
			bad(field+".id", "%q is used twice", r.ID)
		}
		ids[r.ID] = true
		if r.Action == "" {
			bad(field+".action", "is required")
		}
		if r.Action == ActionReport && r.Report == "" {
			bad(field+".report", "a report rule needs report text")
		}
		if r.Match == (Match{}) {
			bad(field+".match", "matches everything; give at least one field")
		}
		for _, f := range []struct {
			name string
			src  string
			dst  **regexp.Regexp
		}{{"code", r.Match.Code, &r.re.code}, {"message", r.Match.Message, &r.re.message}, {"file", r.Match.File, &r.re.file}} {
			if f.src == "" {
				continue
			}
			re, err := regexp.Compile(f.src)
			if err != nil {
				bad(field+".match."+f.name, "%v", err)
				continue
			}
			*f.dst = re
		}
		r.pack = p.Name
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &p, nil
}

// expand fills a report template from a diagnostic.
func (r *Rule) expand(tmpl string, d Diagnostic, lookup map[string]string) string {
	hint := lookup[d.Subject]
	if hint == "" {
		hint = "(no known package; search with apt-file)"
	}
	return strings.NewReplacer(
		"{{subject}}", d.Subject, "{{file}}", d.File, "{{line}}", strconv.Itoa(d.Line),
		"{{code}}", d.Code, "{{message}}", d.Message, "{{lookup}}", hint,
	).Replace(strings.TrimSpace(tmpl))
}
