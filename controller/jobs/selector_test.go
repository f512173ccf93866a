package jobs

import (
	"testing"

	"github.com/quarryfleet/quarry/controller/fleet"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestSelectorMatchesRigs(t *testing.T) {
	rigs := []*quarryv1.Rig{
		{Id: "rig-a", Name: "builder-1", Labels: map[string]string{"site": "reykjavik", "hosting": ""}, Gpus: []*quarryv1.GPUStats{{Name: "NVIDIA GeForce RTX 3070"}}},
		{Id: "rig-b", Name: "builder-2", Labels: map[string]string{"site": "oslo"}},
		{Id: "rig-c", Labels: map[string]string{"site": "reykjavik"}},
	}
	cases := []struct {
		sel  string
		want []string
	}{
		{"name=builder-*", []string{"rig-a", "rig-b"}},
		{"name=rig-c", []string{"rig-c"}}, // a rig with no name goes by its id
		{"site=reykjavik", []string{"rig-a", "rig-c"}},
		{"tag=site=oslo", []string{"rig-b"}},
		{"tag=hosting", []string{"rig-a"}},
		{"site=reykjavik,gpu=RTX 3070", []string{"rig-a"}},
		{"name=builder-*,site=reykjavik", []string{"rig-a"}},
		{"site=tokyo", nil},
		{"builder-2", []string{"rig-b"}}, // a bare word is a rig's name or id
		{"rig-a", []string{"rig-a"}},
		{"rig-c,site=reykjavik", []string{"rig-c"}},
	}
	for _, tc := range cases {
		t.Run(tc.sel, func(t *testing.T) {
			sel, err := parseSelector(tc.sel)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rigs {
				if sel.Matches(fleet.SelectorRig(r)) {
					got = append(got, r.Id)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("matched %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("matched %v, want %v", got, tc.want)
				}
			}
		})
	}
	for _, bad := range []string{"builder-*", "name=[", "gpu=", "rig-a,"} {
		if _, err := parseSelector(bad); err == nil {
			t.Errorf("parseSelector(%q) accepted a bad selector", bad)
		}
	}
}

func TestJobStatusFoldsRuns(t *testing.T) {
	cases := []struct {
		runs []string
		want string
	}{
		{nil, StatusPending},
		{[]string{"succeeded", "succeeded"}, "succeeded"},
		{[]string{"succeeded", "healed"}, "healed"},
		{[]string{"healed", "failed"}, "failed"},
		{[]string{"failed", "canceled"}, "canceled"},
		{[]string{"succeeded", StatusPending}, StatusPending},
		{[]string{StatusPending, StatusRunning, "failed"}, StatusRunning},
	}
	for _, tc := range cases {
		rec := &record{}
		for _, s := range tc.runs {
			rec.Runs = append(rec.Runs, run{Status: s})
		}
		if got := rec.status(); got != tc.want {
			t.Errorf("status of %v = %s, want %s", tc.runs, got, tc.want)
		}
	}
}

// BenchmarkPublish is the cost a build's output line pays to reach eight
// watchers (no log file).
func BenchmarkPublish(b *testing.B) {
	a := &active{id: "bench", subs: map[chan *quarryv1.JobEvent]struct{}{}}
	for range 8 {
		ch := make(chan *quarryv1.JobEvent, 1024)
		a.subs[ch] = struct{}{}
		go func() {
			for range ch {
			}
		}()
		b.Cleanup(func() { close(ch) })
	}
	b.ReportAllocs()
	for b.Loop() {
		a.publish(&quarryv1.JobEvent{Kind: "output", Step: "make", Text: "cc -O2 -c miner.c -o miner.o"})
	}
}
