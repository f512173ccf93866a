package ctl

import (
	"testing"
	"time"
)

func TestParseDecimal(t *testing.T) {
	for _, tc := range []struct {
		in    string
		scale int
		want  int64
		bad   bool
	}{
		{"45", 2, 4500, false},
		{"45.5", 2, 4550, false},
		{"0.125", 5, 12500, false},
		{".5", 2, 50, false},
		{"0", 2, 0, false},
		{"00012.30", 2, 1230, false},
		{"0.001", 2, 0, true},
		{"-1", 2, 0, true},
		{"1e3", 2, 0, true},
		{"", 2, 0, true},
		{"5.", 2, 0, true},
		{".", 2, 0, true},
		{"99999999999999999999", 2, 0, true},
	} {
		got, err := ParseDecimal(tc.in, tc.scale)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseDecimal(%q, %d) = %d, %v; want %d, error %v", tc.in, tc.scale, got, err, tc.want, tc.bad)
		}
	}
}

func TestFormatDecimalRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		n     int64
		scale int
		want  string
	}{
		{4500, 2, "45.00"},
		{5, 2, "0.05"},
		{12500, 5, "0.125"},
		{100000, 5, "1.00"},
		{-250, 2, "-2.50"},
		{833, 3, "0.833"},
	} {
		got := FormatDecimal(tc.n, tc.scale)
		if got != tc.want {
			t.Errorf("FormatDecimal(%d, %d) = %q, want %q", tc.n, tc.scale, got, tc.want)
		}
		if tc.n >= 0 {
			if back, err := ParseDecimal(got, tc.scale); err != nil || back != tc.n {
				t.Errorf("ParseDecimal(%q) = %d, %v; want %d", got, back, err, tc.n)
			}
		}
	}
	if got := EnergyHuman(1_234_567); got != "1.234 kWh" {
		t.Errorf("EnergyHuman = %q", got)
	}
	if got := EnergyHuman(833); got != "0.833 Wh" {
		t.Errorf("EnergyHuman = %q", got)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                  now.Add(-24 * time.Hour),
		"2026-05-01":           time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
		"2026-05-09T08:30:00Z": time.Date(2026, 5, 9, 8, 30, 0, 0, time.UTC),
	} {
		got, err := ParseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1h", "yesterday", "2026-13-01"} {
		if _, err := ParseSince(bad, now); err == nil {
			t.Errorf("ParseSince(%q) accepted", bad)
		}
	}
}
