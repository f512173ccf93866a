package minerapi_test

import (
	"context"
	"testing"

	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/minerapi/internal/recorded"
)

func BenchmarkParseXmrig(b *testing.B) {
	sum, back := recorded.MustGet(recorded.XmrigSummary), recorded.MustGet(recorded.XmrigBackends)
	b.SetBytes(int64(len(sum) + len(back)))
	for b.Loop() {
		if _, err := minerapi.ParseXmrig(sum, back); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseTrex(b *testing.B) {
	sum := recorded.MustGet(recorded.TrexSummary)
	b.SetBytes(int64(len(sum)))
	for b.Loop() {
		if _, err := minerapi.ParseTrex(sum); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseBMMiner(b *testing.B) {
	sum, pools, stats := recorded.MustGet(recorded.BMMinerSummary), recorded.MustGet(recorded.BMMinerPools), recorded.MustGet(recorded.BMMinerStats)
	b.SetBytes(int64(len(sum) + len(pools) + len(stats)))
	for b.Loop() {
		if _, err := minerapi.ParseCGMiner(sum, nil, pools, stats); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStatsOverSocket is one full poll of a live (fake) miner: connect,
// request, read, parse, over loopback.
func BenchmarkStatsOverSocket(b *testing.B) {
	for _, tc := range []struct{ api, adapter string }{{"xmrig", "xmrig"}, {"trex", "trex"}, {"cgminer", "cgminer"}} {
		b.Run(tc.api, func(b *testing.B) {
			f := startFake(b, tc.api, "-log-interval", "1h")
			a := newAdapter(b, tc.adapter, minerapi.Options{})
			for b.Loop() {
				if _, err := a.Stats(context.Background(), f.ep); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
