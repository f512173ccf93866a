package switcher

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/pkg/profit"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Limits of a settings document sent to UpdateProfitSettings.
const (
	maxSettingsOptions = 512
	maxSettingsSites   = 1024
	maxSettingsRigs    = 100000
	maxTariffRules     = 168
	maxRuleEntries     = 256
	maxSettingsName    = 128
	maxVersionsPage    = 1000
)

func settingsErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrConflict):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrInvalidSettings):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNoVersion):
		return status.Error(codes.NotFound, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// GetProfitSettings implements ProfitService.
func (v *ProfitServer) GetProfitSettings(context.Context, *quarryv1.GetProfitSettingsRequest) (*quarryv1.GetProfitSettingsResponse, error) {
	if v.S.db == nil {
		return nil, status.Error(codes.FailedPrecondition, "profit settings need the controller's database")
	}
	sv, ok, err := v.S.latestVersion()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !ok {
		return nil, status.Error(codes.FailedPrecondition, "profit settings were never seeded")
	}
	return &quarryv1.GetProfitSettingsResponse{Version: versionProto(sv), Settings: SettingsProto(sv.Settings), Origin: v.S.Origin()}, nil
}

// UpdateProfitSettings implements ProfitService.
func (v *ProfitServer) UpdateProfitSettings(ctx context.Context, req *quarryv1.UpdateProfitSettingsRequest) (*quarryv1.UpdateProfitSettingsResponse, error) {
	a := auth.Note(ctx)
	a.Target = "profit settings"
	if req.BaseVersion == 0 {
		return nil, status.Error(codes.InvalidArgument, "base_version is required: get the settings, change them and send them back with the version they had")
	}
	if req.Settings == nil {
		return nil, status.Error(codes.InvalidArgument, "settings are required")
	}
	st, err := SettingsFromProto(req.Settings)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	sv, err := v.S.UpdateSettings(req.BaseVersion, auth.CallerFrom(ctx).Name, st)
	if err != nil {
		return nil, settingsErr(err)
	}
	a.Detail = fmt.Sprintf("version %d: %s", sv.Version, sv.Summary)
	return &quarryv1.UpdateProfitSettingsResponse{Version: versionProto(sv), Settings: SettingsProto(sv.Settings)}, nil
}

// RestoreProfitSettings implements ProfitService.
func (v *ProfitServer) RestoreProfitSettings(ctx context.Context, req *quarryv1.RestoreProfitSettingsRequest) (*quarryv1.UpdateProfitSettingsResponse, error) {
	a := auth.Note(ctx)
	a.Target = fmt.Sprintf("profit settings version %d", req.Version)
	if req.BaseVersion == 0 || req.Version == 0 {
		return nil, status.Error(codes.InvalidArgument, "version and base_version are required")
	}
	sv, err := v.S.RestoreSettings(req.BaseVersion, req.Version, auth.CallerFrom(ctx).Name)
	if err != nil {
		return nil, settingsErr(err)
	}
	a.Detail = fmt.Sprintf("version %d: %s", sv.Version, sv.Summary)
	return &quarryv1.UpdateProfitSettingsResponse{Version: versionProto(sv), Settings: SettingsProto(sv.Settings)}, nil
}

// ListProfitSettingsVersions implements ProfitService.
func (v *ProfitServer) ListProfitSettingsVersions(_ context.Context, req *quarryv1.ListProfitSettingsVersionsRequest) (*quarryv1.ListProfitSettingsVersionsResponse, error) {
	if v.S.db == nil {
		return nil, status.Error(codes.FailedPrecondition, "profit settings need the controller's database")
	}
	limit := int(req.Limit)
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, maxVersionsPage)
	vs, err := v.S.SettingsVersions(req.Before, limit)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &quarryv1.ListProfitSettingsVersionsResponse{}
	for _, sv := range vs {
		resp.Versions = append(resp.Versions, versionProto(sv))
	}
	if n := len(vs); n == limit && vs[n-1].Version > 1 {
		resp.NextBefore = vs[n-1].Version
	}
	return resp, nil
}

func versionProto(sv SettingsVersion) *quarryv1.ProfitSettingsVersion {
	return &quarryv1.ProfitSettingsVersion{Version: sv.Version, Author: sv.Author, TimeUnixNano: sv.Time.UnixNano(), Summary: sv.Summary, Seed: sv.Seed}
}

