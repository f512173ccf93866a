package flightsheet

import (
	"strings"
	"testing"
)

func TestSelector(t *testing.T) {
	rigs := map[string]Rig{
		"a": {ID: "7f3a", Name: "rig-01", Tags: []string{"hosting", "eu"}, GPUs: []string{"NVIDIA GeForce RTX 3070", "NVIDIA GeForce RTX 3070"}},
		"b": {ID: "9c1e", Name: "rig-02", Tags: []string{"home"}, GPUs: []string{"NVIDIA GeForce RTX 3080"}},
		"c": {ID: "asic-7-id", Name: "asic-7", Tags: []string{"hosting"}},
	}
	tests := []struct {
		sel  string
		want string // keys of matching rigs, sorted
	}{
		{"", "abc"},
		{"name=rig-*", "ab"},
		{"name=rig-0[2-9]", "b"},
		{"tag=hosting", "ac"},
		{"tag=e?", "a"},
		{"gpu=RTX 3070", "a"},
		{"gpu=rtx 30", "ab"},
		{"gpu=NVIDIA*3080", "b"},
		{"gpu=3080*", ""},
		{"name=rig-*, tag=hosting", "a"},
		{"name=rig-*,tag=hosting,gpu=RTX 3080", ""},
		{"name=*", "abc"},
		// A bare word is one rig by name or id, as 'rig show' takes it.
		{"rig-02", "b"},
		{"7f3a", "a"},
		{" asic-7 ", "c"},
		{"asic-7-id", "c"},
		{"rig-0", ""},         // whole names only
		{"RIG-01", ""},        // names are exact
		{"rig-01,rig-02", ""}, // every term must match one rig
		{"rig-01,gpu=RTX 3070", "a"},
		{"rig-02,tag=hosting", ""},
	}
	for _, tt := range tests {
		sel, err := ParseSelector(tt.sel)
		if err != nil {
			t.Fatalf("ParseSelector(%q): %v", tt.sel, err)
		}
		var got strings.Builder
		for _, k := range []string{"a", "b", "c"} {
			if sel.Matches(rigs[k]) {
				got.WriteString(k)
			}
		}
		if got.String() != tt.want {
			t.Errorf("%q matched %q, want %q", tt.sel, got.String(), tt.want)
		}
	}
}

func TestSelectorErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"rig-*", "for a pattern write name=rig-*"},
		{"rig-0?", "bare word is one rig's name or id"},
		{"rig-01, ", "term 2"},
		{"host=x", `unknown key "host"`},
		{"name=", "empty value"},
		{"name=rig-[", "bad pattern"},
		{"name=a,,tag=b", "term 2"},
	}
	for _, tt := range tests {
		_, err := ParseSelector(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseSelector(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestSelectorFilter(t *testing.T) {
	sel := MustParseSelector("tag=gpu")
	got := sel.Filter([]Rig{{Name: "x", Tags: []string{"gpu"}}, {Name: "y"}, {Name: "z", Tags: []string{"gpu"}}})
	if len(got) != 2 || got[0].Name != "x" || got[1].Name != "z" {
		t.Errorf("Filter = %+v", got)
	}
	if sel.String() != "tag=gpu" {
		t.Errorf("String = %q", sel.String())
	}
}
