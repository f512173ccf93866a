package ctl

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// usd prints dollars with cents, and a small amount (a CPU rig makes
// cents a day) with three significant digits rather than as 0.00.
func usd(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return "-"
	}
	a := math.Abs(v)
	if a >= 1 || a == 0 || a < 1e-9 {
		return fmt.Sprintf("%.2f", v)
	}
	return strconv.FormatFloat(v, 'f', 2-int(math.Floor(math.Log10(a))), 64)
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
			resp, err := fetch(a, cmd.Context(), quarryv1.NewProfitServiceClient, quarryv1.ProfitServiceClient.ListProfit, &quarryv1.ListProfitRequest{})
			if err != nil {
				return err
			}
			return a.render(resp, func() error { return a.printProfit(resp) })
		},
	}
	cmd.AddCommand(a.profitExplainCmd(), a.profitSetProfileCmd(), a.profitSwitchesCmd())
	cmd.AddCommand(a.profitSettingsCmds()...)
	return cmd
}

// printProfit writes the switcher's state, then a row per rig.
func (a *App) printProfit(resp *quarryv1.ListProfitResponse) error {
	if resp.Options == 0 {
		fmt.Fprintln(a.Out, "profit switching is idle: no options configured (add one with 'quarryctl profit options add')")
	}
	if resp.MarketOffline {
		fmt.Fprintln(a.Out, "market", resp.MarketMode, "(fixed snapshot; its age does not pause switching)")
	}
	if resp.Paused {
		fmt.Fprintln(a.Out, "PAUSED:", resp.PauseReason)
	}
	if resp.DryRun {
		fmt.Fprintln(a.Out, "dry run: decisions are recorded, no commands are sent")
	}
	if resp.TickUnixNano != 0 {
		fmt.Fprintf(a.Out, "decided %s\n", ago(resp.TickUnixNano, time.Now()))
	}
	t := newTable(a.Out, "RIG", "CURRENT", "BEST", "$/DAY NOW", "$/DAY BEST", "GAP", "ACTION")
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
		t.row(name, r.Current, r.Best, usd(r.CurrentUsdDay), usd(r.BestUsdDay), gap, action)
	}
	return t.flush()
}

func (a *App) profitExplainCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "explain RIG",
		Short:             "Show every input of a rig's latest profit decision and the reason",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRigs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewProfitServiceClient, quarryv1.ProfitServiceClient.ExplainProfit, &quarryv1.ExplainProfitRequest{Rig: args[0]})
			if err != nil {
				return err
			}
			return a.render(resp, func() error { return printExplain(a.Out, resp) })
		},
	}
}

