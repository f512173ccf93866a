package main

import (
	"strings"
	"testing"
	"time"
)

func TestCheckMeasureFlags(t *testing.T) {
	cases := []struct {
		name              string
		gc                int
		duration, measure time.Duration
		profile, algo     string
		want              string // "" accepts
	}{
		{"plain run", 400, 0, 0, "", "", ""},
		{"measured run with a profile", 400, 30 * time.Second, 0, "p.pprof", "", ""},
		{"switch to an algorithm, profiled", 100, 0, time.Minute, "p.pprof", "autolykos2", ""},
		{"collector target zero", 0, 0, 0, "", "", "-gc-percent 0"},
		{"collector target negative", -1, 30 * time.Second, 0, "", "", "-gc-percent -1"},
		{"profile without a window", 400, 0, 0, "p.pprof", "", "-cpu-profile"},
		{"algorithm without a switch", 400, 30 * time.Second, 0, "", "etchash", "-switch-algorithm"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkMeasureFlags(c.gc, c.duration, c.measure, c.profile, c.algo)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error naming %s", err, c.want)
			}
		})
	}
}
