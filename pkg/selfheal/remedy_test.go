package selfheal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newWS(t *testing.T, dir, mono string) *workspace {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	j, err := openJournal(t.TempDir(), "job", real)
	if err != nil {
		t.Fatal(err)
	}
	return &workspace{dir: dir, realDir: real, monoRoot: mono, journal: j, env: map[string]string{}}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

const hintProj = `<Project xmlns="http://schemas.microsoft.com/developer/msbuild/2003">
  <PropertyGroup>
    <TargetFrameworkVersion>v3.0</TargetFrameworkVersion>
  </PropertyGroup>
  <ItemGroup>
    <Reference Include="log4net, Version=2.0.8.0, Culture=neutral, PublicKeyToken=669e0ddf0bb1aa2a, processorArchitecture=MSIL">
      <HintPath>..\packages\log4net.2.0.8\lib\net45-full\log4net.dll</HintPath>
    </Reference>
  </ItemGroup>
</Project>
`

func TestRepointHintPath(t *testing.T) {
	root := t.TempDir()
	proj := filepath.Join(root, "App", "App.csproj")
	write(t, proj, hintProj)
	write(t, filepath.Join(root, "packages", "log4net.2.0.12", "lib", "net45", "log4net.dll"), "MZ")
	write(t, filepath.Join(root, "packages", "log4net.2.0.10", "lib", "net45-full", "log4net.dll"), "MZ")
	write(t, filepath.Join(root, "packages", "log4net.Ext.1.0.0", "lib", "net45", "log4net.dll"), "MZ")
	ws := newWS(t, filepath.Join(root, "App"), t.TempDir())
	d := ParseLog(`C:\MSBuild\Microsoft.Common.CurrentVersion.targets(1820,5): warning MSB3245: Could not resolve this reference. Could not locate the assembly "log4net, Version=2.0.8.0, Culture=neutral". Check to make sure the assembly exists on disk.`)[0]
	desc, err := ws.repointHintPath(d)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(proj)
	if !strings.Contains(string(got), `<HintPath>..\packages\log4net.2.0.12\lib\net45\log4net.dll</HintPath>`) {
		t.Errorf("project not repointed:\n%s", got)
	}
	if !strings.Contains(desc, "version 2.0.12") || !strings.Contains(ws.diff.String(), "-      <HintPath>..\\packages\\log4net.2.0.8") {
		t.Errorf("description %q / diff %q", desc, ws.diff.String())
	}
}

func TestSetFrameworkUsesConfigurableMonoRoot(t *testing.T) {
	mono := t.TempDir()
	for _, v := range []string{"2.0", "4.5", "4.7.2"} {
		write(t, filepath.Join(mono, v+"-api", "mscorlib.dll"), "MZ")
	}
	write(t, filepath.Join(mono, "4.6-api", "README"), "stub without mscorlib")
	cases := []struct{ have, want string }{{"v3.0", "v2.0"}, {"v4.6.1", "v4.5"}, {"v4.8", "v4.7.2"}, {"v1.1", "v2.0"}}
	for _, tc := range cases {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "App.csproj"), strings.Replace(hintProj, "v3.0", tc.have, 1))
		ws := newWS(t, dir, mono)
		if _, err := ws.setFramework(Diagnostic{Tool: "msbuild", Code: "MSB3644"}); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(filepath.Join(dir, "App.csproj"))
		if !strings.Contains(string(got), "<TargetFrameworkVersion>"+tc.want+"</TargetFrameworkVersion>") {
			t.Errorf("%s: want %s, got\n%s", tc.have, tc.want, got)
		}
	}
}

