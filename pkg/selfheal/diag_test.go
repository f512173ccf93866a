package selfheal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLogRecorded(t *testing.T) {
	// Each log was captured from a real run of the tool on this repository's
	// testdata, with the temp dir rewritten to /build.
	cases := []struct {
		log, source string
		want        []Diagnostic // checked in order, as a prefix of errors+warnings with rules
		count       int          // total diagnostics expected
	}{
		{"xbuild-missing-compile.log", "mono xbuild 6.8 on testdata/projects/cs-missing-compile", []Diagnostic{
			{Tool: "csc", File: "Program.cs", Line: 9, Col: 25, Code: "CS0246", Severity: "error", Subject: "HashrateFormatter"}}, 1},
		{"xbuild-missing-reference.log", "mono xbuild 6.8 on testdata/projects/cs-missing-reference", []Diagnostic{
			{Tool: "csc", File: "Program.cs", Line: 2, Col: 18, Code: "CS0234", Severity: "error", Subject: "System.Xml.Linq"}}, 1},
		{"xbuild-framework.log", "mono xbuild 6.8 on testdata/projects/cs-framework", []Diagnostic{
			{Tool: "msbuild", File: "/usr/lib/mono/xbuild/14.0/bin/Microsoft.Common.targets", Severity: "warning", Subject: "v4.8.1"},
			{Tool: "msbuild", File: "/usr/lib/mono/xbuild/14.0/bin/Microsoft.Common.targets", Severity: "warning", Subject: "v4.8.1"},
			{Tool: "csc", Code: "CS0518", Severity: "error"}}, 33},
		{"xbuild-stale-obj.log", "mono xbuild 6.8 on testdata/projects/cs-stale-obj", []Diagnostic{
			{Tool: "csc", File: "obj/Debug/.NETFramework,Version=v4.5.AssemblyAttribute.cs", Line: 2, Col: 107, Code: "CS1525", Severity: "error"}}, 1},
		{"xbuild-type-error.log", "mono xbuild 6.8 on testdata/projects/cs-type-error", []Diagnostic{
			{Tool: "csc", File: "Program.cs", Line: 10, Col: 28, Code: "CS0029", Severity: "error"}}, 1},
		{"xbuild-bad-xml.log", "mono xbuild 6.8 on testdata/projects/cs-bad-xml", []Diagnostic{
			{Tool: "msbuild", File: "Uptime.csproj", Severity: "error"}}, 1},
		{"cmake-missing-curl.log", "cmake 3.25 on testdata/projects/cmake-missing-dep", []Diagnostic{
			{Tool: "cmake", File: "CMakeLists.txt", Line: 5, Code: "package-not-found", Severity: "error", Subject: "CURL"}}, 1},
		{"go-missing-sum.log", "go1.26 build -mod=readonly on testdata/projects/go-missing-sum", []Diagnostic{
			{Tool: "go", File: "main.go", Line: 8, Col: 2, Code: "missing-go-sum", Severity: "error", Subject: "golang.org/x/sync/errgroup"}}, 1},
		{"gcc-errors.log", "gcc 12.2 (Debian 12) on small C/C++ files with a syntax error, an undefined symbol and a missing -l", []Diagnostic{
			{Tool: "gcc", File: "a.c", Line: 1, Col: 25, Severity: "error"},
			{Tool: "ld", File: "b.c", Code: "undefined-reference", Severity: "error", Subject: "stratum_connect"},
			{Tool: "ld", Code: "ld-failed", Severity: "error"},
			{Tool: "ld", Code: "missing-library", Severity: "error", Subject: "nvidia-ml-missing"},
			{Tool: "gcc", File: "c.cpp", Line: 2, Col: 29, Severity: "error"}}, 5},
	}
	for _, tc := range cases {
		t.Run(tc.log, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "logs", tc.log))
			if err != nil {
				t.Fatal(err)
			}
			got := ParseLog(string(b))
			if len(got) != tc.count {
				t.Errorf("%d diagnostics, want %d (source: %s): %v", len(got), tc.count, tc.source, got)
			}
			for i, w := range tc.want {
				if i >= len(got) {
					t.Fatalf("missing diagnostic %d: %+v", i, w)
				}
				checkDiag(t, got[i], w)
			}
		})
	}
}

