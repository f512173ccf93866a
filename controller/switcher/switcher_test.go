package switcher

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/controller/figures"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/market"
	"github.com/quarryfleet/quarry/pkg/profit"
	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// coinDoc is one coin of a quarry-market/v1 file.
type coinDoc struct {
	Tag         string  `json:"tag"`
	Algorithm   string  `json:"algorithm"`
	BlockTime   float64 `json:"block_time"`
	BlockReward float64 `json:"block_reward"`
	Difficulty  float64 `json:"difficulty"`
	NetHash     float64 `json:"nethash"`
	PriceUSD    float64 `json:"price_usd"`
}

// writeMarket writes a market file in which one H/s of etchash earns
// etcPerHash USD/day and one H/s of kawpow rvnPerHash (before fees).
func writeMarket(t *testing.T, path string, etcUSD, rvnUSD float64) {
	t.Helper()
	writeMarketAt(t, path, etcUSD, rvnUSD, time.Now().UTC())
}

// writeMarketAt is writeMarket with the file's fetch time given.
func writeMarketAt(t *testing.T, path string, etcUSD, rvnUSD float64, now time.Time) {
	t.Helper()
	// etc: 86400/10 blocks × 2 coins / 1e14 H/s = 1.728e-10 coins per H/s-day.
	// rvn: 86400/60 × 2500 / 1e13 = 3.6e-7 coins per H/s-day.
	doc := map[string]any{
		"format": market.FileFormat, "fetched": now,
		"coins": []coinDoc{
			{Tag: "etc", Algorithm: "etchash", BlockTime: 10, BlockReward: 2, Difficulty: 1e15, NetHash: 1e14, PriceUSD: etcUSD},
			{Tag: "rvn", Algorithm: "kawpow", BlockTime: 60, BlockReward: 2500, Difficulty: 6e14, NetHash: 1e13, PriceUSD: rvnUSD},
		},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func sheet(coin, algo string) *flightsheet.FlightSheet {
	return &flightsheet.FlightSheet{
		Coin: coin, Algorithm: algo,
		Miner: flightsheet.Miner{Name: "lolminer", Path: "/opt/lolminer", SHA256: strings.Repeat("0", 64)},
		Pools: []flightsheet.Pool{{URL: "stratum+tcp://" + coin + ".pool.example:4444", User: "wallet." + coin}},
	}
}

func testConfig(marketPath string) Config {
	c := DefaultConfig()
	c.Tick = time.Hour
	c.Market.Sources = []SourceConfig{{Kind: "file", Path: marketPath}}
	c.Market.ConfirmFetches = 1
	c.Policy.MinDwell = 0
	c.Sites = map[string]SiteConfig{"default": {Default: 0.10}}
	c.Options = []OptionConfig{
		{Pool: "pool", PoolFee: 0.01, FlightSheet: sheet("etc", "etchash")},
		{Pool: "pool", PoolFee: 0.01, FlightSheet: sheet("rvn", "kawpow")},
	}
	return c
}

type env struct {
	t     *testing.T
	db    *store.DB
	fleet *fleet.Fleet
	figs  *figures.Learner
	rigs  []string
	mkt   string
}

func newEnv(t *testing.T, rigs int) *env {
	t.Helper()
	dir := t.TempDir()
	db := testsupport.OpenStore(t, filepath.Join(dir, "quarry.db"), fleet.Buckets...)
	f, err := fleet.Open(db, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	figs, err := figures.Open(db, figures.Options{Alpha: DefaultConfig().Smoothing, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, fleet: f, figs: figs, mkt: filepath.Join(dir, "market.json")}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		f.Close()
		if err := figs.Close(); err != nil {
			t.Error(err)
		}
		db.Close()
	})
	for i := range rigs {
		id := fmt.Sprintf("rig-%02d", i)
		if err := f.RegisterRig(id, id, "host"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Attach(ctx, id); err != nil {
			t.Fatal(err)
		}
		e.rigs = append(e.rigs, id)
	}
	return e
}

func (e *env) switcher(cfg Config) *Switcher {
	e.t.Helper()
	s, err := New(cfg, Options{Fleet: e.fleet, DB: e.db, Figures: e.figs})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) pending(rig string) []*quarryv1.Command {
	e.t.Helper()
	cs, err := e.fleet.PendingCommands(rig)
	if err != nil {
		e.t.Fatal(err)
	}
	return cs
}

// profiles gives every rig the same figures: 100 MH/s etchash at 200 W
// and 30 MH/s kawpow at 250 W.
func profiles(e *env, s *Switcher) {
	for _, id := range e.rigs {
		if err := s.SetProfile(id, AlgoProfiles{"etchash": {Hashrate: 100e6, Power: 200}, "kawpow": {Hashrate: 30e6, Power: 250}}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// Commands go out in batches of BatchSize with BatchSpacing between them.
func TestTickQueuesInBatches(t *testing.T) {
	e := newEnv(t, 7)
	writeMarket(t, e.mkt, 300, 0.02)
	cfg := testConfig(e.mkt)
	cfg.BatchSize, cfg.BatchSpacing = 3, 150*time.Millisecond
	s := e.switcher(cfg)
	profiles(e, s)
	if _, err := s.Market().Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	tick, err := s.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tick.Paused {
		t.Fatalf("paused: %s", tick.PauseReason)
	}
	var created []int64
	for _, id := range e.rigs {
		cs := e.pending(id)
		if len(cs) != 1 || cs[0].Kind != quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET {
			t.Fatalf("%s: pending %v, want one APPLY_FLIGHT_SHEET", id, cs)
		}
		fs, err := flightsheet.Parse(cs[0].Payload)
		if err != nil {
			t.Fatal(err)
		}
		if fs.Coin != "etc" || fs.Pools[0].User != "wallet.etc" {
			t.Fatalf("%s: flight sheet %+v, want etc with its wallet", id, fs)
		}
		created = append(created, cs[0].CreatedUnixNano)
	}
	slices.Sort(created)
	var gaps []time.Duration
	for i := 1; i < len(created); i++ {
		gaps = append(gaps, time.Duration(created[i]-created[i-1]))
	}
	// Batches of 3, 3, 1: the gaps after the 3rd and 6th command are at
	// least the spacing. (Gaps inside a batch are not bounded here: a
	// loaded machine may be slow between two queue calls.)
	for i, g := range gaps {
		if long := i == 2 || i == 5; long && g < 140*time.Millisecond {
			t.Errorf("gap %d = %s, want the batch spacing", i, g)
		}
	}
	recs, err := s.Switches("", 0)
	if err != nil || len(recs) != 7 || recs[0].Action != "resume" || recs[0].CommandID == "" {
		t.Fatalf("switch history %+v, %v", recs, err)
	}

	// Unchanged market: nothing more is sent.
	if _, err := s.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range e.rigs {
		if n := len(e.pending(id)); n != 1 {
			t.Fatalf("%s: %d pending after a quiet tick", id, n)
		}
	}
}

// While the market is stale (here: the embedded snapshot), the switcher
// records the reason and sends nothing; fresh data resumes switching.
func TestTickPausesOnStaleMarket(t *testing.T) {
	e := newEnv(t, 2)
	writeMarket(t, e.mkt, 300, 0.02)
	s := e.switcher(testConfig(e.mkt))
	profiles(e, s)
	tick, err := s.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !tick.Paused || !strings.Contains(tick.PauseReason, "switching paused") {
		t.Fatalf("paused %v reason %q, want a stale-market pause", tick.Paused, tick.PauseReason)
	}
	for i, d := range tick.Decisions {
		if d.Action != ActionPaused {
			t.Errorf("rig %d action %s, want paused", i, d.Action)
		}
	}
	for _, id := range e.rigs {
		if n := len(e.pending(id)); n != 0 {
			t.Fatalf("%s: %d commands sent while paused", id, n)
		}
	}
	resp, err := (&ProfitServer{S: s}).ListProfit(context.Background(), &quarryv1.ListProfitRequest{})
	if err != nil || !resp.Paused || resp.PauseReason == "" {
		t.Fatalf("ListProfit while paused: %v %v", resp, err)
	}

	if _, err := s.Market().Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tick, err = s.Tick(context.Background()); err != nil || tick.Paused {
		t.Fatalf("after refresh: paused %v err %v", tick.Paused, err)
	}
	for _, id := range e.rigs {
		if n := len(e.pending(id)); n != 1 {
			t.Fatalf("%s: %d commands after the market recovered, want 1", id, n)
		}
	}
}

// A rig without GPU power readings is measured by its CPU package power
// (RAPL or configured); a miner without a reading adds nothing.
func TestCPUPowerMeasured(t *testing.T) {
	e := newEnv(t, 1)
	writeMarket(t, e.mkt, 300, 0.02)
	s := e.switcher(testConfig(e.mkt))
	for i, st := range []string{quarryv1.MinerRunning, quarryv1.MinerAPIUnreachable} {
		rep := &quarryv1.Report{TimeUnixNano: int64(i), Host: &quarryv1.HostStats{CpuPowerW: proto.Float64(65), CpuPowerSource: "rapl"},
			Miners: []*quarryv1.MinerStats{{Algorithm: "etchash", Coin: "ETC", Hashrate: 1e6 * float64(i+1), State: st}}}
		e.figs.ObserveReport(e.rigs[0], rep)
	}
	if _, err := s.Market().Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := (&ProfitServer{S: s}).ExplainProfit(context.Background(), &quarryv1.ExplainProfitRequest{Rig: e.rigs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Perf) != 1 || got.Perf[0].PowerW != 65 || got.Perf[0].Hashrate != 1e6 || got.Perf[0].Samples != 1 {
		t.Fatalf("measured perf %+v, want 1 MH/s at 65 W from one reading", got.Perf)
	}
}

// An option's miner fee defaults to the miner's known dev fee (lolMiner
// 0.7 % on etchash, 1 % on kawpow); miner_fee overrides it, zero included.
func TestMinerFeeDefaults(t *testing.T) {
	e := newEnv(t, 1)
	writeMarket(t, e.mkt, 300, 0.02)
	cfg := testConfig(e.mkt)
	zero := 0.0
	cfg.Options[1].MinerFee = &zero
	s := e.switcher(cfg)
	profiles(e, s)
	if _, err := s.Market().Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := (&ProfitServer{S: s}).ExplainProfit(context.Background(), &quarryv1.ExplainProfitRequest{Rig: e.rigs[0]})
	if err != nil {
		t.Fatal(err)
	}
	fees := map[string]float64{}
	for _, o := range got.Options {
		fees[o.Algorithm] = o.MinerFee
	}
	if fees["etchash"] != 0.007 || fees["kawpow"] != 0 {
		t.Fatalf("miner fees %v, want etchash 0.007 (lolMiner's) and kawpow 0 (set)", fees)
	}
}

// In offline mode the switcher acts on a fixed snapshot however old it
// is, says so in ListProfit and MarketStatus, and fetches nothing; the
// same snapshot without offline mode pauses switching.
func TestOfflineMarketActs(t *testing.T) {
	tests := []struct {
		name     string
		snapshot bool // a file snapshot; otherwise the embedded one
		mode     string
	}{
		{"embedded", false, "offline: embedded snapshot"},
		{"file", true, "offline: file "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, 2)
			cfg := testConfig(e.mkt)
			cfg.Market.Sources = nil
			cfg.Market.Offline = true
			if tt.snapshot {
				writeMarketAt(t, e.mkt, 300, 0.02, time.Now().Add(-90*24*time.Hour))
				cfg.Market.Snapshot = e.mkt
			} else {
				// Free power, so that the embedded prices pay.
				cfg.Sites = map[string]SiteConfig{"default": {Default: 0}}
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			s := e.switcher(cfg)
			profiles(e, s)
			tick, err := s.Tick(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tick.Paused {
				t.Fatalf("offline switcher paused: %s", tick.PauseReason)
			}
			for i, id := range e.rigs {
				if n := len(e.pending(id)); n != 1 {
					t.Fatalf("%s: %d commands queued, want 1 (decision %s: %s)", id, n, tick.Decisions[i].Action, tick.Decisions[i].Reason)
				}
			}
			svc := &ProfitServer{S: s}
			lp, err := svc.ListProfit(context.Background(), &quarryv1.ListProfitRequest{})
			if err != nil || !lp.MarketOffline || !strings.HasPrefix(lp.MarketMode, tt.mode) || lp.Paused {
				t.Fatalf("ListProfit = %v, %v; want offline mode %q", lp, err, tt.mode)
			}
			ms, err := svc.MarketStatus(context.Background(), &quarryv1.MarketStatusRequest{})
			if err != nil || !ms.Ok || !ms.Offline || !strings.Contains(ms.Reason, "offline mode") || ms.LastError != "" {
				t.Fatalf("MarketStatus = %v, %v", ms, err)
			}
			if _, err := s.Market().Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "offline") {
				t.Fatalf("Refresh in offline mode = %v, want a refusal", err)
			}

			// The same embedded snapshot without offline mode pauses.
			if tt.snapshot {
				return
			}
			e2 := newEnv(t, 1)
			cfg.Market.Offline = false
			s2 := e2.switcher(cfg)
			profiles(e2, s2)
			if tick, err := s2.Tick(context.Background()); err != nil || !tick.Paused {
				t.Fatalf("embedded snapshot without offline mode: paused %v err %v, want paused", tick.Paused, err)
			}
		})
	}
}

// A switch needs the gain to clear the thresholds; losses curtail; dry run
// decides without sending.
func TestPolicyActions(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	rig := e.rigs[0]
	writeMarket(t, e.mkt, 30, 0.02)
	s := e.switcher(testConfig(e.mkt))
	profiles(e, s)
	step := func(etc, rvn float64) Decided {
		t.Helper()
		writeMarket(t, e.mkt, etc, rvn)
		if _, err := s.Market().Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		tick, err := s.Tick(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tick.Decisions[0]
	}
	// etc: 100e6 × 1.728e-10 × 30 × 0.99 = $0.513/day revenue, power $0.48.
	// rvn: 30e6 × 3.6e-7 × 0.02 × 0.99 = $0.214/day revenue, power $0.60.
	if d := step(300, 0.02); d.Action != "resume" || d.Target.Coin != "etc" {
		t.Fatalf("first: %s → %s (%s)", d.Action, d.Target.Name, d.Reason)
	}
	// rvn now far ahead: switch.
	if d := step(300, 1); d.Action != "switch" || d.Target.Coin != "rvn" {
		t.Fatalf("second: %s → %s (%s)", d.Action, d.Target.Name, d.Reason)
	}
	// etc a hair better than rvn: below the 5 % threshold, stay.
	// rvn = 30e6×3.6e-7×0.99 = 10.69 $/day - 0.6; etc at 630 = 10.78 - 0.48.
	if d := step(630, 1); d.Action != "stay" || !strings.Contains(d.Reason, "<") {
		t.Fatalf("third: %s (%s)", d.Action, d.Reason)
	}
	// Everything loses money: curtail with STOP_MINER.
	if d := step(1, 0.001); d.Action != "curtail" {
		t.Fatalf("fourth: %s (%s)", d.Action, d.Reason)
	}
	cs := e.pending(rig)
	kinds := make([]quarryv1.CommandKind, len(cs))
	for i, c := range cs {
		kinds[i] = c.Kind
	}
	want := []quarryv1.CommandKind{quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, quarryv1.CommandKind_COMMAND_KIND_STOP_MINER}
	if !slices.Equal(kinds, want) {
		t.Fatalf("commands %v, want %v", kinds, want)
	}

	// Dry run: the decision says resume but nothing is queued.
	cfg := testConfig(e.mkt)
	cfg.DryRun = true
	dry := e.switcher(cfg)
	s = dry
	if d := step(300, 0.02); d.Action != "stay" {
		// The state says off since the curtail; resuming etc pays.
		if d.Action != "resume" || d.CommandID != "" {
			t.Fatalf("dry run: %s cmd %q", d.Action, d.CommandID)
		}
	}
	if n := len(e.pending(rig)); n != 3 {
		t.Fatalf("dry run queued a command: %d pending", n)
	}
	recs, _ := dry.Switches(rig, 1)
	if len(recs) != 1 || !recs[0].DryRun {
		t.Fatalf("dry-run record %+v", recs)
	}
}

// Figures learned from reports rank the rig; a rig with the same GPUs and
// no figures of its own borrows them and is marked so.
func TestMeasuredAndBorrowed(t *testing.T) {
	e := newEnv(t, 2)
	writeMarket(t, e.mkt, 300, 0.02)
	s := e.switcher(testConfig(e.mkt))
	gpus := []*quarryv1.GPUStats{{Name: "RTX 3070", PowerW: proto.Float64(110)}, {Name: "RTX 3070", PowerW: proto.Float64(115)}}
	for _, id := range e.rigs {
		if err := e.fleet.UpdateRig(id, func(r *quarryv1.Rig) { r.Gpus = gpus }); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range []float64{100e6, 120e6} {
		rep := &quarryv1.Report{TimeUnixNano: int64(i), Gpus: gpus,
			Miners: []*quarryv1.MinerStats{{Algorithm: "EtcHash", Coin: "ETC", Hashrate: h, State: "running"}}}
		e.figs.ObserveReport(e.rigs[0], rep)
		if err := e.fleet.UpdateRig(e.rigs[0], func(r *quarryv1.Rig) { r.Miners = rep.Miners }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Market().Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	tick, err := s.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	svc := &ProfitServer{S: s}
	own, err := svc.ExplainProfit(context.Background(), &quarryv1.ExplainProfitRequest{Rig: e.rigs[0]})
	if err != nil {
		t.Fatal(err)
	}
	// 100 then 120 with smoothing 0.3 = 106 MH/s; power 225 W.
	if len(own.Perf) != 1 || own.Perf[0].Source != figures.SourceLive || own.Perf[0].Hashrate != 106e6 || own.Perf[0].PowerW != 225 || own.Perf[0].Samples != 2 {
		t.Fatalf("learned perf %+v", own.Perf)
	}
	if own.Row.Current != "etc@pool/lolminer" || own.Row.Action != "stay" {
		t.Fatalf("a rig already mining the best option: current %s action %s (%s)", own.Row.Current, own.Row.Action, own.Row.Reason)
	}
	other, err := svc.ExplainProfit(context.Background(), &quarryv1.ExplainProfitRequest{Rig: e.rigs[1]})
	if err != nil {
		t.Fatal(err)
	}
	if len(other.Perf) != 1 || other.Perf[0].Source != "borrowed" || !strings.Contains(other.Perf[0].BorrowedFrom, e.rigs[0]) || !other.Row.Borrowed {
		t.Fatalf("borrowed perf %+v row %+v", other.Perf, other.Row)
	}
	if other.Fingerprint != "RTX 3070,RTX 3070" || other.ElectricityUsdKwh != 0.10 || other.Policy.RelativeThreshold != 0.05 {
		t.Fatalf("explain inputs: fp %q price %v policy %+v", other.Fingerprint, other.ElectricityUsdKwh, other.Policy)
	}
	if len(other.Coins) != 2 || len(other.Options) != 2 || other.Options[0].Coin != "etc" || other.Options[1].NoHashrate != true {
		t.Fatalf("explain coins %v options %v", other.Coins, other.Options)
	}
	if tick.Decisions[1].Action != "resume" {
		t.Fatalf("borrowing rig: %s (%s)", tick.Decisions[1].Action, tick.Decisions[1].Reason)
	}
	// The decision and its inputs survive in the database.
	b, ok := s.StoredDecision(e.rigs[1])
	if !ok || !strings.Contains(string(b), `"source":"borrowed"`) || !strings.Contains(string(b), `"action":"resume"`) {
		t.Fatalf("stored decision %s", b)
	}
}

// A tick stores what changed, not the whole fleet again: a decision whose
// substance is the same as the stored one is left alone until it is
// decisionRefresh old, and one whose outcome changes is stored at once.
func TestTickStoresOnlyChangedDecisions(t *testing.T) {
	e := newEnv(t, 2)
	clock := testsupport.NewClock(time.Now())
	writeMarketAt(t, e.mkt, 300, 0.02, clock.Now())
	s, err := New(testConfig(e.mkt), Options{Fleet: e.fleet, DB: e.db, Figures: e.figs, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	profiles(e, s)
	tick := func() *Tick {
		t.Helper()
		if _, err := s.Market().Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		tk, err := s.Tick(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	stored := func() string {
		t.Helper()
		b, ok := s.StoredDecision(e.rigs[0])
		if !ok {
			t.Fatal("no stored decision")
		}
		return string(b)
	}
	first := tick()
	if first.Decisions[0].Action != "resume" {
		t.Fatalf("first tick: %s (%s)", first.Decisions[0].Action, first.Decisions[0].Reason)
	}
	resumed := stored()
	// The rig now mines etc; the next decision is to stay.
	clock.Advance(30 * time.Second)
	if d := tick().Decisions[0]; d.Action != "stay" {
		t.Fatalf("second tick: %s (%s)", d.Action, d.Reason)
	}
	stay := stored()
	if stay == resumed || !strings.Contains(stay, `"outcome":"stay"`) {
		t.Fatalf("a changed outcome was not stored at once: %s", stay)
	}
	for range 3 {
		clock.Advance(30 * time.Second)
		writeMarketAt(t, e.mkt, 300, 0.02, clock.Now())
		if d := tick().Decisions[0]; d.Action != "stay" {
			t.Fatalf("steady tick: %s (%s)", d.Action, d.Reason)
		}
	}
	if got := stored(); got != stay {
		t.Fatalf("an unchanged decision was rewritten:\n%s\nwas\n%s", got, stay)
	}
	clock.Advance(decisionRefresh)
	writeMarketAt(t, e.mkt, 300, 0.02, clock.Now())
	tick()
	if got := stored(); got == stay {
		t.Fatalf("a decision older than %v was not refreshed", decisionRefresh)
	}
}

// A rig with no figures anywhere is reported, never stopped.
func TestNoDataNeverActs(t *testing.T) {
	e := newEnv(t, 1)
	writeMarket(t, e.mkt, 300, 0.02)
	s := e.switcher(testConfig(e.mkt))
	if err := e.fleet.UpdateRig(e.rigs[0], func(r *quarryv1.Rig) {
		r.Miners = []*quarryv1.MinerStats{{Coin: "etc", Algorithm: "etchash", State: "running"}}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Market().Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	tick, err := s.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := tick.Decisions[0]; d.Action != ActionNoData || d.Input.Current.Coin != "etc" {
		t.Fatalf("action %s current %s", d.Action, d.Input.Current.Name)
	}
	if n := len(e.pending(e.rigs[0])); n != 0 {
		t.Fatalf("%d commands for a rig without figures", n)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := testConfig("/x.json")
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"source kind", func(c *Config) { c.Market.Sources = []SourceConfig{{Kind: "ftp"}} }, "market.sources"},
		{"source url", func(c *Config) { c.Market.Sources = []SourceConfig{{Kind: "whattomine"}} }, "url is required"},
		{"coingecko ids", func(c *Config) { c.Market.Sources = []SourceConfig{{Kind: "coingecko", URL: "http://x"}} }, "coingecko_ids"},
		{"batch", func(c *Config) { c.BatchSize = 0 }, "batch_size"},
		{"policy", func(c *Config) { c.Policy.RelativeThreshold = -1 }, "relative threshold"},
		{"site", func(c *Config) { c.Rigs = map[string]RigConfig{"r": {Site: "moon"}} }, "unknown site"},
		{"tariff", func(c *Config) { c.Sites["default"] = SiteConfig{Rules: []profit.TariffRule{{From: 5, To: 5}}} }, "sites"},
		{"timezone", func(c *Config) { c.Sites["default"] = SiteConfig{Timezone: "Mars/Olympus"} }, "timezone"},
		{"option sheet", func(c *Config) { fs := *c.Options[0].FlightSheet; fs.Pools = nil; c.Options[0].FlightSheet = &fs }, "needs a miner and at least one pool"},
		{"option dup", func(c *Config) { c.Options[1] = c.Options[0] }, "listed twice"},
		{"option fee", func(c *Config) { c.Options[0].PoolFee = 1.5 }, "fees"},
		{"profile", func(c *Config) { c.Profiles = map[string]AlgoProfiles{"gpu": {"ethash": {Hashrate: -1}}} }, "profiles.gpu"},
		{"offline with sources", func(c *Config) { c.Market.Offline = true }, "remove market.sources"},
		{"snapshot without offline", func(c *Config) { c.Market.Snapshot = "/x.json" }, "only used with market.offline"},
		{"offline missing file", func(c *Config) {
			c.Market.Sources, c.Market.Offline, c.Market.Snapshot = nil, true, "/nonexistent.json"
		}, "market.snapshot"},
		{"offline embedded", func(c *Config) { c.Market.Sources, c.Market.Offline = nil, true }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			c.Sites = map[string]SiteConfig{"default": {Default: 0.1}}
			c.Options = slices.Clone(ok.Options)
			tt.edit(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// A pin from the config moves a rig to the pinned coin even when another
// pays more; an exclusion keeps it off a coin.
func TestRulesFromConfig(t *testing.T) {
	e := newEnv(t, 2)
	writeMarket(t, e.mkt, 300, 0.02)
	cfg := testConfig(e.mkt)
	cfg.Rigs = map[string]RigConfig{
		e.rigs[0]: {Rules: profit.Rules{Pin: "rvn"}},
		e.rigs[1]: {Rules: profit.Rules{ExcludeCoins: []string{"etc"}}},
	}
	s := e.switcher(cfg)
	profiles(e, s)
	if _, err := s.Market().Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	tick, err := s.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// rvn loses money here ($0.21 revenue, $0.60 power): the pinned rig
	// mines it anyway; the rig that may not mine etc stays off.
	if d := tick.Decisions[0]; d.Action != "resume" || d.Target.Coin != "rvn" || !strings.Contains(d.Reason, "pinned to rvn") {
		t.Fatalf("pinned rig: %s → %s (%s)", d.Action, d.Target.Name, d.Reason)
	}
	if d := tick.Decisions[1]; d.Action != "stay" || d.Target.Option != profit.Off {
		t.Fatalf("excluded rig: %s → %s (%s)", d.Action, d.Target.Name, d.Reason)
	}
	if len(e.pending(e.rigs[1])) != 0 {
		t.Fatal("a command for the rig with no profitable allowed option")
	}
}

// A benchmark's figure ranks the rig until live reports refine it; both
// reach the switcher through the one learner, under canonical names.
func TestBenchmarkThenLiveFigures(t *testing.T) {
	e := newEnv(t, 1)
	writeMarket(t, e.mkt, 300, 0.02)
	s := e.switcher(testConfig(e.mkt))
	if _, err := s.Market().Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	perf := func() *quarryv1.PerfInput {
		t.Helper()
		if _, err := s.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		got, err := (&ProfitServer{S: s}).ExplainProfit(context.Background(), &quarryv1.ExplainProfitRequest{Rig: e.rigs[0]})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Perf) != 1 {
			t.Fatalf("perf %+v, want one algorithm", got.Perf)
		}
		return got.Perf[0]
	}
	if _, err := e.figs.PutBenchmark(e.rigs[0], []flightsheet.BenchmarkResult{{Algorithm: "EtcHash", HashrateHs: 90e6, PowerW: proto.Float64(180), Samples: 30}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if p := perf(); p.Algorithm != "etchash" || p.Source != figures.SourceBenchmark || p.Hashrate != 90e6 || p.PowerW != 180 || p.Samples != 30 {
		t.Fatalf("perf %+v, want the benchmark's 90 MH/s at 180 W", p)
	}
	e.figs.ObserveReport(e.rigs[0], &quarryv1.Report{Gpus: []*quarryv1.GPUStats{{PowerW: proto.Float64(200)}},
		Miners: []*quarryv1.MinerStats{{Algorithm: "ETCHASH", Hashrate: 50e6, State: "running"}}})
	// 90 then 50 with smoothing 0.3 = 78 MH/s; 180 then 200 W = 186 W.
	if p := perf(); p.Source != figures.SourceLive || p.Hashrate != 78e6 || p.PowerW != 186 || p.Samples != 31 {
		t.Fatalf("perf %+v, want the refined 78 MH/s at 186 W", p)
	}
}

// Billing's hold keeps a past-due customer's rig where it is, and its
// stop-mining stage stops the miner once.
func TestBillingHold(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	rig := e.rigs[0]
	writeMarket(t, e.mkt, 300, 0.02)
	hold, stop := false, false
	s, err := New(testConfig(e.mkt), Options{Fleet: e.fleet, DB: e.db, Hold: func(string, time.Time) (bool, bool, string) {
		return hold, stop, "customer acme is past due"
	}})
	if err != nil {
		t.Fatal(err)
	}
	profiles(e, s)
	step := func(etc, rvn float64) Decided {
		t.Helper()
		writeMarket(t, e.mkt, etc, rvn)
		if _, err := s.Market().Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		tick, err := s.Tick(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tick.Decisions[0]
	}
	if d := step(300, 0.02); d.Action != "resume" {
		t.Fatalf("first: %s (%s)", d.Action, d.Reason)
	}
	hold = true
	if d := step(300, 1); d.Action != ActionHeld || !strings.Contains(d.Reason, "past due") {
		t.Fatalf("held: %s (%s)", d.Action, d.Reason)
	}
	if n := len(e.pending(rig)); n != 1 {
		t.Fatalf("a held rig was sent a command: %d pending", n)
	}
	stop = true
	if d := step(300, 1); d.Action != "curtail" {
		t.Fatalf("stop mining: %s (%s)", d.Action, d.Reason)
	}
	if d := step(300, 1); d.Action != ActionHeld {
		t.Fatalf("after stopping: %s (%s)", d.Action, d.Reason)
	}
	cs := e.pending(rig)
	if len(cs) != 2 || cs[1].Kind != quarryv1.CommandKind_COMMAND_KIND_STOP_MINER {
		t.Fatalf("commands %v", cs)
	}
}
