package selfheal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const pkgRefProj = "\ufeff<Project xmlns=\"http://schemas.microsoft.com/developer/msbuild/2003\">\r\n" +
	"  <PropertyGroup>\r\n    <TargetFrameworkVersion>v4.6.1</TargetFrameworkVersion>\r\n  </PropertyGroup>\r\n" +
	"  <ItemGroup>\r\n    <Reference Include=\"System\" />\r\n  </ItemGroup>\r\n" +
	"  <ItemGroup>\r\n    <PackageReference Include=\"Acme.Units\">\r\n      <Version>1.0.0</Version>\r\n    </PackageReference>\r\n" +
	"    <PackageReference Include=\"Acme.Pool\" Version=\"2.1.0\" />\r\n  </ItemGroup>\r\n</Project>\r\n"

// TestRestorePackageReference: xbuild's missing <PackageReference> packages
// are unpacked beside the solution and referenced through the best lib
// folder; a package missing from the feed is named with the feed and
// nothing is written.
func TestRestorePackageReference(t *testing.T) {
	// The project lives one folder below its solution, so the packages go
	// beside the .sln and the HintPath starts with ..\packages.
	setup := func(t *testing.T, feed map[string]map[string][]byte) (string, *workspace) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "Rigs.sln"), "\r\n")
		write(t, filepath.Join(dir, "Rig", "Rig.csproj"), pkgRefProj)
		write(t, filepath.Join(dir, "nuget.config"), `<configuration><packageSources><add key="l" value="feed" /></packageSources></configuration>`)
		if err := os.MkdirAll(filepath.Join(dir, "feed"), 0o755); err != nil {
			t.Fatal(err)
		}
		for id, files := range feed {
			idv := strings.Split(id, " ")
			writeNupkg(t, filepath.Join(dir, "feed", strings.ToLower(idv[0]+"."+idv[1])+".nupkg"), idv[0], idv[1], files)
		}
		return dir, newWS(t, dir, "")
	}
	d := Diagnostic{Tool: "csc", Code: "CS0246", File: "Program.cs", Project: filepath.Join("Rig", "Rig.csproj"), Subject: "Acme"}
	units := map[string][]byte{"lib/net40/Acme.Units.dll": []byte("40"), "lib/net461/Acme.Units.dll": []byte("461"), "lib/net472/Acme.Units.dll": []byte("472")}
	pool := map[string][]byte{"lib/netstandard2.0/Acme.Pool.dll": []byte("ns20"), "lib/netcoreapp3.1/Acme.Pool.dll": []byte("core")}

	t.Run("missing from the feed", func(t *testing.T) {
		dir, ws := setup(t, map[string]map[string][]byte{"Acme.Units 1.0.0": units})
		before := treeHashes(t, dir)
		_, err := ws.restorePackageReferences(d)
		if err == nil || !strings.Contains(err.Error(), "package Acme.Pool 2.1.0") || !strings.Contains(err.Error(), filepath.Join(dir, "feed")) {
			t.Errorf("err = %v, want the missing package and the feed it was looked for in", err)
		}
		if after := treeHashes(t, dir); !equalHashes(before, after) {
			t.Errorf("a refused restore changed the tree: %v", diffHashes(before, after))
		}
	})
	t.Run("no package references", func(t *testing.T) {
		dir, ws := setup(t, nil)
		write(t, filepath.Join(dir, "Rig", "Rig.csproj"), "<Project>\n  <ItemGroup>\n    <Reference Include=\"System\" />\n  </ItemGroup>\n</Project>\n")
		if _, err := ws.restorePackageReferences(d); err == nil || !strings.Contains(err.Error(), "no <PackageReference>") {
			t.Errorf("err = %v, want not applicable", err)
		}
	})
	t.Run("no usable lib folder", func(t *testing.T) {
		dir, ws := setup(t, map[string]map[string][]byte{"Acme.Units 1.0.0": {"lib/net472/Acme.Units.dll": []byte("472")}, "Acme.Pool 2.1.0": pool})
		before := treeHashes(t, dir)
		if _, err := ws.restorePackageReferences(d); err == nil || !strings.Contains(err.Error(), "no assemblies for a v4.6.1 project") {
			t.Errorf("err = %v, want the framework mismatch named", err)
		}
		if after := treeHashes(t, dir); !equalHashes(before, after) {
			t.Errorf("a refused restore changed the tree: %v", diffHashes(before, after))
		}
	})
	t.Run("restored", func(t *testing.T) {
		dir, ws := setup(t, map[string]map[string][]byte{"Acme.Units 1.0.0": units, "Acme.Pool 2.1.0": pool})
		if _, err := ws.restorePackageReferences(d); err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]string{
			"packages/Acme.Units.1.0.0/lib/net461/Acme.Units.dll":       "461",
			"packages/Acme.Pool.2.1.0/lib/netstandard2.0/Acme.Pool.dll": "ns20",
		} {
			if b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(path))); err != nil || string(b) != want {
				t.Errorf("%s: %q %v, want %q", path, b, err, want)
			}
		}
		b, err := os.ReadFile(filepath.Join(dir, "Rig", "Rig.csproj"))
		if err != nil {
			t.Fatal(err)
		}
		got := string(b)
		for _, want := range []string{
			"\ufeff<Project",
			"    <Reference Include=\"Acme.Units\">\r\n      <HintPath>..\\packages\\Acme.Units.1.0.0\\lib\\net461\\Acme.Units.dll</HintPath>\r\n    </Reference>\r\n",
			"    <Reference Include=\"Acme.Pool\">\r\n      <HintPath>..\\packages\\Acme.Pool.2.1.0\\lib\\netstandard2.0\\Acme.Pool.dll</HintPath>\r\n    </Reference>\r\n  </ItemGroup>",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("project lacks %q:\n%s", want, got)
			}
		}
		if strings.Contains(got, "PackageReference") {
			t.Errorf("a <PackageReference> is left, which xbuild cannot load:\n%s", got)
		}
		if n, crlf := strings.Count(got, "\n"), strings.Count(got, "\r\n"); n != crlf {
			t.Errorf("%d LF line ends among %d CRLF", n-crlf, crlf)
		}
		cfg, err := readPackagesConfig(filepath.Join(dir, "Rig", "packages.config"))
		if err != nil || len(cfg) != 2 || cfg[0] != (pkgRef{ID: "Acme.Units", Version: "1.0.0"}) || cfg[1] != (pkgRef{ID: "Acme.Pool", Version: "2.1.0"}) {
			t.Errorf("packages.config = %+v %v", cfg, err)
		}
	})
}