func TestRepairXML(t *testing.T) {
	cases := []struct {
		name, in, want string
		ok             bool
	}{
		{"open item", "<Project>\n  <ItemGroup>\n    <Compile Include=\"a.cs\">\n    <Compile Include=\"b.cs\" />\n  </ItemGroup>\n</Project>\n",
			"    <Compile Include=\"a.cs\" />\n", true},
		{"missing root close", "<Project>\n  <ItemGroup>\n    <Compile Include=\"a.cs\" />\n  </ItemGroup>\n", "</Project>\n", true},
		{"open group is ambiguous", "<Project>\n  <PropertyGroup>\n    <A>1</A>\n  <ItemGroup>\n  </ItemGroup>\n</Project>\n", "", false},
		{"already well-formed", "<Project></Project>\n", "", false},
		{"raw ampersand", "<Project>\n  <PropertyGroup>\n    <Company>R&D &amp; Sons</Company>\n  </PropertyGroup>\n</Project>\n",
			"<Company>R&amp;D &amp; Sons</Company>", true},
		{"misspelled end tag", "<Project>\n  <PropertyGroup>\n    <AssemblyName>Rig</AssemblyNmae>\n  </PropertyGroup>\n</Project>\n",
			"<AssemblyName>Rig</AssemblyName>", true},
		{"end tag of another element is not a typo", "<Project>\n  <PropertyGroup>\n    <AssemblyName>Rig</OutputType>\n  </PropertyGroup>\n</Project>\n", "", false},
		{"merge-conflict markers are reported", "<Project>\n<<<<<<< HEAD\n  <A/>\n=======\n  <B/>\n>>>>>>> x\n</Project>\n", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, what, err := repairXML([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && (!strings.Contains(string(out), tc.want) || checkXML(out) != nil || what == "") {
				t.Errorf("repaired:\n%s", out)
			}
		})
	}
}

// TestAddCompileDecisions checks that a source file is added only where a
// careful developer would add it, and that every refusal says why.
func TestRepairXMLNamesMergeConflicts(t *testing.T) {
	_, _, err := repairXML([]byte("<Project>\n<<<<<<< HEAD\n  <A/>\n=======\n  <B/>\n>>>>>>> x\n</Project>\n"))
	if err == nil || !strings.Contains(err.Error(), "merge-conflict markers") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("err = %v, want the merge-conflict message with its line", err)
	}
}

// TestRestoreLocalRefusals: a missing package is named with the feed it
// was looked for in, and a package cannot write outside its folder.
func TestRestoreLocalRefusals(t *testing.T) {
	const proj = "<Project>\n  <ItemGroup>\n    <Reference Include=\"Acme.Units\">\n      <HintPath>packages\\Acme.Units.1.0.0\\lib\\net45\\Acme.Units.dll</HintPath>\n    </Reference>\n  </ItemGroup>\n</Project>\n"
	setup := func(t *testing.T, pkg map[string][]byte) (string, *workspace) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "Rig.csproj"), proj)
		write(t, filepath.Join(dir, "packages.config"), `<packages><package id="Acme.Units" version="1.0.0" /></packages>`)
		write(t, filepath.Join(dir, "nuget.config"), `<configuration><packageSources><add key="l" value="feed" /></packageSources></configuration>`)
		if err := os.MkdirAll(filepath.Join(dir, "feed"), 0o755); err != nil {
			t.Fatal(err)
		}
		if pkg != nil {
			writeNupkg(t, filepath.Join(dir, "feed", "acme.units.1.0.0.nupkg"), "Acme.Units", "1.0.0", pkg)
		}
		return dir, newWS(t, dir, "")
	}
	d := Diagnostic{Tool: "msbuild", Message: "Reference 'Acme.Units' not resolved", Subject: "Acme.Units"}
	t.Run("not in feed", func(t *testing.T) {
		dir, ws := setup(t, nil)
		_, err := ws.restoreLocal(d)
		if err == nil || !strings.Contains(err.Error(), "package Acme.Units 1.0.0") || !strings.Contains(err.Error(), filepath.Join(dir, "feed")) {
			t.Errorf("err = %v, want the package and the feed named", err)
		}
	})
	t.Run("feed outside the job directory", func(t *testing.T) {
		dir, ws := setup(t, map[string][]byte{"lib/net45/Acme.Units.dll": []byte("MZ")})
		write(t, filepath.Join(dir, "nuget.config"), `<configuration><packageSources><add key="l" value="/etc" /></packageSources></configuration>`)
		if _, err := ws.restoreLocal(d); err == nil || !strings.Contains(err.Error(), "outside the job directory") {
			t.Errorf("err = %v, want the outside feed refused", err)
		}
	})
	t.Run("zip slip", func(t *testing.T) {
		dir, ws := setup(t, map[string][]byte{"../../../evil.txt": []byte("x")})
		if _, err := ws.restoreLocal(d); err == nil || !strings.Contains(err.Error(), "leaves the package folder") {
			t.Errorf("err = %v, want refusal", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "evil.txt")); err == nil {
			t.Error("a package entry was written outside its folder")
		}
	})
	t.Run("restored", func(t *testing.T) {
		dir, ws := setup(t, map[string][]byte{"lib/net45/Acme.Units.dll": []byte("MZ")})
		if _, err := ws.restoreLocal(d); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "packages", "Acme.Units.1.0.0", "lib", "net45", "Acme.Units.dll")); err != nil || string(b) != "MZ" {
			t.Errorf("restored dll: %q %v", b, err)
		}
	})
}

