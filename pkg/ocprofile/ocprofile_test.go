package ocprofile

import (
	"os"
	"strings"
	"testing"
)

func TestParseExample(t *testing.T) {
	fh, err := os.Open("testdata/profiles.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	f, err := Parse(fh)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Profiles) != 2 || f.Profiles[1].Match.BusID[0] != "0000:3a:00.0" || *f.Profiles[0].PowerLimitW != 450 {
		t.Fatalf("parsed %+v", f.Profiles)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"unknown key", "profiles:\n- name: a\n  match: {index: [0]}\n  power_limt_w: 100\n", "power_limt_w"},
		{"no name", "profiles:\n- match: {index: [0]}\n  power_limit_w: 100\n", "name is empty"},
		{"dup", "profiles:\n- {name: a, match: {index: [0]}, fan_percent: 50}\n- {name: a, match: {index: [1]}, fan_percent: 50}\n", "used twice"},
		{"no match", "profiles:\n- name: a\n  power_limit_w: 100\n", "selects nothing"},
		{"bad bus", "profiles:\n- {name: a, match: {bus_id: [xyz]}, fan_percent: 5}\n", "bus_id[0]"},
		{"inverted clocks", "profiles:\n- {name: a, match: {index: [0]}, gpu_clock_mhz: {min: 1800, max: 1500}}\n", "gpu_clock_mhz"},
		{"fan over 100", "profiles:\n- {name: a, match: {index: [0]}, fan_percent: 120}\n", "fan_percent"},
		{"nothing set", "profiles:\n- {name: a, match: {index: [0]}}\n", "sets nothing"},
		{"not yaml", "profiles: [\n", "oc profiles"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want mention of %q", err, tt.want)
			}
		})
	}
}

func TestSelectMostSpecific(t *testing.T) {
	f := &File{Profiles: []Profile{
		{Name: "model", Match: Match{Model: "RTX"}},
		{Name: "idx", Match: Match{Index: []int{1}}},
		{Name: "uuid", Match: Match{UUID: []string{"GPU-1"}}},
		{Name: "idx-too", Match: Match{Index: []int{2}}},
		{Name: "idx-again", Match: Match{Index: []int{2}}},
	}}
	tests := []struct {
		card    Card
		want    string
		wantErr bool
	}{
		{Card{Index: 0, Name: "RTX"}, "model", false},
		{Card{Index: 1, Name: "RTX"}, "idx", false},
		{Card{Index: 1, Name: "RTX", UUID: "GPU-1"}, "uuid", false},
		{Card{Index: 3, Name: "GTX"}, "", false},
		{Card{Index: 2}, "", true},
	}
	for _, tt := range tests {
		p, err := f.Select(tt.card)
		got := ""
		if p != nil {
			got = p.Name
		}
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("Select(%+v) = %q, %v; want %q err=%v", tt.card, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParse(f *testing.F) {
	b, _ := os.ReadFile("testdata/profiles.yaml")
	f.Add(string(b))
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = Parse(strings.NewReader(s))
	})
}
