package selfheal

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/testsupport"
)

// corpusCase is testdata/corpus/<name>/case.json: a break class real
// developers hit, with a broken tree and its known-good twin beside it.
type corpusCase struct {
	Class  string `json:"class"`
	Source string `json:"source"` // a public report or documentation of the class
	// Outcome is "healed" (the broken tree heals and then prints what the
	// twin prints) or "reported" (a genuine code bug: the job fails with
	// Diagnosis and the tree is left byte for byte as it was).
	Outcome   string   `json:"outcome"`
	Rules     []string `json:"rules,omitempty"`
	Diagnosis string   `json:"diagnosis,omitempty"`
	Build     string   `json:"build"` // the .sln or .csproj xbuild is given
	Run       string   `json:"run"`   // the program the test step runs
	Verbosity string   `json:"verbosity,omitempty"`
	// Subset marks the cases make test runs; the rest run under QUARRY_SOAK.
	Subset bool `json:"subset,omitempty"`
	// Setup names a fixture the test prepares first (e.g. "feed").
	Setup string `json:"setup,omitempty"`
}

func loadCorpus(t *testing.T) map[string]corpusCase {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", "corpus", "*", "case.json"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	out := map[string]corpusCase{}
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var c corpusCase
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if c.Class == "" || !strings.HasPrefix(c.Source, "https://") || (c.Outcome != "healed" && c.Outcome != "reported") || c.Build == "" || c.Run == "" {
			t.Fatalf("%s: incomplete case %+v", p, c)
		}
		out[filepath.Base(filepath.Dir(p))] = c
	}
	return out
}

// TestHealCorpus runs a representative subset of the corpus with the real
// compiler; TestSoakHealCorpus runs all of it.
func TestHealCorpus(t *testing.T) { runCorpus(t, false) }

func TestSoakHealCorpus(t *testing.T) {
	if os.Getenv("QUARRY_SOAK") == "" {
		t.Skip("set QUARRY_SOAK=1 (make soak) to run the whole corpus")
	}
	runCorpus(t, true)
}

func runCorpus(t *testing.T, all bool) {
	needTools(t, "xbuild", "mono")
	cases := loadCorpus(t)
	names := make([]string, 0, len(cases))
	for n := range cases {
		names = append(names, n)
	}
	sort.Strings(names)
	start := time.Now()
	ran := 0
	t.Cleanup(func() { t.Logf("corpus: %d of %d cases in %v", ran, len(names), time.Since(start).Round(time.Second)) })
	for _, name := range names {
		c := cases[name]
		if !all && !c.Subset {
			continue
		}
		ran++
		t.Run(name, func(t *testing.T) {
			// Every case builds in its own copies; xbuild and mono share nothing
			// but read-only framework files, so cases can run side by side.
			t.Parallel()
			runCorpusCase(t, name, c)
		})
	}
}

func runCorpusCase(t *testing.T, name string, c corpusCase) {
	base := filepath.Join("testdata", "corpus", name)
	work := t.TempDir()
	good := filepath.Join(work, "good")
	broken := filepath.Join(work, "broken")
	testsupport.CopyTree(t, filepath.Join(base, "good"), good)
	testsupport.CopyTree(t, filepath.Join(base, "broken"), broken)
	env := corpusSetup(t, c, base, work)

	// The twin must build and run as it is: it defines the expected output.
	want := buildAndRun(t, good, c, env)

	before := treeHashes(t, broken)
	verbosity := c.Verbosity
	if verbosity == "" {
		verbosity = "normal"
	}
	spec := Spec{
		Name:        "corpus-" + name,
		Dir:         broken,
		Build:       []Step{{Argv: []string{"xbuild", "/nologo", "/verbosity:" + verbosity, filepath.FromSlash(c.Build)}}},
		Test:        []Step{{Argv: []string{"mono", filepath.FromSlash(c.Run)}}},
		RulePacks:   []string{"csharp"},
		MaxAttempts: 5,
		Env:         env,
	}
	res, err := Run(t.Context(), spec, Options{StateDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var rules []string
	for _, a := range res.AttemptLog {
		if a.Remediation != nil {
			rules = append(rules, a.Remediation.Rule)
		}
	}
	last := res.AttemptLog[len(res.AttemptLog)-1]
	switch c.Outcome {
	case "healed":
		if res.Status != StatusHealed {
			t.Fatalf("%s: status %s, want healed; diagnosis: %s\nlast output:\n%s", c.Class, res.Status, res.Diagnosis, last.OutputTail)
		}
		if strings.Join(rules, ",") != strings.Join(c.Rules, ",") {
			t.Errorf("remediations %v, want %v", rules, c.Rules)
		}
		if last.TestOutput != want {
			t.Errorf("healed program prints %q, its twin prints %q", last.TestOutput, want)
		}
		if res.BuildOutputBefore == "" || res.BuildOutputAfter == "" {
			t.Error("build output before and after the heal not recorded")
		}
		checkEditsKeepFormat(t, broken, res)
	case "reported":
		if res.Status != StatusFailed || len(rules) != 0 {
			t.Fatalf("%s: status %s with remediations %v, want failed with none; diagnosis: %s", c.Class, res.Status, rules, res.Diagnosis)
		}
		if !strings.Contains(res.Diagnosis, c.Diagnosis) {
			t.Errorf("diagnosis %q lacks %q", res.Diagnosis, c.Diagnosis)
		}
		if after := treeHashes(t, broken); !equalHashes(before, after) {
			t.Errorf("a genuine code bug was reported but the tree changed: %v", diffHashes(before, after))
		}
	}
}

// buildAndRun builds the known-good twin and returns what it prints.
func buildAndRun(t *testing.T, dir string, c corpusCase, env map[string]string) string {
	t.Helper()
	environ := os.Environ()
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	b := exec.CommandContext(t.Context(), "xbuild", "/nologo", "/verbosity:minimal", filepath.FromSlash(c.Build))
	b.Dir, b.Env = dir, environ
	if out, err := b.CombinedOutput(); err != nil {
		t.Fatalf("the known-good twin does not build: %v\n%s", err, out)
	}
	r := exec.CommandContext(t.Context(), "mono", filepath.FromSlash(c.Run))
	r.Dir, r.Env = dir, environ
	out, err := r.CombinedOutput()
	if err != nil {
		t.Fatalf("the known-good twin does not run: %v\n%s", err, out)
	}
	if len(out) == 0 {
		t.Fatal("the known-good twin prints nothing; its output would prove nothing")
	}
	return string(out)
}

// checkEditsKeepFormat checks every edited text file kept its BOM and its
// line endings.
func checkEditsKeepFormat(t *testing.T, dir string, res Result) {
	t.Helper()
	for _, a := range res.AttemptLog {
		if a.Remediation == nil || a.Remediation.Diff == "" {
			continue
		}
		for _, f := range a.Remediation.Files {
			b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
			if err != nil {
				continue // removed build output
			}
			if strings.HasSuffix(f, "proj") || strings.HasSuffix(f, ".cs") {
				if !bytes.HasPrefix(b, []byte("\xef\xbb\xbf")) {
					t.Errorf("%s lost its BOM", f)
				}
				if n, crlf := bytes.Count(b, []byte("\n")), bytes.Count(b, []byte("\r\n")); n != crlf {
					t.Errorf("%s has %d LF line ends among %d CRLF", f, n-crlf, crlf)
				}
			}
		}
	}
}

// treeHashes hashes every file but build output.
func treeHashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			if n := de.Name(); p != dir && (n == "bin" || n == "obj") {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalHashes(a, b map[string]string) bool { return len(diffHashes(a, b)) == 0 }

func diffHashes(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k+" (new)")
		}
	}
	sort.Strings(out)
	return out
}

