package switcher

import (
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/market"
)

func TestOfflineAndDemoMarketSources(t *testing.T) {
	tests := []struct {
		name    string
		src     SourceConfig
		wantErr string
		swing   float64
	}{
		{"offline", SourceConfig{Kind: "offline"}, "", 0},
		{"demo default swing", SourceConfig{Kind: "demo"}, "", 0.4},
		{"demo swing", SourceConfig{Kind: "demo", Swing: 0.2}, "", 0.2},
		{"demo swing too large", SourceConfig{Kind: "demo", Swing: 2}, "swing", 0},
		{"demo negative swing", SourceConfig{Kind: "demo", Swing: -0.1}, "swing", 0},
		{"demo negative period", SourceConfig{Kind: "demo", Period: -1}, "period", 0},
		{"unknown kind", SourceConfig{Kind: "oracle"}, "offline or demo", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Market.Sources = []SourceConfig{tc.src}
			srcs, err := cfg.MarketSources(nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				if cfg.Validate() == nil {
					t.Fatal("Validate accepted the bad source")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o, ok := srcs[0].(*market.Offline)
			if !ok || o.Swing != tc.swing {
				t.Fatalf("source %#v, want an offline source with swing %v", srcs[0], tc.swing)
			}
		})
	}
}
