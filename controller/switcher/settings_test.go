package switcher

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/controller/miners"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/profit"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// sheetStore opens the real flight sheet store on the env's database.
func (e *env) sheetStore() *miners.Store {
	e.t.Helper()
	ms, err := miners.Open(e.db, e.fleet, miners.Options{Figures: e.figs, Every: time.Hour})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = ms.Close() })
	return ms
}

func (e *env) storedSwitcher(cfg Config, ms *miners.Store, now func() time.Time) *Switcher {
	e.t.Helper()
	s, err := New(cfg, Options{Fleet: e.fleet, DB: e.db, Figures: e.figs, Sheets: ms, Now: now})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func operatorCtx(name string) context.Context {
	return auth.WithCaller(context.Background(), auth.Caller{Name: name, Role: auth.RoleOperator})
}

// The file's settings are stored as version 1 on first start, inline
// flight sheets going to the flight sheet store; on later starts the
// file's editable part is ignored and the stored settings are in force.
func TestSettingsSeededOnceFromConfig(t *testing.T) {
	e := newEnv(t, 1)
	writeMarket(t, e.mkt, 300, 0.02)
	ms := e.sheetStore()
	s := e.storedSwitcher(testConfig(e.mkt), ms, nil)
	sv, err := s.SettingsAt(1)
	if err != nil {
		t.Fatal(err)
	}
	if !sv.Seed || sv.Author != SeedAuthor || len(sv.Settings.Options) != 2 {
		t.Fatalf("version 1 = %+v, want the seed with two options", sv)
	}
	for _, o := range sv.Settings.Options {
		if o.FlightSheet != nil || o.Sheet == "" {
			t.Fatalf("seeded option %+v: want a stored sheet's name, not an inline sheet", o)
		}
		rec, err := ms.Sheet(o.Sheet)
		if err != nil {
			t.Fatalf("seeded option's sheet %q: %v", o.Sheet, err)
		}
		if rec.UpdatedBy != SeedAuthor {
			t.Errorf("sheet %q stored by %q", o.Sheet, rec.UpdatedBy)
		}
	}
	if o := s.Origin(); !strings.Contains(o, "seeded from config file at") || !strings.Contains(o, "0 edits since") {
		t.Fatalf("origin %q", o)
	}

	// A restart with a file that lists other settings keeps the stored
	// ones.
	cfg := testConfig(e.mkt)
	cfg.Options = cfg.Options[:1]
	cfg.Sites = map[string]SiteConfig{"default": {Default: 9}}
	s2 := e.storedSwitcher(cfg, ms, nil)
	if n := s2.Engine().Len(); n != 2 {
		t.Fatalf("after restart %d options in force, want the stored 2", n)
	}
	if got := s2.Config().Sites["default"].Default; got != 0.10 {
		t.Fatalf("after restart default site price %v, want the stored 0.10", got)
	}
	if vs, err := s2.SettingsVersions(0, 10); err != nil || len(vs) != 1 {
		t.Fatalf("versions %+v, %v: a restart must not store another", vs, err)
	}
}

// A tariff stored through the API changes the next decision of the
// running switcher, without a restart: at 23:00 the rig mines rvn, which
// earns more but draws more power; a night rate of $3/kWh makes etc the
// better choice and the switcher moves the rig.
func TestTariffChangeTakesEffectAtNextTick(t *testing.T) {
	e := newEnv(t, 1)
	clock := testsupport.NewClock(time.Date(2026, 12, 5, 23, 0, 0, 0, time.UTC))
	// etc: 100 MH/s earns 1.728e-2 coins, $17.28 at $1000; rvn: 30 MH/s
	// earns 10.8 coins, $19.44 at $1.80. Power 200 W against 250 W.
	writeMarketAt(t, e.mkt, 1000, 1.8, clock.Now())
	cfg := testConfig(e.mkt)
	cfg.Sites = map[string]SiteConfig{"default": {Default: 0}}
	ms := e.sheetStore()
	s := e.storedSwitcher(cfg, ms, clock.Now)
	profiles(e, s)
	if _, err := s.Market().Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	rig := e.rigs[0]
	lastCoin := func() (string, int) {
		cs := e.pending(rig)
		if len(cs) == 0 {
			return "", 0
		}
		fs, err := flightsheet.Parse(cs[len(cs)-1].Payload)
		if err != nil {
			t.Fatal(err)
		}
		return fs.Coin, len(cs)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = s.Run(ctx)
	}()
	defer func() { cancel(); wg.Wait() }()
	testsupport.Poll(t, "the rig resumes on rvn", 10*time.Second, func() (bool, string) {
		c, n := lastCoin()
		return c == "rvn" && n == 1, c
	})

	srv := &ProfitServer{S: s}
	got, err := srv.GetProfitSettings(ctx, &quarryv1.GetProfitSettingsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	st := got.Settings
	st.Sites[0].Rules = []*quarryv1.TariffRule{{FromHour: 22, ToHour: 6, PriceUsdKwh: 3}}
	up, err := srv.UpdateProfitSettings(operatorCtx("alice"), &quarryv1.UpdateProfitSettingsRequest{BaseVersion: got.Version.Version, Settings: st})
	if err != nil {
		t.Fatal(err)
	}
	if up.Version.Version != 2 || up.Version.Author != "alice" || !strings.Contains(up.Version.Summary, "site changed default") {
		t.Fatalf("new version %+v", up.Version)
	}
	testsupport.Poll(t, "the switcher moves the rig to etc", 10*time.Second, func() (bool, string) {
		c, n := lastCoin()
		last := s.Last()
		return c == "etc" && n == 2 && last.Settings == 2, fmt.Sprintf("last command %s, settings version %d", c, last.Settings)
	})
	last := s.Last()
	if d := last.Decisions[0]; d.Action != string(profit.Switch) || d.Target.Coin != "etc" {
		t.Fatalf("decision %s → %s, want a switch to etc", d.Action, d.Target.Name)
	}
	if p := s.explain(last, 0).ElectricityUsdKwh; p != 3 {
		t.Fatalf("electricity at 23:00 = %v, want the new night rate 3", p)
	}
}

// Updates are checked against the version they were made from, validated
// with the file's rules and the stored flight sheets, and a refused one
// stores nothing; every version is listed and an earlier one restored.
func TestSettingsUpdateConflictValidationRestore(t *testing.T) {
	e := newEnv(t, 1)
	writeMarket(t, e.mkt, 300, 0.02)
	ms := e.sheetStore()
	s := e.storedSwitcher(testConfig(e.mkt), ms, nil)
	srv := &ProfitServer{S: s}
	ctx := operatorCtx("bob")
	get := func() *quarryv1.GetProfitSettingsResponse {
		t.Helper()
		g, err := srv.GetProfitSettings(ctx, &quarryv1.GetProfitSettingsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	base := get()
	v1 := base.Settings

	bad := []struct {
		name string
		edit func(*quarryv1.ProfitSettings)
		base uint64
		code codes.Code
		want string
	}{
		{"stale base", func(*quarryv1.ProfitSettings) {}, 7, codes.FailedPrecondition, "version 1"},
		{"no base", func(*quarryv1.ProfitSettings) {}, 0, codes.InvalidArgument, "base_version"},
		{"unknown sheet", func(p *quarryv1.ProfitSettings) { p.Options[0].FlightSheet = "nope" }, 1, codes.InvalidArgument, `flight sheet "nope"`},
		{"bad tariff", func(p *quarryv1.ProfitSettings) {
			p.Sites[0].Rules = []*quarryv1.TariffRule{{FromHour: 5, ToHour: 5, PriceUsdKwh: 1}}
		}, 1, codes.InvalidArgument, "hours 5-5 must be distinct"},
		{"unknown rig site", func(p *quarryv1.ProfitSettings) {
			p.Rigs = []*quarryv1.RigProfitSettings{{Rig: "rig-00", Site: "moon"}}
		}, 1, codes.InvalidArgument, `unknown site "moon"`},
		{"bad policy", func(p *quarryv1.ProfitSettings) { p.Policy.RelativeThreshold = -1 }, 1, codes.InvalidArgument, "relative threshold"},
		{"nan dwell", func(p *quarryv1.ProfitSettings) { p.Policy.MinDwellSeconds = math.NaN() }, 1, codes.InvalidArgument, "min_dwell"},
		{"long name", func(p *quarryv1.ProfitSettings) { p.DefaultSite = strings.Repeat("x", 500) }, 1, codes.InvalidArgument, "at most 128"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			p := get().Settings
			tc.edit(p)
			_, err := srv.UpdateProfitSettings(ctx, &quarryv1.UpdateProfitSettingsRequest{BaseVersion: tc.base, Settings: p})
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %s containing %q", err, tc.code, tc.want)
			}
			if v := get().Version.Version; v != 1 {
				t.Fatalf("a refused update stored version %d", v)
			}
		})
	}

	// Two edits, then restore the seed.
	p := get().Settings
	p.Rules = &quarryv1.ProfitRules{Pin: "ETC"}
	if _, err := srv.UpdateProfitSettings(ctx, &quarryv1.UpdateProfitSettingsRequest{BaseVersion: 1, Settings: p}); err != nil {
		t.Fatal(err)
	}
	p.Policy.MinDwellSeconds = 600
	if _, err := srv.UpdateProfitSettings(ctx, &quarryv1.UpdateProfitSettingsRequest{BaseVersion: 2, Settings: p}); err != nil {
		t.Fatal(err)
	}
	if got := get(); got.Settings.Rules.Pin != "etc" || got.Settings.Policy.MinDwellSeconds != 600 || !strings.Contains(got.Origin, "2 edits since") {
		t.Fatalf("after two edits: %v (%s)", got.Settings, got.Origin)
	}
	if _, err := srv.RestoreProfitSettings(ctx, &quarryv1.RestoreProfitSettingsRequest{Version: 1, BaseVersion: 2}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("restore from a stale base: %v", err)
	}
	if _, err := srv.RestoreProfitSettings(ctx, &quarryv1.RestoreProfitSettingsRequest{Version: 99, BaseVersion: 3}); status.Code(err) != codes.NotFound {
		t.Fatalf("restore of a missing version: %v", err)
	}
	r, err := srv.RestoreProfitSettings(ctx, &quarryv1.RestoreProfitSettingsRequest{Version: 1, BaseVersion: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r.Version.Version != 4 || !strings.HasPrefix(r.Version.Summary, "restored version 1") || !strings.Contains(r.Version.Summary, "fleet rules cleared") {
		t.Fatalf("restore stored %+v", r.Version)
	}
	if got := get().Settings; got.Rules.Pin != "" || got.Policy.MinDwellSeconds != v1.Policy.MinDwellSeconds {
		t.Fatalf("restored settings %v, want version 1's %v", got, v1)
	}

	// History, newest first, two to a page.
	var seen []uint64
	var before uint64
	for page := 0; page < 5; page++ {
		l, err := srv.ListProfitSettingsVersions(ctx, &quarryv1.ListProfitSettingsVersionsRequest{Limit: 2, Before: before})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range l.Versions {
			seen = append(seen, v.Version)
		}
		if before = l.NextBefore; before == 0 {
			break
		}
	}
	if want := []uint64{4, 3, 2, 1}; !slices.Equal(seen, want) {
		t.Fatalf("history %v, want %v", seen, want)
	}
}

// A stored flight sheet the settings name that is deleted leaves the
// version that used it in force, rather than stopping switching.
func TestDeletedSheetKeepsSettingsInForce(t *testing.T) {
	e := newEnv(t, 1)
	writeMarket(t, e.mkt, 300, 0.02)
	ms := e.sheetStore()
	s := e.storedSwitcher(testConfig(e.mkt), ms, nil)
	profiles(e, s)
	if _, err := s.Market().Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := ms.DeleteSheet(s.Config().Options[1].Sheet); err != nil {
		t.Fatal(err)
	}
	tick, err := s.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tick.Settings != 1 || s.Engine().Len() != 2 {
		t.Fatalf("tick on version %d with %d options, want version 1's two still in force", tick.Settings, s.Engine().Len())
	}
}

// The file loader and the API refuse the same settings with the same
// words.
func TestFileAndAPIValidateAlike(t *testing.T) {
	e := newEnv(t, 1)
	writeMarket(t, e.mkt, 300, 0.02)
	ms := e.sheetStore()
	s := e.storedSwitcher(testConfig(e.mkt), ms, nil)
	tests := []struct {
		name string
		edit func(*Settings)
	}{
		{"tariff", func(st *Settings) {
			st.Sites = map[string]SiteConfig{"default": {Rules: []profit.TariffRule{{From: 3, To: 30}}}}
		}},
		{"timezone", func(st *Settings) { st.Sites = map[string]SiteConfig{"default": {Timezone: "Mars/Olympus"}} }},
		{"rig site", func(st *Settings) { st.Rigs = map[string]RigConfig{"r": {Site: "moon"}} }},
		{"profile", func(st *Settings) {
			st.Rigs = map[string]RigConfig{"r": {Profile: AlgoProfiles{"etchash": {Hashrate: -1}}}}
		}},
		{"pool fee", func(st *Settings) { st.Options[0].PoolFee = 1.5 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := testConfig(e.mkt)
			fst := file.Editable()
			tc.edit(&fst)
			fileErr := file.with(fst).Validate()
			cur, _, err := s.latestVersion()
			if err != nil {
				t.Fatal(err)
			}
			st := cur.Settings
			st.Options = append([]OptionConfig(nil), st.Options...)
			tc.edit(&st)
			_, apiErr := s.UpdateSettings(cur.Version, "carol", st)
			if fileErr == nil || apiErr == nil {
				t.Fatalf("file %v, api %v: both must refuse", fileErr, apiErr)
			}
			if !strings.Contains(apiErr.Error(), fileErr.Error()) {
				t.Fatalf("api says %q, file %q", apiErr, fileErr)
			}
		})
	}
}