func rulesProto(r profit.Rules) *quarryv1.ProfitRules {
	return &quarryv1.ProfitRules{Pin: r.Pin, ExcludeCoins: r.ExcludeCoins, ExcludePools: r.ExcludePools, ExcludeAlgorithms: r.ExcludeAlgorithms}
}

func seconds(d time.Duration) float64 { return d.Seconds() }

// SettingsProto is the API's form of the settings. An option with an
// inline sheet (a switcher without a flight sheet store) shows its name.
func SettingsProto(st Settings) *quarryv1.ProfitSettings {
	p := st.Policy
	out := &quarryv1.ProfitSettings{
		DefaultSite: st.DefaultSite, Rules: rulesProto(st.Rules),
		Policy: &quarryv1.ProfitPolicy{
			RelativeThreshold: p.RelativeThreshold, AbsoluteThresholdUsdDay: p.AbsoluteThreshold,
			MinDwellSeconds: seconds(p.MinDwell), SwitchDowntimeSeconds: seconds(p.SwitchDowntime),
			CurtailBelowUsdDay: p.CurtailBelow, Smoothing: p.Smoothing,
		},
	}
	for _, o := range st.Options {
		po := &quarryv1.ProfitOption{Coin: o.Coin, Algorithm: o.Algorithm, Pool: o.Pool, PoolFee: o.PoolFee, MinerFee: o.MinerFee, FlightSheet: o.Sheet}
		if po.FlightSheet == "" && o.FlightSheet != nil {
			po.FlightSheet = o.FlightSheet.Name
		}
		out.Options = append(out.Options, po)
	}
	for _, name := range slices.Sorted(maps.Keys(st.Sites)) {
		s := st.Sites[name]
		ps := &quarryv1.ProfitSite{Name: name, DefaultUsdKwh: s.Default, Timezone: s.Timezone}
		for _, r := range s.Rules {
			tr := &quarryv1.TariffRule{FromHour: int32(r.From), ToHour: int32(r.To), PriceUsdKwh: r.Price}
			for _, d := range r.Days {
				tr.Days = append(tr.Days, int32(d))
			}
			ps.Rules = append(ps.Rules, tr)
		}
		out.Sites = append(out.Sites, ps)
	}
	for _, name := range slices.Sorted(maps.Keys(st.Rigs)) {
		r := st.Rigs[name]
		pr := &quarryv1.RigProfitSettings{Rig: name, Site: r.Site, Rules: rulesProto(r.Rules)}
		for _, algo := range slices.Sorted(maps.Keys(r.Profile)) {
			f := r.Profile[algo]
			pr.Profile = append(pr.Profile, &quarryv1.PerfInput{Algorithm: algo, Hashrate: f.Hashrate, PowerW: f.Power, Source: "profile"})
		}
		out.Rigs = append(out.Rigs, pr)
	}
	return out
}

