package selfheal

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFrameworkIndex reads the installed reference assemblies and checks
// namespaces whose assembly is not named after them.
func TestFrameworkIndex(t *testing.T) {
	dir := filepath.Join(DefaultMonoRoot, "4.5-api")
	if _, err := os.Stat(filepath.Join(dir, "mscorlib.dll")); err != nil {
		needTools(t, "mono-reference-assemblies-4.5")
	}
	var x frameworkIndex
	cases := map[string]string{
		"System.Runtime.Serialization.Json": "System.Runtime.Serialization",
		"System.Web.Script.Serialization":   "System.Web.Extensions",
		"System.Xml.Linq":                   "System.Xml.Linq",
		"System.Net.Http":                   "System.Net.Http",
	}
	for ns, want := range cases {
		got := x.lookup(dir, ns)
		found := false
		for _, a := range got {
			found = found || a == want
		}
		if !found {
			t.Errorf("namespace %s: assemblies %v, want %s among them", ns, got, want)
		}
	}
	if got := x.lookup(dir, "No.Such.Namespace"); len(got) != 0 {
		t.Errorf("unknown namespace found in %v", got)
	}
	if _, err := assemblyNamespaces(filepath.Join(dir, "..", "4.5", "mcs.exe.config")); err == nil {
		t.Error("a non-assembly parsed")
	}
}
