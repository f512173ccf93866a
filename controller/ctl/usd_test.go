package ctl

import (
	"math"
	"testing"
)

func TestUSDKeepsSmallAmounts(t *testing.T) {
	for v, want := range map[float64]string{
		12.345: "12.35", 1: "1.00", 0: "0.00", 0.5: "0.500", 0.0123: "0.0123", -0.00456: "-0.00456",
		0.000789: "0.000789", math.Inf(1): "-", 1e-12: "0.00",
	} {
		if got := usd(v); got != want {
			t.Errorf("usd(%v) = %q, want %q", v, got, want)
		}
	}
}
