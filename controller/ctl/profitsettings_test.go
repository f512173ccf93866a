package ctl

import (
	"slices"
	"strings"
	"testing"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestParseTariffRule(t *testing.T) {
	tests := []struct {
		in   string
		want *quarryv1.TariffRule // nil: refused
		err  string
	}{
		{"22-6=0.07", &quarryv1.TariffRule{FromHour: 22, ToHour: 6, PriceUsdKwh: 0.07}, ""},
		{" 0 - 24 = 0.1", &quarryv1.TariffRule{FromHour: 0, ToHour: 24, PriceUsdKwh: 0.1}, ""},
		{"sat,sun:0-24=0.04", &quarryv1.TariffRule{Days: []int32{6, 0}, FromHour: 0, ToHour: 24, PriceUsdKwh: 0.04}, ""},
		{"Monday,FRI:17-21=0.3", &quarryv1.TariffRule{Days: []int32{1, 5}, FromHour: 17, ToHour: 21, PriceUsdKwh: 0.3}, ""},
		{"22-6", nil, "no price"},
		{"22=0.1", nil, "no hours"},
		{"a-6=0.1", nil, "whole numbers"},
		{"22-6=cheap", nil, "price must be a number"},
		{"holiday:22-6=0.1", nil, "not a weekday"},
		{":22-6=0.1", nil, "not a weekday"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTariffRule(tt.in)
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "FROM-TO=PRICE") {
					t.Fatalf("got %v, %v; want an error containing %q and the format", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.FromHour != tt.want.FromHour || got.ToHour != tt.want.ToHour || got.PriceUsdKwh != tt.want.PriceUsdKwh || !slices.Equal(got.Days, tt.want.Days) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			if back, err := parseTariffRule(formatTariffRule(got)); err != nil || !slices.Equal(back.Days, got.Days) || back.FromHour != got.FromHour {
				t.Fatalf("%q does not read back: %v, %v", formatTariffRule(got), back, err)
			}
		})
	}
}

func TestFindOption(t *testing.T) {
	st := &quarryv1.ProfitSettings{Options: []*quarryv1.ProfitOption{{FlightSheet: "etc"}, {FlightSheet: "rvn"}, {FlightSheet: "rvn"}}}
	tests := []struct {
		key  string
		want int
		err  string
	}{
		{"1", 0, ""}, {"3", 2, ""}, {"etc", 0, ""},
		{"0", 0, "there are 3 options"}, {"4", 0, "there are 3 options"},
		{"rvn", 0, "more than one option"}, {"xmr", 0, "no option has"},
	}
	for _, tt := range tests {
		i, err := findOption(st, tt.key)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: got %d, %v; want error %q", tt.key, i, err, tt.err)
			}
			continue
		}
		if err != nil || i != tt.want {
			t.Errorf("%s: got %d, %v; want %d", tt.key, i, err, tt.want)
		}
	}
}
