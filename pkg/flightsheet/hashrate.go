package flightsheet

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Hashrate is a rate in hashes per second. In YAML it is either a plain
// number (H/s) or a number with a unit: "120 MH/s", "9.5kH/s", "110 TH".
type Hashrate float64

var hashUnits = []struct {
	suffix, name string
	mult         float64
}{
	// Bare "h" must come last: every other suffix also ends in it.
	{"eh", "EH/s", 1e18}, {"ph", "PH/s", 1e15}, {"th", "TH/s", 1e12}, {"gh", "GH/s", 1e9},
	{"mh", "MH/s", 1e6}, {"kh", "kH/s", 1e3}, {"h", "H/s", 1},
}

// ParseHashrate reads "120 MH/s" and the like.
func ParseHashrate(s string) (Hashrate, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "/s")
	t = strings.TrimSpace(t)
	mult := 1.0
	for _, u := range hashUnits {
		if strings.HasSuffix(t, u.suffix) {
			mult = u.mult
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("hashrate %q: want a non-negative number with an optional unit like \"120 MH/s\"", s)
	}
	return Hashrate(v * mult), nil
}

// UnmarshalYAML accepts a number or a string with a unit.
func (h *Hashrate) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected_hashrate must be a number or a string like \"120 MH/s\"", n.Line)
	}
	v, err := ParseHashrate(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*h = v
	return nil
}

// MarshalYAML writes the plain H/s number so a round trip is exact.
func (h Hashrate) MarshalYAML() (any, error) { return float64(h), nil }

// String formats with the largest unit that keeps the number at least 1.
func (h Hashrate) String() string {
	v := float64(h)
	for _, u := range hashUnits {
		if v >= u.mult {
			return strconv.FormatFloat(v/u.mult, 'f', -1, 64) + " " + u.name
		}
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + " H/s"
}