// printExplain writes every input of a rig's profit decision: the
// decision, then tables of hash rates, coins and options.
func printExplain(w io.Writer, e *quarryv1.ExplainProfitResponse) error {
	r := e.Row
	now := time.Now()
	t := newTable(w)
	t.row("Rig:", fmt.Sprintf("%s (%s)", r.RigName, r.RigId))
	t.row("Decided:", ago(r.DecidedUnixNano, now))
	t.row("Hardware:", dash(e.Fingerprint))
	t.row("Site:", fmt.Sprintf("%s, electricity now $%.4f/kWh", e.Site, e.ElectricityUsdKwh))
	t.row("Market:", fmt.Sprintf("%s data fetched %s", e.MarketOrigin, ago(e.MarketFetchedUnixNano, now)))
	if e.Paused {
		t.row("Paused:", e.PauseReason)
	}
	t.row("Pinned:", dash(e.Pinned))
	t.row("Exclusions:", dash(strings.Join(e.Exclusions, ", ")))
	p := e.Policy
	t.row("Policy:", fmt.Sprintf("switch when gain ≥ %.1f%% and ≥ $%.2f/day after switch cost; min dwell %s; switch downtime %s; curtail below $%.2f/day",
		p.RelativeThreshold*100, p.AbsoluteThresholdUsdDay, time.Duration(p.MinDwellSeconds)*time.Second,
		time.Duration(p.SwitchDowntimeSeconds)*time.Second, p.CurtailBelowUsdDay))
	t.row("Current:", fmt.Sprintf("%s at $%s/day", r.Current, usd(r.CurrentUsdDay)))
	t.row("Best:", fmt.Sprintf("%s at $%s/day", r.Best, usd(r.BestUsdDay)))
	t.row("Gain:", fmt.Sprintf("$%.2f/day after switch cost $%.2f; dwell %s", e.GainUsdDay, e.SwitchCostUsd, time.Duration(e.DwellSeconds)*time.Second))
	t.row("Action:", r.Action)
	if r.CommandId != "" {
		t.row("Command:", r.CommandId)
	}
	t.row("Reason:", r.Reason)
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nHash rate and power used:")
	t = newTable(w, "ALGORITHM", "HASHRATE", "POWER", "SOURCE")
	for _, pf := range e.Perf {
		src := pf.Source
		switch {
		case pf.BorrowedFrom != "":
			src += " from " + pf.BorrowedFrom
		case pf.Samples > 0:
			src += fmt.Sprintf(" (%d reports)", pf.Samples)
		}
		t.row(pf.Algorithm, HashrateHuman(pf.Hashrate), fmt.Sprintf("%.0f W", pf.PowerW), src)
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nCoins:")
	t = newTable(w, "COIN", "ALGORITHM", "PRICE $", "BLOCK REWARD", "BLOCK TIME", "NETHASH", "DIFFICULTY", "SOURCE", "UPDATED")
	for _, c := range e.Coins {
		t.row(c.Tag, c.Algorithm, fmt.Sprintf("%.6g", c.PriceUsd), fmt.Sprintf("%.6g", c.BlockReward), fmt.Sprintf("%.4gs", c.BlockTimeS),
			HashrateHuman(c.Nethash), fmt.Sprintf("%.4g", c.Difficulty), dash(c.Source), ago(c.UpdatedUnixNano, now))
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nOptions, best first:")
	t = newTable(w, "OPTION", "POOL FEE", "MINER FEE", "COINS/DAY", "REVENUE $", "POWER $", "PROFIT $", "NOTE")
	for _, o := range e.Options {
		fees := []any{o.Name, fmt.Sprintf("%.2f%%", o.PoolFee*100), fmt.Sprintf("%.2f%%", o.MinerFee*100)}
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
			t.row(append(fees, "-", "-", "-", "-", note)...)
			continue
		}
		t.row(append(fees, fmt.Sprintf("%.6g", o.CoinsPerDay), usd(o.RevenueUsdDay), usd(o.PowerUsdDay), usd(o.ProfitUsdDay), "")...)
	}
	return t.flush()
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
			resp, err := fetch(a, cmd.Context(), quarryv1.NewProfitServiceClient, quarryv1.ProfitServiceClient.SetRigProfile, req)
			if err != nil {
				return err
			}
			return a.render(resp, func() error {
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
			resp, err := fetch(a, cmd.Context(), quarryv1.NewProfitServiceClient, quarryv1.ProfitServiceClient.ListSwitches, req)
			if err != nil {
				return err
			}
			return a.renderTable(resp, []string{"TIME", "RIG", "ACTION", "FROM", "TO", "$/DAY", "COMMAND", "REASON"}, func(t *table) {
				for _, s := range resp.Switches {
					command := dash(s.CommandId)
					if s.DryRun {
						command = "dry run"
					}
					if s.Error != "" {
						command = "error: " + s.Error
					}
					t.row(time.Unix(0, s.TimeUnixNano).Format(time.DateTime), s.RigId, s.Action, s.From, s.To,
						usd(s.FromUsdDay)+"→"+usd(s.ToUsdDay), command, s.Reason)
				}
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
			resp, err := fetch(a, cmd.Context(), quarryv1.NewProfitServiceClient, quarryv1.ProfitServiceClient.MarketStatus, &quarryv1.MarketStatusRequest{})
			if err != nil {
				return err
			}
			return a.render(resp, func() error { return a.printMarket(resp) })
		},
	}
}

// printMarket writes the market's health, then its sources and coins.
func (a *App) printMarket(resp *quarryv1.MarketStatusResponse) error {
	state := "ok"
	if resp.Offline {
		state = "ok, " + resp.Reason
	}
	if !resp.Ok {
		state = "PAUSED: " + resp.Reason
	}
	fmt.Fprintf(a.Out, "Market: %s\nOrigin: %s, fetched %s\n", state, resp.Origin, ago(resp.FetchedUnixNano, time.Now()))
	if resp.LastError != "" {
		fmt.Fprintf(a.Out, "Last error: %s\n", resp.LastError)
	}
	if len(resp.Sources) > 0 {
		fmt.Fprintln(a.Out)
		t := newTable(a.Out, "SOURCE", "OK", "COINS", "TIME", "ERROR")
		for _, s := range resp.Sources {
			t.row(s.Name, s.Ok, s.Coins, fmt.Sprintf("%.2fs", s.Seconds), s.Error)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(a.Out)
	t := newTable(a.Out, "COIN", "ALGORITHM", "PRICE $", "NETHASH", "BLOCK REWARD", "BLOCK TIME", "SOURCE")
	for _, c := range resp.Coins {
		t.row(c.Tag, c.Algorithm, fmt.Sprintf("%.6g", c.PriceUsd), HashrateHuman(c.Nethash), fmt.Sprintf("%.6g", c.BlockReward), fmt.Sprintf("%.4gs", c.BlockTimeS), dash(c.Source))
	}
	if err := t.flush(); err != nil {
		return err
	}
	for _, d := range resp.Dropped {
		fmt.Fprintln(a.Out, "dropped:", d)
	}
	for _, h := range resp.Held {
		fmt.Fprintln(a.Out, "held:", h)
	}
	return nil
}
