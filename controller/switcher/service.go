package switcher

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/market"
	"github.com/quarryfleet/quarry/pkg/profit"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// ProfitRoles is the least role each ProfitService method needs.
var ProfitRoles = map[string]string{
	quarryv1.ProfitService_ListProfit_FullMethodName:    fleet.RoleViewer,
	quarryv1.ProfitService_ExplainProfit_FullMethodName: fleet.RoleViewer,
	quarryv1.ProfitService_ListSwitches_FullMethodName:  fleet.RoleViewer,
	quarryv1.ProfitService_MarketStatus_FullMethodName:  fleet.RoleViewer,
	quarryv1.ProfitService_SetRigProfile_FullMethodName: fleet.RoleOperator,
	// The settings say what rigs mine and what power costs: reading them
	// is a viewer's (they carry flight sheet names, never their contents),
	// changing them an operator's, like applying a flight sheet.
	quarryv1.ProfitService_GetProfitSettings_FullMethodName:          fleet.RoleViewer,
	quarryv1.ProfitService_ListProfitSettingsVersions_FullMethodName: fleet.RoleViewer,
	quarryv1.ProfitService_UpdateProfitSettings_FullMethodName:       fleet.RoleOperator,
	quarryv1.ProfitService_RestoreProfitSettings_FullMethodName:      fleet.RoleOperator,
}

// ProfitAudit is the audit action of each ProfitService method that
// changes what the switcher decides.
var ProfitAudit = map[string]string{
	quarryv1.ProfitService_SetRigProfile_FullMethodName:         "profit.set-profile",
	quarryv1.ProfitService_UpdateProfitSettings_FullMethodName:  "profit.settings-update",
	quarryv1.ProfitService_RestoreProfitSettings_FullMethodName: "profit.settings-restore",
}

// ProfitServer is ProfitService over a switcher.
type ProfitServer struct {
	quarryv1.UnimplementedProfitServiceServer
	S *Switcher
}

var _ quarryv1.ProfitServiceServer = (*ProfitServer)(nil)

func (t *Tick) row(i int) *quarryv1.ProfitRow {
	r, d := t.Rigs[i], t.Decisions[i]
	row := &quarryv1.ProfitRow{
		RigId: r.ID, RigName: r.Name, Current: d.Input.Current.Name, Best: d.Input.Best.Name,
		CurrentUsdDay: finite(d.Input.Current.Profit), BestUsdDay: finite(d.Input.Best.Profit),
		Action: d.Action, Reason: d.Reason, Borrowed: d.Borrowed, DecidedUnixNano: t.Time.UnixNano(),
		CommandId: d.CommandID, DryRun: t.DryRun && d.CommandID == "" && isMove(d.Action),
	}
	if c := d.Input.Current.Profit; c > 0 && !math.IsInf(d.Input.Best.Profit, 0) {
		row.GapPct = (d.Input.Best.Profit - c) / c * 100
	}
	if d.Error != "" {
		row.Reason += " (command not queued: " + d.Error + ")"
	}
	return row
}

func isMove(a string) bool {
	switch profit.Action(a) {
	case profit.Switch, profit.Resume, profit.Curtail:
		return true
	}
	return false
}

// ListProfit implements ProfitService.
func (v *ProfitServer) ListProfit(context.Context, *quarryv1.ListProfitRequest) (*quarryv1.ListProfitResponse, error) {
	resp := &quarryv1.ListProfitResponse{DryRun: v.S.cfg.DryRun, MarketOffline: v.S.cfg.Market.Offline, MarketMode: v.S.cfg.Market.Mode()}
	if !resp.MarketOffline && v.S.Market().Health().Offline {
		// Offline or demo sources: built-in numbers, not live prices.
		resp.MarketOffline, resp.MarketMode = true, "offline: built-in numbers from offline or demo sources, not live prices"
	}
	if e := v.S.Engine(); e != nil {
		resp.Options = int32(e.Len())
	}
	t := v.S.Last()
	if t == nil {
		if h := v.S.cache.Health(); !h.OK {
			resp.Paused, resp.PauseReason = true, h.Reason
		}
		return resp, nil
	}
	resp.Paused, resp.PauseReason, resp.TickUnixNano = t.Paused, t.PauseReason, t.Time.UnixNano()
	for i := range t.Rigs {
		resp.Rows = append(resp.Rows, t.row(i))
	}
	return resp, nil
}