// corpusSetup prepares what a case needs outside its tree and returns the
// environment its builds run with.
func corpusSetup(t *testing.T, c corpusCase, base, work string) map[string]string {
	t.Helper()
	switch c.Setup {
	case "":
		return nil
	case "feed":
		// A local feed folder in the tree (remediations read nothing
		// outside it), holding Acme.Units 1.0.0 only, packed from the
		// assembly the known-good twin commits.
		dlls, _ := filepath.Glob(filepath.Join(work, "good", "packages", "Acme.Units.*", "lib", "net45", "Acme.Units.dll"))
		if len(dlls) != 1 {
			t.Fatalf("feed setup: want one Acme.Units.dll in the twin, have %v", dlls)
		}
		dll, err := os.ReadFile(dlls[0])
		if err != nil {
			t.Fatal(err)
		}
		writeNupkg(t, filepath.Join(work, "broken", "feed", "acme.units.1.0.0.nupkg"), "Acme.Units", "1.0.0", map[string][]byte{"lib/net45/Acme.Units.dll": dll})
		return nil
	case "feed-mcs":
		// The package is built here from the case's Acme.Units.cs with mcs,
		// once per lib folder, and packed into a local feed folder in the
		// broken tree; the known-good twin gets the net45 build where a
		// packages.config restore would put it.
		needTools(t, "mcs")
		files := map[string][]byte{}
		for _, fw := range []string{"net40", "net45", "net472"} {
			out := filepath.Join(work, "lib-"+fw, "Acme.Units.dll")
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				t.Fatal(err)
			}
			mcs := exec.CommandContext(t.Context(), "mcs", "-nologo", "-target:library", "-define:"+strings.ToUpper(fw), "-out:"+out, filepath.Join(base, "Acme.Units.cs"))
			if b, err := mcs.CombinedOutput(); err != nil {
				t.Fatalf("mcs: %v\n%s", err, b)
			}
			dll, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			files["lib/"+fw+"/Acme.Units.dll"] = dll
		}
		twin := filepath.Join(work, "good", "packages", "Acme.Units.1.0.0", "lib", "net45", "Acme.Units.dll")
		if err := os.MkdirAll(filepath.Dir(twin), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(twin, files["lib/net45/Acme.Units.dll"], 0o644); err != nil {
			t.Fatal(err)
		}
		writeNupkg(t, filepath.Join(work, "broken", "feed", "acme.units.1.0.0.nupkg"), "Acme.Units", "1.0.0", files)
		return nil
	case "future-obj":
		// Build output newer than every source, as after a checkout of old
		// sources over a newer build: xbuild then skips the compiler.
		future := time.Now().Add(time.Hour)
		for _, out := range []string{"obj", "bin"} {
			_ = filepath.WalkDir(filepath.Join(work, "broken", out), func(p string, de fs.DirEntry, err error) error {
				if err == nil {
					_ = os.Chtimes(p, future, future)
				}
				return nil
			})
		}
		return nil
	default:
		t.Fatalf("unknown setup %q", c.Setup)
	}
	return nil
}

// writeNupkg writes a minimal package as nuget pack lays it out.
func writeNupkg(t *testing.T, path, id, version string, files map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name string, data []byte) {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	add(id+".nuspec", []byte(`<?xml version="1.0"?><package><metadata><id>`+id+`</id><version>`+version+`</version><authors>quarry</authors><description>test</description></metadata></package>`))
	add("[Content_Types].xml", []byte(`<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>`))
	add("_rels/.rels", []byte(`<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"/>`))
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		add(n, files[n])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
