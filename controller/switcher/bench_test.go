package switcher

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/controller/figures"
	"github.com/quarryfleet/quarry/pkg/market"
	"github.com/quarryfleet/quarry/pkg/profit"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// benchFleet builds a switcher with nAlg algorithms × coinsPerAlg coins ×
// 2 pools of options and nRigs rigs, each measured on every algorithm from
// reports, in four hardware groups at two sites; half the rigs mine
// something already.
func benchFleet(b *testing.B, nRigs, nAlg, coinsPerAlg int) (*Switcher, []*quarryv1.Rig, market.Snapshot) {
	b.Helper()
	rnd := rand.New(rand.NewPCG(1, 2))
	cfg := DefaultConfig()
	cfg.Sites = map[string]SiteConfig{"hydro": {Default: 0.05}, "city": {Default: 0.2, Rules: []profit.TariffRule{{From: 22, To: 6, Price: 0.08}}}}
	snap := market.Snapshot{Coins: map[string]market.Coin{}, Fetched: time.Now(), Origin: market.OriginFetch}
	for a := range nAlg {
		algo := fmt.Sprintf("algo%d", a)
		for c := range coinsPerAlg {
			tag := fmt.Sprintf("c%d_%d", a, c)
			snap.Coins[tag] = market.Coin{Tag: tag, Algorithm: algo, BlockTime: 10 + rnd.Float64()*100, BlockReward: 1 + rnd.Float64()*10,
				NetHash: math.Pow(10, 12+rnd.Float64()*3), PriceUSD: 1 + rnd.Float64()*100, UpdatedAt: time.Now()}
			for p := range 2 {
				fs := sheet(tag, algo)
				cfg.Options = append(cfg.Options, OptionConfig{Pool: fmt.Sprintf("pool%d", p), PoolFee: float64(p) * 0.01, FlightSheet: fs})
			}
		}
	}
	db, err := store.Open(filepath.Join(b.TempDir(), "quarry.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	figs, err := figures.Open(store.NewDB(db), figures.Options{Every: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { figs.Close() })
	s, err := New(cfg, Options{Figures: figs})
	if err != nil {
		b.Fatal(err)
	}
	rigs := make([]*quarryv1.Rig, nRigs)
	for r := range rigs {
		id := fmt.Sprintf("rig-%05d", r)
		gpu := fmt.Sprintf("GPU model %d", r%4)
		rig := &quarryv1.Rig{Id: id, Name: id, Online: true, Labels: map[string]string{"site": []string{"hydro", "city"}[r%2]},
			Gpus: []*quarryv1.GPUStats{{Name: gpu}, {Name: gpu}}}
		for a := range nAlg {
			figs.ObserveReport(id, &quarryv1.Report{
				Gpus:   []*quarryv1.GPUStats{{Name: gpu, PowerW: proto.Float64(100 + rnd.Float64()*200)}},
				Miners: []*quarryv1.MinerStats{{Algorithm: fmt.Sprintf("algo%d", a), Hashrate: math.Pow(10, 6+rnd.Float64()*2), State: "running"}},
			})
		}
		if r%2 == 0 {
			rig.Miners = []*quarryv1.MinerStats{{Coin: fmt.Sprintf("c%d_0", r%nAlg), Algorithm: fmt.Sprintf("algo%d", r%nAlg), State: "running"}}
		}
		rigs[r] = rig
	}
	return s, rigs, snap
}

// BenchmarkTick10k is one full switcher tick for 10,000 rigs without I/O:
// gathering each rig's figures, ranking every option on all cores, and the
// policy decision per rig.
func BenchmarkTick10k(b *testing.B) {
	s, rigs, snap := benchFleet(b, 10000, 8, 5)
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		a := s.cur.Load()
		briefs := make([]rigBrief, 0, len(rigs))
		for _, r := range rigs {
			briefs = append(briefs, a.brief(r))
		}
		t, err := s.plan(ctx, a, snap, s.collect(a, briefs, now), now)
		if err != nil {
			b.Fatal(err)
		}
		if len(t.Decisions) != len(rigs) {
			b.Fatal("missing decisions")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/rig")
}