// SettingsFromProto turns the API's form into settings, refusing what is
// too large or not a number before validation proper.
func SettingsFromProto(p *quarryv1.ProfitSettings) (Settings, error) {
	var st Settings
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	name := func(what, s string) {
		if len(s) > maxSettingsName || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			bad("%s %.40q: at most %d characters, no control characters", what, s, maxSettingsName)
		}
	}
	rules := func(what string, r *quarryv1.ProfitRules) profit.Rules {
		if r == nil {
			return profit.Rules{}
		}
		name(what+" pin", r.Pin)
		for _, l := range [][]string{r.ExcludeCoins, r.ExcludePools, r.ExcludeAlgorithms} {
			if len(l) > maxRuleEntries {
				bad("%s: at most %d exclusions of each kind", what, maxRuleEntries)
			}
			for _, x := range l {
				name(what+" exclusion", x)
			}
		}
		return profit.Rules{Pin: strings.ToLower(r.Pin), ExcludeCoins: lower(r.ExcludeCoins), ExcludePools: slices.Clone(r.ExcludePools), ExcludeAlgorithms: slices.Clone(r.ExcludeAlgorithms)}
	}
	dur := func(what string, s float64) time.Duration {
		if math.IsNaN(s) || math.IsInf(s, 0) || math.Abs(s) > 1e9 {
			bad("policy %s: %v seconds is not a usable duration", what, s)
			return 0
		}
		return time.Duration(math.Round(s * float64(time.Second)))
	}
	if pp := p.Policy; pp != nil {
		st.Policy = profit.Policy{
			RelativeThreshold: pp.RelativeThreshold, AbsoluteThreshold: pp.AbsoluteThresholdUsdDay,
			MinDwell: dur("min_dwell", pp.MinDwellSeconds), SwitchDowntime: dur("switch_downtime", pp.SwitchDowntimeSeconds),
			CurtailBelow: pp.CurtailBelowUsdDay, Smoothing: pp.Smoothing,
		}
	} else {
		bad("policy is required")
	}
	name("default_site", p.DefaultSite)
	st.DefaultSite = p.DefaultSite
	st.Rules = rules("fleet rules", p.Rules)
	if len(p.Options) > maxSettingsOptions {
		bad("at most %d options, got %d", maxSettingsOptions, len(p.Options))
	}
	for i, o := range p.Options {
		name(fmt.Sprintf("option %d coin", i), o.Coin)
		name(fmt.Sprintf("option %d pool", i), o.Pool)
		name(fmt.Sprintf("option %d algorithm", i), o.Algorithm)
		name(fmt.Sprintf("option %d flight sheet", i), o.FlightSheet)
		if o.FlightSheet == "" {
			bad("option %d: flight_sheet is required: the name of a stored flight sheet", i)
		}
		st.Options = append(st.Options, OptionConfig{Coin: strings.ToLower(o.Coin), Algorithm: o.Algorithm, Pool: o.Pool, PoolFee: o.PoolFee, MinerFee: o.MinerFee, Sheet: o.FlightSheet})
	}
	if len(p.Sites) > maxSettingsSites {
		bad("at most %d sites, got %d", maxSettingsSites, len(p.Sites))
	}
	for _, s := range p.Sites {
		name("site", s.Name)
		if s.Name == "" {
			bad("a site needs a name")
		}
		if _, dup := st.Sites[s.Name]; dup {
			bad("site %q is listed twice", s.Name)
		}
		if len(s.Rules) > maxTariffRules {
			bad("site %q: at most %d tariff rules", s.Name, maxTariffRules)
		}
		name("site timezone", s.Timezone)
		sc := SiteConfig{Default: s.DefaultUsdKwh, Timezone: s.Timezone}
		for _, r := range s.Rules {
			tr := profit.TariffRule{From: int(r.FromHour), To: int(r.ToHour), Price: r.PriceUsdKwh}
			if len(r.Days) > 7 {
				bad("site %q: a tariff rule lists at most 7 days", s.Name)
			}
			for _, d := range r.Days {
				tr.Days = append(tr.Days, time.Weekday(d))
			}
			sc.Rules = append(sc.Rules, tr)
		}
		if st.Sites == nil {
			st.Sites = map[string]SiteConfig{}
		}
		st.Sites[s.Name] = sc
	}
	if len(p.Rigs) > maxSettingsRigs {
		bad("at most %d rigs, got %d", maxSettingsRigs, len(p.Rigs))
	}
	for _, r := range p.Rigs {
		name("rig", r.Rig)
		name("rig site", r.Site)
		if r.Rig == "" {
			bad("rig settings need the rig's id or name")
		}
		if _, dup := st.Rigs[r.Rig]; dup {
			bad("rig %q is listed twice", r.Rig)
		}
		rc := RigConfig{Site: r.Site, Rules: rules("rig "+r.Rig, r.Rules)}
		if len(r.Profile) > maxRuleEntries {
			bad("rig %q: at most %d algorithms in its profile", r.Rig, maxRuleEntries)
		}
		for _, f := range r.Profile {
			name("profile algorithm", f.Algorithm)
			if rc.Profile == nil {
				rc.Profile = AlgoProfiles{}
			}
			rc.Profile[f.Algorithm] = AlgoProfile{Hashrate: f.Hashrate, Power: f.PowerW}
		}
		if st.Rigs == nil {
			st.Rigs = map[string]RigConfig{}
		}
		st.Rigs[r.Rig] = rc
	}
	if err := errors.Join(errs...); err != nil {
		return Settings{}, fmt.Errorf("%w: %w", ErrInvalidSettings, err)
	}
	return st, nil
}

func lower(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = strings.ToLower(s)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