func checkDiag(t *testing.T, got, want Diagnostic) {
	t.Helper()
	if got.Tool != want.Tool || got.File != want.File || got.Line != want.Line || got.Col != want.Col ||
		got.Code != want.Code || got.Severity != want.Severity || (want.Subject != "" && got.Subject != want.Subject) ||
		(want.Project != "" && got.Project != want.Project) || got.Message == "" {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseLogPublicExcerpts(t *testing.T) {
	cases := []struct {
		source, line string
		want         Diagnostic
	}{
		{"dotnet/coreclr#20596 (dotnet sdk 2.1 msbuild, MSB3644 with project suffix)",
			`C:\j\workspace\Tools\dotnetcli\sdk\2.1.301\Microsoft.Common.CurrentVersion.targets(1179,5): error MSB3644: The reference assemblies for framework ".NETFramework,Version=v4.6" were not found. To resolve this, install the SDK or Targeting Pack for this framework version. [C:\j\workspace\project.csproj]`,
			Diagnostic{Tool: "msbuild", File: `C:\j\workspace\Tools\dotnetcli\sdk\2.1.301\Microsoft.Common.CurrentVersion.targets`, Line: 1179, Col: 5, Code: "MSB3644", Severity: "error", Subject: "v4.6", Project: `C:\j\workspace\project.csproj`}},
		{"EWSoftware/SHFB#645 (MSBuild 14 warning MSB3644)",
			`C:\Program Files (x86)\MSBuild\14.0\bin\amd64\Microsoft.Common.CurrentVersion.targets(1097,5): warning MSB3644: The reference assemblies for framework ".NETFramework,Version=v4.6.2" were not found.`,
			Diagnostic{Tool: "msbuild", File: `C:\Program Files (x86)\MSBuild\14.0\bin\amd64\Microsoft.Common.CurrentVersion.targets`, Line: 1097, Col: 5, Code: "MSB3644", Severity: "warning", Subject: "v4.6.2"}},
		{"microsoft/azure-pipelines-tasks#5554 (Azure Pipelines timestamped MSB3245)",
			`2017-10-04T08:17:02.9261532Z C:\Program Files (x86)\MSBuild\14.0\bin\Microsoft.Common.CurrentVersion.targets(1820,5): warning MSB3245: Could not resolve this reference. Could not locate the assembly "log4net, Version=2.0.8.0, Culture=neutral, PublicKeyToken=669e0ddf0bb1aa2a, processorArchitecture=MSIL". Check to make sure the assembly exists on disk. [d:\a\1\s\Sogeti.Core.Log4Net\Sogeti.Core.Log4Net.csproj]`,
			Diagnostic{Tool: "msbuild", File: `C:\Program Files (x86)\MSBuild\14.0\bin\Microsoft.Common.CurrentVersion.targets`, Line: 1820, Col: 5, Code: "MSB3245", Severity: "warning", Subject: "log4net", Project: `d:\a\1\s\Sogeti.Core.Log4Net\Sogeti.Core.Log4Net.csproj`}},
		{"G-Research/SolutionValidator#1 (dotnet restore NU1101, project-level)",
			`D:\code\gr\SolutionValidator\src\SlnUtils\SlnUtils.csproj : error NU1101: Unable to find package GR.NuGetPackageChecker. No packages exist with this id in source(s): nuget.org [D:\code\gr\SolutionValidator\SolutionValidator.sln]`,
			Diagnostic{Tool: "nuget", File: `D:\code\gr\SolutionValidator\src\SlnUtils\SlnUtils.csproj`, Code: "NU1101", Severity: "error", Subject: "GR.NuGetPackageChecker", Project: `D:\code\gr\SolutionValidator\SolutionValidator.sln`}},
		{"p-org/P#140 (Roslyn CS0246 with project suffix)",
			`  Liveness\StateCaching\FairNondet1Test.cs(21,6): error CS0246: The type or namespace name 'TestClass' could not be found (are you missing a using directive or an assembly reference?) [C:\Source\P\Tests\TestingServices.Tests.Unit.csproj]`,
			Diagnostic{Tool: "csc", File: `Liveness\StateCaching\FairNondet1Test.cs`, Line: 21, Col: 6, Code: "CS0246", Severity: "error", Subject: "TestClass", Project: `C:\Source\P\Tests\TestingServices.Tests.Unit.csproj`}},
		{"icnocop/cuite#33 (Roslyn CS0234)",
			`error CS0234: The type or namespace name 'VisualStudio' does not exist in the namespace 'Microsoft' (are you missing an assembly reference?) [C:\projects\cuite\src\CUITe\CUITe.csproj]`,
			Diagnostic{Tool: "csc", Code: "CS0234", Severity: "error", Subject: "Microsoft.VisualStudio", Project: `C:\projects\cuite\src\CUITe\CUITe.csproj`}},
		{"OfficeDev/Project-Samples#4 (Visual Studio 4-number span)",
			`1>C:\projects.temp\ProjToolV2\Utilities\CsomHelper.cs(95,52,95,60): error CS0246: The type or namespace name 'QueueJob' could not be found (are you missing a using directive or an assembly reference?)`,
			Diagnostic{Tool: "csc", File: `C:\projects.temp\ProjToolV2\Utilities\CsomHelper.cs`, Line: 95, Col: 52, Code: "CS0246", Severity: "error", Subject: "QueueJob"}},
		{"xmrig/xmrig-proxy#442 (gcc OOM kill)",
			`c++: fatal error: Killed signal terminated program cc1plus`,
			Diagnostic{Tool: "gcc", Code: "oom-killed", Severity: "fatal", Subject: "cc1plus"}},
		{"gcc bug reports (OOM inside the compiler)",
			`virtual memory exhausted: internal compiler error: Killed (program cc1plus)`,
			Diagnostic{Tool: "gcc", Code: "oom-killed", Severity: "fatal", Subject: "cc1plus"}},
		{"munjeni/newflasher#7 (ld cannot find -lc)",
			`/usr/bin/ld: cannot find -lc`,
			Diagnostic{Tool: "ld", Code: "missing-library", Severity: "error", Subject: "c"}},
		{"opm/opm-material#247 (CMake config-mode package)",
			`  By not providing "Findopm-common.cmake" in CMAKE_MODULE_PATH this project`,
			Diagnostic{Tool: "cmake", Code: "package-config-not-found", Severity: "error", Subject: "opm-common"}},
		{"bit-ivrc/cmake_tutorial#4 (non-REQUIRED find is a status line)",
			`-- Could NOT find TINYSPlINE (missing:  TINYSPlINE_INCLUDE_DIR TINYSPlINE_LIBRARY_DIR) `,
			Diagnostic{Tool: "cmake", Code: "package-not-found", Severity: "warning", Subject: "TINYSPlINE"}},
		{"go build type error (go1.26)",
			`./main.go:12:9: cannot use "x" (untyped string constant) as int value in return statement`,
			Diagnostic{Tool: "go", File: "./main.go", Line: 12, Col: 9, Severity: "error"}},
	}
	for _, tc := range cases {
		t.Run(tc.source, func(t *testing.T) {
			got := ParseLog(tc.line)
			if len(got) != 1 {
				t.Fatalf("got %d diagnostics: %+v", len(got), got)
			}
			checkDiag(t, got[0], tc.want)
		})
	}
}

func TestParseLogIgnoresProse(t *testing.T) {
	for _, s := range []string{
		"Build succeeded.\n\t 0 Warning(s)\n\t 0 Error(s)\n",
		"Some tests had an error: see above\n",
		"Compile complete -- 0 errors, 0 warnings\n",
		"",
	} {
		if got := ParseLog(s); len(got) != 0 {
			t.Errorf("ParseLog(%q) = %+v, want none", s, got)
		}
	}
}

func TestFingerprint(t *testing.T) {
	a := ParseLog("/tmp/build-1/x/Program.cs(9,25): error CS0246: The type or namespace name `A' could not be found.\nfoo.cs(1,1): warning CS0168: unused\n")
	b := ParseLog("/tmp/build-2/y/Program.cs(9,25): error CS0246: The type or namespace name `A' could not be found.\n")
	c := ParseLog("Program.cs(9,25): error CS0246: The type or namespace name `B' could not be found.\n")
	if Fingerprint(a) != Fingerprint(b) {
		t.Error("fingerprint depends on the checkout path or on warnings")
	}
	if Fingerprint(a) == Fingerprint(c) {
		t.Error("different failures share a fingerprint")
	}
}

func FuzzParseLog(f *testing.F) {
	logs, _ := filepath.Glob(filepath.Join("testdata", "logs", "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err == nil {
			f.Add(string(b))
		}
	}
	f.Add("a.cs(1,: error CS: \x00")
	f.Add("CMake Error at :x\n  Could NOT find (missing: ")
	f.Fuzz(func(t *testing.T, s string) {
		ds := ParseLog(s)
		for _, d := range ds {
			if d.Tool == "" || d.Severity == "" {
				t.Fatalf("incomplete diagnostic %+v", d)
			}
			if d.Line < 0 || d.Col < 0 {
				t.Fatalf("negative position %+v", d)
			}
		}
		if Fingerprint(ds) != Fingerprint(ParseLog(s)) {
			t.Fatal("fingerprint not deterministic")
		}
		_ = strings.Count(s, "\n")
	})
}

func BenchmarkParseLog(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "logs", "xbuild-framework.log"))
	if err != nil {
		b.Fatal(err)
	}
	// A large log: the framework failure repeated as a big solution would print it.
	big := strings.Repeat(string(data), 100)
	b.SetBytes(int64(len(big)))
	b.ReportAllocs()
	for b.Loop() {
		ParseLog(big)
	}
}