// TestRevertOfJobThatEditedNothing: a job that changed nothing reverts as
// a successful no-op; an unknown job is still an error.
func TestRevertOfJobThatEditedNothing(t *testing.T) {
	state := t.TempDir()
	spec := Spec{Name: "t", Dir: t.TempDir(), Build: []Step{{Shell: "true"}}, MaxAttempts: 1}
	res, err := Run(t.Context(), spec, Options{StateDir: state, Logger: quiet})
	if err != nil || res.Status != StatusSucceeded {
		t.Fatalf("Run: %v %s", err, res.Status)
	}
	restored, err := Revert(t.Context(), state, res.ID)
	if err != nil || len(restored) != 0 {
		t.Errorf("Revert of a job that edited nothing: %v %v", restored, err)
	}
	if _, err := Revert(t.Context(), state, "20260101T000000Z-00000000"); err == nil {
		t.Error("Revert of an unknown job succeeded")
	}
}

func TestAddCompileDecisions(t *testing.T) {
	const proj = "<Project>\r\n  <ItemGroup>\r\n    <Compile Include=\"Program.cs\" />\r\n  </ItemGroup>\r\n</Project>\r\n"
	const prog = "using System;\nusing App.Util;\nnamespace App { class Program { static void Main() { new Greeter(); } } }\n"
	cases := []struct {
		name  string
		files map[string]string
		diag  Diagnostic
		want  string // in the description, or in the error when refused
		added bool
	}{
		{"file in the project folder", map[string]string{"Util/Greeter.cs": "namespace App.Util { class Greeter {} }"},
			Diagnostic{Code: "CS0246", Subject: "Greeter"}, `<Compile Include="Util\Greeter.cs" />`, true},
		{"global namespace fits", map[string]string{"Greeter.cs": "class Greeter {}"},
			Diagnostic{Code: "CS0246", Subject: "Greeter"}, `<Compile Include="Greeter.cs" />`, true},
		{"unknown name is a typo, not a missing file", map[string]string{"Greeter.cs": "namespace App { class Greeter {} }"},
			Diagnostic{Code: "CS0103", Subject: "Greeter"}, "not a missing type", false},
		{"two candidates", map[string]string{"A.cs": "namespace App { class Greeter {} }", "B.cs": "namespace App.Util { public class Greeter {} }"},
			Diagnostic{Code: "CS0246", Subject: "Greeter"}, "a person must choose", false},
		{"commented out", map[string]string{"C.cs": "// class Greeter is gone\n/* class Greeter {} */"},
			Diagnostic{Code: "CS0246", Subject: "Greeter"}, "no .cs file outside the project declares Greeter", false},
		{"obsolete folder", map[string]string{"Obsolete/Greeter.cs": "namespace App { class Greeter {} }"},
			Diagnostic{Code: "CS0246", Subject: "Greeter"}, `in "Obsolete", which marks it as set aside`, false},
		{"explorer copy", map[string]string{"Greeter - Copy.cs": "namespace App { class Greeter {} }"},
			Diagnostic{Code: "CS0246", Subject: "Greeter"}, "set aside on purpose", false},
		{"backup folder", map[string]string{"Backup/Greeter.cs": "namespace App { class Greeter {} }"},
			Diagnostic{Code: "CS0246", Subject: "Greeter"}, "set aside on purpose", false},
		{"namespace does not fit", map[string]string{"Greeter.cs": "namespace Other.Tools { class Greeter {} }"},
			Diagnostic{Code: "CS0246", Subject: "Greeter"}, `namespace "Other.Tools", which the failing file does not use`, false},
		{"listed in another project", map[string]string{"Greeter.cs": "namespace App { class Greeter {} }",
			"Tools.csproj": "<Project>\n  <ItemGroup>\n    <Compile Include=\"Greeter.cs\" />\n  </ItemGroup>\n</Project>"},
			Diagnostic{Code: "CS0246", Subject: "Greeter", Project: "App.csproj"}, "belongs to project Tools.csproj", false},
		{"folder with its own project", map[string]string{"Lib/Greeter.cs": "namespace App { class Greeter {} }",
			"Lib/Lib.csproj": "<Project><ItemGroup><Compile Include=\"Other.cs\" /></ItemGroup></Project>"},
			Diagnostic{Code: "CS0246", Subject: "Greeter", Project: "App.csproj", File: "Program.cs"}, "under a folder with its own project", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "App.csproj"), proj)
			write(t, filepath.Join(dir, "Program.cs"), prog)
			for name, body := range tc.files {
				write(t, filepath.Join(dir, filepath.FromSlash(name)), body)
			}
			d := tc.diag
			if d.File == "" {
				d.File = "Program.cs"
			}
			d.Tool = "csc"
			ws := newWS(t, dir, "")
			desc, err := ws.addCompile(d)
			got, _ := os.ReadFile(filepath.Join(dir, "App.csproj"))
			if !tc.added {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("err = %v, want a refusal mentioning %q", err, tc.want)
				}
				if string(got) != proj {
					t.Errorf("project edited although refused:\n%s", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(got), tc.want+"\r\n") || strings.Count(string(got), "\n") != strings.Count(string(got), "\r\n") {
				t.Errorf("project lacks %q with CRLF kept:\n%q", tc.want, got)
			}
			if desc == "" {
				t.Error("no description")
			}
		})
	}
}

