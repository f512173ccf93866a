package flightsheet

import (
	"fmt"
	"os"
	"testing"
)

func BenchmarkParseValidate(b *testing.B) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		fs, err := Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		if err := fs.Validate(known); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSelectorFleet matches one selector against a 10,000-rig fleet,
// what the controller does when a flight sheet is applied by selector.
func BenchmarkSelectorFleet(b *testing.B) {
	rigs := make([]Rig, 10000)
	for i := range rigs {
		rigs[i] = Rig{
			Name: fmt.Sprintf("rig-%05d", i),
			Tags: []string{"site-" + fmt.Sprint(i%7), "hosting"},
			GPUs: []string{"NVIDIA GeForce RTX 3070", "NVIDIA GeForce RTX 3080"},
		}
	}
	sel := MustParseSelector("name=rig-0*,tag=hosting,gpu=RTX 3080")
	b.ReportAllocs()
	for b.Loop() {
		if n := len(sel.Filter(rigs)); n != 10000 {
			b.Fatal(n)
		}
	}
}