// TestParseLogAttributesProjects: xbuild prints paths relative to the
// project it builds without naming it; the project context lines and the
// error summary name it.
func TestParseLogAttributesProjects(t *testing.T) {
	log := "Project \"/w/App.sln\" (default target(s)):\n" +
		"\tTarget Build:\n" +
		"\t\tProject \"/w/Lib/Lib.csproj\" (default target(s)):\n" +
		"Program.cs(3,7): error CS0246: The type or namespace name `Foo' could not be found. Are you missing an assembly reference?\n" +
		"\t\tDone building project \"/w/Lib/Lib.csproj\".-- FAILED\n" +
		"\t\tProject \"/w/App/App.csproj\" (default target(s)):\n" +
		"Program.cs(3,7): error CS0246: The type or namespace name `Foo' could not be found. Are you missing an assembly reference?\n" +
		"\t\tDone building project \"/w/App/App.csproj\".-- FAILED\n" +
		"Done building project \"/w/App.sln\".-- FAILED\n" +
		"Errors:\n\n/w/App.sln (default targets) ->\n(Build target) ->\n/w/App/App.csproj (default targets) ->\n" +
		"/usr/lib/mono/xbuild/14.0/bin/Microsoft.CSharp.targets (CoreCompile target) ->\n\n" +
		"\tProgram.cs(3,7): error CS0246: The type or namespace name `Foo' could not be found. Are you missing an assembly reference?\n" +
		"Bar.cs(1,1): error CS1002: ; expected [/w/Other/Other.csproj]\n"
	ds := ParseLog(log)
	var got []string
	for _, d := range ds {
		got = append(got, d.File+"@"+d.Project)
	}
	want := []string{"Program.cs@/w/Lib/Lib.csproj", "Program.cs@/w/App/App.csproj", "Bar.cs@/w/Other/Other.csproj"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("attributed %v, want %v", got, want)
	}
}