func TestCleanOutputLeavesNonProjectBin(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "App", "App.csproj"), "<Project/>")
	write(t, filepath.Join(dir, "App", "obj", "Debug", "x.cs"), "junk")
	write(t, filepath.Join(dir, "bin", "deploy.sh"), "#!/bin/sh")
	write(t, filepath.Join(dir, "build", "CMakeCache.txt"), "CMAKE_HOME_DIRECTORY:INTERNAL=/elsewhere")
	ws := newWS(t, dir, "")
	if _, err := ws.cleanOutput(); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"App/obj": false, "build/CMakeCache.txt": false, "bin/deploy.sh": true, "App/App.csproj": true} {
		_, err := os.Stat(filepath.Join(dir, p))
		if (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", p, err == nil, want)
		}
	}
}

func TestUnifiedDiff(t *testing.T) {
	a := "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n"
	b := "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\n"
	want := "--- a/f\n+++ b/f\n@@ -2,9 +2,10 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n 9\n 10\n+11\n"
	if got := UnifiedDiff("f", a, b); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if UnifiedDiff("f", a, a) != "" {
		t.Error("equal inputs gave a diff")
	}
}

func TestLoadPacks(t *testing.T) {
	ps := sitePacks(t)
	if got := strings.Join(ps.Names(), ","); got != "cmake-cpp,csharp,go,site" {
		t.Errorf("packs %s", got)
	}
	p, _ := ps.Pack("cmake-cpp")
	for k, want := range map[string]string{"ZLIB": "zlib1g-dev", "OpenSSL": "libssl-dev", "CURL": "libcurl4-openssl-dev", "Boost": "libboost-all-dev", "PkgConfig": "pkg-config"} {
		if p.Lookup[k] != want {
			t.Errorf("lookup %s = %q, want %q", k, p.Lookup[k], want)
		}
	}
	bad := []struct{ yaml, want string }{
		{"name: x\nrules:\n  - id: a\n    match: {code: \"(\"}\n    action: clean-output\n", "rules[0].match.code"},
		{"name: x\nrules:\n  - id: a\n    match: {}\n    action: clean-output\n", "rules[0].match"},
		{"name: x\nrules:\n  - id: a\n    match: {code: x}\n    action: report\n", "rules[0].report"},
		{"name: x\nrules:\n  - id: a\n    match: {code: x}\n    action: clean-output\n  - id: a\n    match: {code: y}\n    action: clean-output\n", "rules[1].id"},
		{"name: x\nrules: []\nextra: 1\n", "field extra not found"},
	}
	for _, tc := range bad {
		if _, err := ParsePack([]byte(tc.yaml), "t.yaml"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePack error %v, want %q", err, tc.want)
		}
	}
	if _, err := LoadPacks(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing pack dir accepted")
	}
}