// ExplainProfit implements ProfitService.
func (v *ProfitServer) ExplainProfit(_ context.Context, req *quarryv1.ExplainProfitRequest) (*quarryv1.ExplainProfitResponse, error) {
	id, err := v.S.fleet.Resolve(req.Rig)
	if err != nil {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	t := v.S.Last()
	if t == nil {
		return nil, status.Error(codes.FailedPrecondition, errRig(req.Rig).Error()+": the switcher has not ticked (no options configured, or it is just starting)")
	}
	i, ok := t.index[id]
	if !ok {
		return nil, status.Error(codes.NotFound, errRig(req.Rig).Error())
	}
	return v.S.explain(t, i), nil
}

func (s *Switcher) explain(t *Tick, i int) *quarryv1.ExplainProfitResponse {
	r, d := t.Rigs[i], t.Decisions[i]
	e, f, q := t.a.engine, t.Fleet, t.Quote
	p := t.a.cfg.Policy
	resp := &quarryv1.ExplainProfitResponse{
		Row: t.row(i), Fingerprint: r.Fingerprint, Site: r.Site, ElectricityUsdKwh: f.ElectricityPrice(i, t.Time),
		Policy: &quarryv1.PolicyFigures{
			RelativeThreshold: p.RelativeThreshold, AbsoluteThresholdUsdDay: p.AbsoluteThreshold,
			MinDwellSeconds: int64(p.MinDwell.Seconds()), SwitchDowntimeSeconds: int64(p.SwitchDowntime.Seconds()),
			CurtailBelowUsdDay: p.CurtailBelow,
		},
		Pinned: r.Rules.Pin, GainUsdDay: finite(d.Gain), SwitchCostUsd: finite(d.SwitchCost),
		DwellSeconds: int64(d.Dwell.Seconds()), MarketOrigin: t.Snapshot.Origin,
		MarketFetchedUnixNano: t.Snapshot.Fetched.UnixNano(), Paused: t.Paused, PauseReason: t.PauseReason,
	}
	if d.Input.LastSwitch.IsZero() {
		resp.DwellSeconds = 0
	}
	for _, c := range r.Rules.ExcludeCoins {
		resp.Exclusions = append(resp.Exclusions, "coin "+c)
	}
	for _, c := range r.Rules.ExcludePools {
		resp.Exclusions = append(resp.Exclusions, "pool "+c)
	}
	for _, c := range r.Rules.ExcludeAlgorithms {
		resp.Exclusions = append(resp.Exclusions, "algorithm "+c)
	}
	perf := map[string]profit.Perf{}
	for _, pf := range r.Perf {
		perf[pf.Algorithm] = pf
		src := r.Sources[pf.Algorithm]
		resp.Perf = append(resp.Perf, &quarryv1.PerfInput{Algorithm: pf.Algorithm, Hashrate: pf.Hashrate, PowerW: pf.Power,
			Source: src.Source, BorrowedFrom: src.BorrowedFrom, Samples: src.Samples})
	}
	unpriced := map[int]string{}
	for _, u := range q.Unpriced {
		unpriced[u.Option] = u.Reason
	}
	coins := map[string]bool{}
	price := f.ElectricityPrice(i, t.Time)
	for o := range e.Len() {
		opt := e.Option(o)
		sc := q.Score(f, i, o, t.Time)
		of := &quarryv1.OptionFigures{Name: e.Name(o), Coin: opt.Coin, Algorithm: opt.Algorithm, Pool: opt.Pool,
			PoolFee: opt.PoolFee, MinerFee: opt.MinerFee, Unpriced: unpriced[o]}
		of.Allowed, of.Blocked = f.Allowed(i, o)
		pf, has := perf[opt.Algorithm]
		of.NoHashrate = !has || pf.Hashrate <= 0
		if c, ok := t.Snapshot.Coin(opt.Coin); ok && of.Unpriced == "" && !of.NoHashrate {
			pc := profitCoin(c)
			fig := profit.Evaluate(pc, opt, pf.Hashrate, pf.Power, price)
			of.CoinsPerDay, of.RevenueUsdDay, of.PowerUsdDay, of.ProfitUsdDay = fig.CoinsPerDay, sc.Revenue, sc.Cost, sc.Profit
		}
		resp.Options = append(resp.Options, of)
		if !coins[opt.Coin] {
			coins[opt.Coin] = true
			if c, ok := t.Snapshot.Coin(opt.Coin); ok {
				resp.Coins = append(resp.Coins, coinFigures(c))
			}
		}
	}
	slices.SortStableFunc(resp.Options, func(a, b *quarryv1.OptionFigures) int {
		switch {
		case a.ProfitUsdDay > b.ProfitUsdDay:
			return -1
		case a.ProfitUsdDay < b.ProfitUsdDay:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return resp
}

// SetRigProfile implements ProfitService.
func (v *ProfitServer) SetRigProfile(ctx context.Context, req *quarryv1.SetRigProfileRequest) (*quarryv1.SetRigProfileResponse, error) {
	auth.Note(ctx).Target = req.Rig
	id, err := v.S.fleet.Resolve(req.Rig)
	if err != nil {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	p := AlgoProfiles{}
	if !req.Clear {
		if len(req.Perf) == 0 {
			return nil, status.Error(codes.InvalidArgument, "give at least one algorithm's hashrate and power, or clear")
		}
		for _, pf := range req.Perf {
			if pf.Algorithm == "" {
				return nil, status.Error(codes.InvalidArgument, "algorithm is required")
			}
			p[pf.Algorithm] = AlgoProfile{Hashrate: pf.Hashrate, Power: pf.PowerW}
		}
	}
	if err := v.S.SetProfile(id, p); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	a := auth.Note(ctx)
	a.Target, a.Detail = id, fmt.Sprint(p)
	resp := &quarryv1.SetRigProfileResponse{RigId: id}
	for algo, f := range v.S.Profile(id) {
		resp.Perf = append(resp.Perf, &quarryv1.PerfInput{Algorithm: algo, Hashrate: f.Hashrate, PowerW: f.Power, Source: "profile"})
	}
	slices.SortFunc(resp.Perf, func(a, b *quarryv1.PerfInput) int { return strings.Compare(a.Algorithm, b.Algorithm) })
	return resp, nil
}

// ListSwitches implements ProfitService.
func (v *ProfitServer) ListSwitches(_ context.Context, req *quarryv1.ListSwitchesRequest) (*quarryv1.ListSwitchesResponse, error) {
	rig := ""
	if req.Rig != "" {
		id, err := v.S.fleet.Resolve(req.Rig)
		if err != nil {
			return nil, status.Error(codes.NotFound, err.Error())
		}
		rig = id
	}
	recs, err := v.S.Switches(rig, int(req.Limit))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &quarryv1.ListSwitchesResponse{}
	for _, r := range recs {
		resp.Switches = append(resp.Switches, &quarryv1.SwitchRecord{
			TimeUnixNano: r.Time.UnixNano(), RigId: r.Rig, Action: r.Action, From: r.From, To: r.To,
			FromUsdDay: r.FromUSD, ToUsdDay: r.ToUSD, Reason: r.Reason, CommandId: r.CommandID, DryRun: r.DryRun, Error: r.Error,
		})
	}
	return resp, nil
}

// MarketStatus implements ProfitService.
func (v *ProfitServer) MarketStatus(context.Context, *quarryv1.MarketStatusRequest) (*quarryv1.MarketStatusResponse, error) {
	h := v.S.cache.Health()
	snap := v.S.cache.Get()
	resp := &quarryv1.MarketStatusResponse{Ok: h.OK, Reason: h.Reason, Origin: snap.Origin, FetchedUnixNano: snap.Fetched.UnixNano(),
		AgeSeconds: h.Age.Seconds(), LastError: h.LastError, Offline: h.Offline}
	if !v.S.hasSrc && !h.Offline {
		resp.LastError = errors.Join(errors.New("no market sources configured (profit.market.sources); serving the built-in snapshot"), nilIfEmpty(h.LastError)).Error()
	}
	for _, so := range snap.Sources {
		resp.Sources = append(resp.Sources, &quarryv1.SourceHealth{Name: so.Name, Ok: so.OK, Coins: int32(so.Coins), Error: so.Error, Seconds: so.Duration.Seconds()})
	}
	for _, c := range Coins(snap) {
		mc, _ := snap.Coin(c.Tag)
		resp.Coins = append(resp.Coins, coinFigures(mc))
	}
	for _, d := range snap.Dropped {
		resp.Dropped = append(resp.Dropped, fmt.Sprintf("%s (%s): %s", d.Tag, d.Source, d.Reason))
	}
	for _, hd := range snap.Held {
		resp.Held = append(resp.Held, fmt.Sprintf("%s %s %g→%g seen %d/%d", hd.Tag, hd.Field, hd.Old, hd.New, hd.Seen, hd.Required))
	}
	return resp, nil
}

func nilIfEmpty(s string) error {
	if s == "" {
		return nil
	}
	return errors.New(s)
}

func coinFigures(c market.Coin) *quarryv1.CoinFigures {
	return &quarryv1.CoinFigures{Tag: c.Tag, Algorithm: c.Algorithm, BlockTimeS: c.BlockTime, BlockReward: c.BlockReward,
		Difficulty: c.Difficulty, Nethash: c.NetHash, PriceUsd: c.PriceUSD, Source: c.Source, UpdatedUnixNano: c.UpdatedAt.UnixNano()}
}
