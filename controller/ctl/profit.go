package ctl

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/market"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// profit calls ProfitService.
func (a *App) profit(ctx context.Context, fn func(ctx context.Context, c quarryv1.ProfitServiceClient) error) error {
	return a.callConn(ctx, func(ctx context.Context, conn grpc.ClientConnInterface) error {
		return fn(ctx, quarryv1.NewProfitServiceClient(conn))
	})
}

// offlineNote says that switching runs on data built into the controller.
const offlineNote = "OFFLINE market: numbers built into the controller (offline or demo source), not live prices"

func usd(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func (a *App) profitCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profit",
		Short: "Show each rig's current and best option, the profit gap and the switcher's action",
		Long: `Show the profit switcher's latest decision for every rig: what it mines
now, the most profitable option it may mine, both in USD per day after
pool fees and power, the gap between them and what the switcher did.
A rig whose figures are borrowed from identical hardware is marked with *.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.profit(cmd.Context(), func(ctx context.Context, c quarryv1.ProfitServiceClient) error {
				resp, err := c.ListProfit(ctx, &quarryv1.ListProfitRequest{})
				if err != nil {
					return err
				}
				if a.Opts.Output == "json" {
					return a.json(resp)
				}
				if resp.Options == 0 {
					fmt.Fprintln(a.Out, "profit switching is idle: no options configured (profit.options in the controller's config)")
				}
				if resp.Paused {
					fmt.Fprintln(a.Out, "PAUSED:", resp.PauseReason)
				}
				if m, err := c.MarketStatus(ctx, &quarryv1.MarketStatusRequest{}); err == nil && m.Origin == market.OriginOffline {
					fmt.Fprintln(a.Out, offlineNote)
				}
				if resp.DryRun {
					fmt.Fprintln(a.Out, "dry run: decisions are recorded, no commands are sent")
				}
				if resp.TickUnixNano != 0 {
					fmt.Fprintf(a.Out, "decided %s\n", ago(resp.TickUnixNano, time.Now()))
				}
				tw := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "RIG\tCURRENT\tBEST\t$/DAY NOW\t$/DAY BEST\tGAP\tACTION")
				for _, r := range resp.Rows {
					name := r.RigName
					if name == "" {
						name = r.RigId
					}
					if r.Borrowed {
						name += "*"
					}
					gap := "-"
					if r.CurrentUsdDay > 0 {
						gap = fmt.Sprintf("%+.1f%%", r.GapPct)
					}
					action := r.Action
					if r.DryRun {
						action += " (dry run)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, r.Current, r.Best, usd(r.CurrentUsdDay), usd(r.BestUsdDay), gap, action)
				}
				return tw.Flush()
			})
		},
	}
	cmd.AddCommand(a.profitExplainCmd(), a.profitSetProfileCmd(), a.profitSwitchesCmd())
	return cmd
}

func (a *App) profitExplainCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "explain RIG",
		Short:             "Show every input of a rig's latest profit decision and the reason",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRigs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.profit(cmd.Context(), func(ctx context.Context, c quarryv1.ProfitServiceClient) error {
				resp, err := c.ExplainProfit(ctx, &quarryv1.ExplainProfitRequest{Rig: args[0]})
				if err != nil {
					return err
				}
				if a.Opts.Output == "json" {
					return a.json(resp)
				}
				printExplain(a, resp)
				return nil
			})
		},
	}
}

func printExplain(a *App, e *quarryv1.ExplainProfitResponse) {
	w := a.Out
	r := e.Row
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Rig:\t%s (%s)\n", r.RigName, r.RigId)
	fmt.Fprintf(tw, "Decided:\t%s\n", ago(r.DecidedUnixNano, time.Now()))
	fmt.Fprintf(tw, "Hardware:\t%s\n", dash(e.Fingerprint))
	fmt.Fprintf(tw, "Site:\t%s, electricity now $%.4f/kWh\n", e.Site, e.ElectricityUsdKwh)
	fmt.Fprintf(tw, "Market:\t%s data fetched %s\n", e.MarketOrigin, ago(e.MarketFetchedUnixNano, time.Now()))
	if e.Paused {
		fmt.Fprintf(tw, "Paused:\t%s\n", e.PauseReason)
	}
	fmt.Fprintf(tw, "Pinned:\t%s\n", dash(e.Pinned))
	fmt.Fprintf(tw, "Exclusions:\t%s\n", dash(strings.Join(e.Exclusions, ", ")))
	p := e.Policy
	fmt.Fprintf(tw, "Policy:\tswitch when gain ≥ %.1f%% and ≥ $%.2f/day after switch cost; min dwell %s; switch downtime %s; curtail below $%.2f/day\n",
		p.RelativeThreshold*100, p.AbsoluteThresholdUsdDay, time.Duration(p.MinDwellSeconds)*time.Second,
		time.Duration(p.SwitchDowntimeSeconds)*time.Second, p.CurtailBelowUsdDay)
	fmt.Fprintf(tw, "Current:\t%s at $%s/day\n", r.Current, usd(r.CurrentUsdDay))
	fmt.Fprintf(tw, "Best:\t%s at $%s/day\n", r.Best, usd(r.BestUsdDay))
	fmt.Fprintf(tw, "Gain:\t$%.2f/day after switch cost $%.2f; dwell %s\n", e.GainUsdDay, e.SwitchCostUsd, time.Duration(e.DwellSeconds)*time.Second)
	fmt.Fprintf(tw, "Action:\t%s\n", r.Action)
	if r.CommandId != "" {
		fmt.Fprintf(tw, "Command:\t%s\n", r.CommandId)
	}
	fmt.Fprintf(tw, "Reason:\t%s\n", r.Reason)
	tw.Flush()

	fmt.Fprintln(w, "\nHash rate and power used:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ALGORITHM\tHASHRATE\tPOWER\tSOURCE")
	for _, pf := range e.Perf {
		src := pf.Source
		switch {
		case pf.BorrowedFrom != "":
			src += " from " + pf.BorrowedFrom
		case pf.Samples > 0:
			src += fmt.Sprintf(" (%d reports)", pf.Samples)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f W\t%s\n", pf.Algorithm, HashrateHuman(pf.Hashrate), pf.PowerW, src)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nCoins:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COIN\tALGORITHM\tPRICE $\tBLOCK REWARD\tBLOCK TIME\tNETHASH\tDIFFICULTY\tSOURCE\tUPDATED")
	for _, c := range e.Coins {
		fmt.Fprintf(tw, "%s\t%s\t%.6g\t%.6g\t%.4gs\t%s\t%.4g\t%s\t%s\n", c.Tag, c.Algorithm, c.PriceUsd, c.BlockReward, c.BlockTimeS,
			HashrateHuman(c.Nethash), c.Difficulty, dash(c.Source), ago(c.UpdatedUnixNano, time.Now()))
	}
	tw.Flush()

	fmt.Fprintln(w, "\nOptions, best first:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OPTION\tPOOL FEE\tMINER FEE\tCOINS/DAY\tREVENUE $\tPOWER $\tPROFIT $\tNOTE")
	for _, o := range e.Options {
		note := ""
		switch {
		case !o.Allowed:
			note = "blocked: " + o.Blocked
		case o.Unpriced != "":
			note = "unpriced: " + o.Unpriced
		case o.NoHashrate:
			note = "no hash rate for " + o.Algorithm
		}
		if note != "" {
			fmt.Fprintf(tw, "%s\t%.2f%%\t%.2f%%\t-\t-\t-\t-\t%s\n", o.Name, o.PoolFee*100, o.MinerFee*100, note)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.2f%%\t%.2f%%\t%.6g\t%s\t%s\t%s\t\n", o.Name, o.PoolFee*100, o.MinerFee*100, o.CoinsPerDay,
			usd(o.RevenueUsdDay), usd(o.PowerUsdDay), usd(o.ProfitUsdDay))
	}
	tw.Flush()
}

// parsePerf reads ALGO=HASHRATE@WATTS, e.g. "etchash=100 MH/s@220".
func parsePerf(s string) (*quarryv1.PerfInput, error) {
	algo, rest, ok := strings.Cut(s, "=")
	hs, ws, ok2 := strings.Cut(rest, "@")
	if !ok || !ok2 || strings.TrimSpace(algo) == "" {
		return nil, fmt.Errorf("--perf %q: want ALGO=HASHRATE@WATTS, e.g. etchash=100MH/s@220", s)
	}
	h, err := flightsheet.ParseHashrate(hs)
	if err != nil {
		return nil, fmt.Errorf("--perf %q: %w", s, err)
	}
	w, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(strings.ToLower(ws)), "w"), 64)
	if err != nil || w < 0 || math.IsInf(w, 0) || math.IsNaN(w) {
		return nil, fmt.Errorf("--perf %q: watts %q is not a non-negative number", s, ws)
	}
	if h <= 0 {
		return nil, fmt.Errorf("--perf %q: hash rate must be positive", s)
	}
	return &quarryv1.PerfInput{Algorithm: strings.TrimSpace(algo), Hashrate: float64(h), PowerW: w}, nil
}

func (a *App) profitSetProfileCmd() *cobra.Command {
	var perfs []string
	var clearIt bool
	cmd := &cobra.Command{
		Use:   "set-profile RIG --perf ALGO=HASHRATE@WATTS...",
		Short: "Set a rig's hash rate and wall power per algorithm (overrides measured figures)",
		Example: `  quarryctl profit set-profile rig-7 --perf etchash=366MH/s@720 --perf kawpow=180MH/s@840
  quarryctl profit set-profile rig-7 --clear`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRigs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &quarryv1.SetRigProfileRequest{Rig: args[0], Clear: clearIt}
			if clearIt == (len(perfs) > 0) {
				return fmt.Errorf("give --perf at least once, or --clear")
			}
			for _, s := range perfs {
				p, err := parsePerf(s)
				if err != nil {
					return err
				}
				req.Perf = append(req.Perf, p)
			}
			return a.profit(cmd.Context(), func(ctx context.Context, c quarryv1.ProfitServiceClient) error {
				resp, err := c.SetRigProfile(ctx, req)
				if err != nil {
					return err
				}
				if a.Opts.Output == "json" {
					return a.json(resp)
				}
				if len(resp.Perf) == 0 {
					fmt.Fprintf(a.Out, "profile of %s cleared\n", resp.RigId)
				}
				for _, p := range resp.Perf {
					fmt.Fprintf(a.Out, "%s %s %s @ %.0f W\n", resp.RigId, p.Algorithm, HashrateHuman(p.Hashrate), p.PowerW)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringArrayVar(&perfs, "perf", nil, "ALGO=HASHRATE@WATTS, repeatable")
	cmd.Flags().BoolVar(&clearIt, "clear", false, "remove the rig's profile")
	return cmd
}

func (a *App) profitSwitchesCmd() *cobra.Command {
	var limit uint32
	cmd := &cobra.Command{
		Use:   "switches [RIG]",
		Short: "Show the switch history, oldest first",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &quarryv1.ListSwitchesRequest{Limit: limit}
			if len(args) == 1 {
				req.Rig = args[0]
			}
			return a.profit(cmd.Context(), func(ctx context.Context, c quarryv1.ProfitServiceClient) error {
				resp, err := c.ListSwitches(ctx, req)
				if err != nil {
					return err
				}
				if a.Opts.Output == "json" {
					return a.json(resp)
				}
				tw := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tRIG\tACTION\tFROM\tTO\t$/DAY\tCOMMAND\tREASON")
				for _, s := range resp.Switches {
					command := dash(s.CommandId)
					if s.DryRun {
						command = "dry run"
					}
					if s.Error != "" {
						command = "error: " + s.Error
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s→%s\t%s\t%s\n", time.Unix(0, s.TimeUnixNano).Format(time.DateTime), s.RigId, s.Action,
						s.From, s.To, usd(s.FromUsdDay), usd(s.ToUsdDay), command, s.Reason)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().Uint32Var(&limit, "limit", 100, "most records, newest kept")
	return cmd
}

func (a *App) marketCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "market",
		Short: "Show the market data the profit switcher uses: health, sources and coins",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.profit(cmd.Context(), func(ctx context.Context, c quarryv1.ProfitServiceClient) error {
				resp, err := c.MarketStatus(ctx, &quarryv1.MarketStatusRequest{})
				if err != nil {
					return err
				}
				if a.Opts.Output == "json" {
					return a.json(resp)
				}
				state := "ok"
				if !resp.Ok {
					state = "PAUSED: " + resp.Reason
				}
				fmt.Fprintf(a.Out, "Market: %s\nOrigin: %s, fetched %s\n", state, resp.Origin,
					ago(resp.FetchedUnixNano, time.Now()))
				if resp.Origin == market.OriginOffline {
					fmt.Fprintln(a.Out, offlineNote)
				}
				if resp.LastError != "" {
					fmt.Fprintf(a.Out, "Last error: %s\n", resp.LastError)
				}
				tw := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
				if len(resp.Sources) > 0 {
					fmt.Fprintln(tw, "\nSOURCE\tOK\tCOINS\tTIME\tERROR")
					for _, s := range resp.Sources {
						fmt.Fprintf(tw, "%s\t%v\t%d\t%.2fs\t%s\n", s.Name, s.Ok, s.Coins, s.Seconds, s.Error)
					}
				}
				fmt.Fprintln(tw, "\nCOIN\tALGORITHM\tPRICE $\tNETHASH\tBLOCK REWARD\tBLOCK TIME\tSOURCE")
				for _, c := range resp.Coins {
					fmt.Fprintf(tw, "%s\t%s\t%.6g\t%s\t%.6g\t%.4gs\t%s\n", c.Tag, c.Algorithm, c.PriceUsd, HashrateHuman(c.Nethash), c.BlockReward, c.BlockTimeS, dash(c.Source))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				for _, d := range resp.Dropped {
					fmt.Fprintln(a.Out, "dropped:", d)
				}
				for _, h := range resp.Held {
					fmt.Fprintln(a.Out, "held:", h)
				}
				return nil
			})
		},
	}
}
