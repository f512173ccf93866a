package ctl

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// The profit settings (options, sites and tariffs, pins and exclusions,
// policy) live in the controller's database. Every change below reads
// the current version, edits it and stores it back naming the version it
// started from, so that two operators' changes never silently overwrite
// each other: the second is refused and can be made again.

func (a *App) getProfitSettings(ctx context.Context) (*quarryv1.GetProfitSettingsResponse, error) {
	return fetch(a, ctx, quarryv1.NewProfitServiceClient, quarryv1.ProfitServiceClient.GetProfitSettings, &quarryv1.GetProfitSettingsRequest{})
}

// editProfitSettings applies edit to the current settings and stores the
// result as a new version.
func (a *App) editProfitSettings(ctx context.Context, edit func(*quarryv1.ProfitSettings) error) error {
	cur, err := a.getProfitSettings(ctx)
	if err != nil {
		return err
	}
	st := proto.CloneOf(cur.Settings)
	if st.Policy == nil {
		st.Policy = &quarryv1.ProfitPolicy{}
	}
	if err := edit(st); err != nil {
		return err
	}
	if proto.Equal(st, cur.Settings) {
		return a.renderDone(cur, "no change: version %d is in force", cur.Version.Version)
	}
	resp, err := fetch(a, ctx, quarryv1.NewProfitServiceClient, quarryv1.ProfitServiceClient.UpdateProfitSettings,
		&quarryv1.UpdateProfitSettingsRequest{BaseVersion: cur.Version.Version, Settings: st})
	if err != nil {
		return err
	}
	return a.renderDone(resp, "stored version %d: %s (in force from the switcher's next tick)", resp.Version.Version, resp.Version.Summary)
}

func (a *App) profitSettingsCmds() []*cobra.Command {
	return []*cobra.Command{a.profitSettingsCmd(), a.profitOptionsCmd(), a.profitSitesCmd(), a.profitRulesCmd(), a.profitPolicyCmd()}
}

func (a *App) profitSettingsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "settings",
		Short: "Show the profit settings in force, where they come from and their version",
		Long: `Show the profit settings in force: options, sites and tariffs, pins and
exclusions, and the policy thresholds. They are kept in the controller's
database, versioned; the profit section of the controller's config file
only seeds them on first start. Change them with 'quarryctl profit
options|sites|rules|policy'; see every version with 'settings history'
and go back to one with 'settings restore N'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := a.getProfitSettings(cmd.Context())
			if err != nil {
				return err
			}
			return a.render(resp, func() error { return a.printProfitSettings(resp) })
		},
	}
	cmd.AddCommand(a.profitSettingsHistoryCmd(), a.profitSettingsRestoreCmd())
	return cmd
}

func (a *App) printProfitSettings(resp *quarryv1.GetProfitSettingsResponse) error {
	v, st := resp.Version, resp.Settings
	fmt.Fprintf(a.Out, "version %d by %s at %s: %s\n", v.Version, v.Author, time.Unix(0, v.TimeUnixNano).Format(time.DateTime), v.Summary)
	fmt.Fprintf(a.Out, "origin: %s\n\n", resp.Origin)
	fmt.Fprintln(a.Out, "options:")
	if err := a.printOptions(st); err != nil {
		return err
	}
	fmt.Fprintf(a.Out, "\nsites (default %s):\n", st.DefaultSite)
	if err := a.printSites(st); err != nil {
		return err
	}
	fmt.Fprintln(a.Out, "\nrules:")
	if err := a.printRules(st); err != nil {
		return err
	}
	fmt.Fprintln(a.Out, "\npolicy:")
	return a.printPolicy(st.Policy)
}

func (a *App) profitSettingsHistoryCmd() *cobra.Command {
	var limit uint32
	var before uint64
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List the stored versions of the profit settings, newest first: who, when, what changed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewProfitServiceClient, quarryv1.ProfitServiceClient.ListProfitSettingsVersions,
				&quarryv1.ListProfitSettingsVersionsRequest{Limit: limit, Before: before})
			if err != nil {
				return err
			}
			return a.render(resp, func() error {
				t := newTable(a.Out, "VERSION", "TIME", "AUTHOR", "SUMMARY")
				for _, v := range resp.Versions {
					t.row(v.Version, time.Unix(0, v.TimeUnixNano).Format(time.DateTime), v.Author, v.Summary)
				}
				if err := t.flush(); err != nil {
					return err
				}
				if resp.NextBefore != 0 {
					fmt.Fprintf(a.Out, "older versions: --before %d\n", resp.NextBefore)
				}
				return nil
			})
		},
	}
	cmd.Flags().Uint32Var(&limit, "limit", 50, "most versions listed")
	cmd.Flags().Uint64Var(&before, "before", 0, "list versions older than this one")
	return cmd
}

func (a *App) profitSettingsRestoreCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "restore VERSION",
		Short:   "Store a new version of the profit settings equal to an earlier one",
		Example: "  quarryctl profit settings history\n  quarryctl profit settings restore 3",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || n == 0 {
				return fmt.Errorf("version %q: want a version number from 'quarryctl profit settings history'", args[0])
			}
			cur, err := a.getProfitSettings(cmd.Context())
			if err != nil {
				return err
			}
			resp, err := fetch(a, cmd.Context(), quarryv1.NewProfitServiceClient, quarryv1.ProfitServiceClient.RestoreProfitSettings,
				&quarryv1.RestoreProfitSettingsRequest{Version: n, BaseVersion: cur.Version.Version})
			if err != nil {
				return err
			}
			return a.renderDone(resp, "stored version %d: %s", resp.Version.Version, resp.Version.Summary)
		},
	}
}

// ---- options

func (a *App) profitOptionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "options",
		Short: "List, add, edit and remove what rigs may mine (coin, pool, fees, stored flight sheet)",
		Long: `An option is one thing the profit switcher may move rigs to: a coin on a
pool, mined with a flight sheet stored with 'quarryctl flightsheet put'.
Coin and algorithm default to the flight sheet's, the pool to its first
pool's host. Options are numbered as 'options list' shows them.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the options",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := a.getProfitSettings(cmd.Context())
			if err != nil {
				return err
			}
			return a.render(resp.Settings, func() error { return a.printOptions(resp.Settings) })
		},
	}, a.profitOptionAddCmd(), a.profitOptionEditCmd(), &cobra.Command{
		Use:     "remove OPTION",
		Short:   "Remove an option, by its number in 'options list' or its flight sheet's name",
		Example: "  quarryctl profit options remove 2\n  quarryctl profit options remove rvn-trex",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.editProfitSettings(cmd.Context(), func(st *quarryv1.ProfitSettings) error {
				i, err := findOption(st, args[0])
				if err != nil {
					return err
				}
				st.Options = slices.Delete(st.Options, i, i+1)
				return nil
			})
		},
	})
	return cmd
}

func (a *App) printOptions(st *quarryv1.ProfitSettings) error {
	t := newTable(a.Out, "#", "COIN", "ALGORITHM", "POOL", "POOL FEE", "MINER FEE", "FLIGHT SHEET")
	for i, o := range st.Options {
		minerFee := "miner's own"
		if o.MinerFee != nil {
			minerFee = pct(*o.MinerFee)
		}
		t.row(i+1, dash(o.Coin), dash(o.Algorithm), dash(o.Pool), pct(o.PoolFee), minerFee, o.FlightSheet)
	}
	return t.flush()
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', -1, 64) + "%" }

// findOption finds an option by its 1-based number or its flight sheet.
func findOption(st *quarryv1.ProfitSettings, key string) (int, error) {
	if n, err := strconv.Atoi(key); err == nil {
		if n < 1 || n > len(st.Options) {
			return 0, fmt.Errorf("option %d: there are %d options ('quarryctl profit options list')", n, len(st.Options))
		}
		return n - 1, nil
	}
	found := -1
	for i, o := range st.Options {
		if o.FlightSheet == key {
			if found >= 0 {
				return 0, fmt.Errorf("option %q: more than one option uses that flight sheet; give its number from 'quarryctl profit options list'", key)
			}
			found = i
		}
	}
	if found < 0 {
		return 0, fmt.Errorf("option %q: no option has that number or flight sheet ('quarryctl profit options list')", key)
	}
	return found, nil
}

// optionFlags are the flags of options add and edit.
type optionFlags struct {
	sheet, coin, algorithm, pool string
	poolFee, minerFee            float64
}

func (f *optionFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.sheet, "flight-sheet", "", "name of a stored flight sheet ('quarryctl flightsheet list')")
	cmd.Flags().StringVar(&f.coin, "coin", "", "coin tag; default the flight sheet's")
	cmd.Flags().StringVar(&f.algorithm, "algorithm", "", "algorithm; default the flight sheet's")
	cmd.Flags().StringVar(&f.pool, "pool", "", "pool's short name; default the host of the sheet's first pool")
	cmd.Flags().Float64Var(&f.poolFee, "pool-fee", 0, "pool fee as a fraction (0.01 = 1%)")
	cmd.Flags().Float64Var(&f.minerFee, "miner-fee", 0, "miner dev fee as a fraction; default the fee the miner is known to keep")
}

// apply sets on o the fields whose flags were given.
func (f *optionFlags) apply(cmd *cobra.Command, o *quarryv1.ProfitOption) {
	ch := cmd.Flags().Changed
	if ch("flight-sheet") {
		o.FlightSheet = f.sheet
	}
	if ch("coin") {
		o.Coin = strings.ToLower(f.coin)
	}
	if ch("algorithm") {
		o.Algorithm = f.algorithm
	}
	if ch("pool") {
		o.Pool = f.pool
	}
	if ch("pool-fee") {
		o.PoolFee = f.poolFee
	}
	if ch("miner-fee") {
		o.MinerFee = proto.Float64(f.minerFee)
	}
}

func (a *App) profitOptionAddCmd() *cobra.Command {
	var f optionFlags
	cmd := &cobra.Command{
		Use:     "add --flight-sheet NAME [--coin C] [--pool P] [--pool-fee F] [--miner-fee F]",
		Short:   "Add an option mined with a stored flight sheet",
		Example: "  quarryctl profit options add --flight-sheet etc-lolminer --pool 2miners --pool-fee 0.01",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.sheet == "" {
				return fmt.Errorf("--flight-sheet is required: the name of a stored flight sheet ('quarryctl flightsheet list')")
			}
			return a.editProfitSettings(cmd.Context(), func(st *quarryv1.ProfitSettings) error {
				o := &quarryv1.ProfitOption{}
				f.apply(cmd, o)
				st.Options = append(st.Options, o)
				return nil
			})
		},
	}
	f.register(cmd)
	return cmd
}

func (a *App) profitOptionEditCmd() *cobra.Command {
	var f optionFlags
	cmd := &cobra.Command{
		Use:     "edit OPTION [--flight-sheet NAME] [--coin C] [--pool P] [--pool-fee F] [--miner-fee F]",
		Short:   "Change an option, by its number in 'options list' or its flight sheet's name; only the flags given change",
		Example: "  quarryctl profit options edit 1 --pool-fee 0.005",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().NFlag() == 0 {
				return fmt.Errorf("nothing to change: give at least one of --flight-sheet, --coin, --algorithm, --pool, --pool-fee, --miner-fee")
			}
			return a.editProfitSettings(cmd.Context(), func(st *quarryv1.ProfitSettings) error {
				i, err := findOption(st, args[0])
				if err != nil {
					return err
				}
				f.apply(cmd, st.Options[i])
				return nil
			})
		},
	}
	f.register(cmd)
	return cmd
}

// ---- sites

func (a *App) profitSitesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sites",
		Short: "List, set and remove sites and their electricity tariffs (USD/kWh)",
		Long: `A site's tariff is a default price in USD/kWh and time-of-use rules, each
pricing the hours FROM-TO (local to the site's time zone; 22-6 crosses
midnight) on every day or on the days given. The first rule that covers
an hour wins. Rigs name their site with the 'site' label or per-rig
settings; rigs without one are at the default site.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the sites and their tariffs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := a.getProfitSettings(cmd.Context())
			if err != nil {
				return err
			}
			return a.render(resp.Settings, func() error { return a.printSites(resp.Settings) })
		},
	}, a.profitSiteSetCmd(), &cobra.Command{
		Use:   "remove SITE",
		Short: "Remove a site's tariff (rigs naming it must be moved first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.editProfitSettings(cmd.Context(), func(st *quarryv1.ProfitSettings) error {
				i := slices.IndexFunc(st.Sites, func(s *quarryv1.ProfitSite) bool { return s.Name == args[0] })
				if i < 0 {
					return fmt.Errorf("site %q: no such site ('quarryctl profit sites list')", args[0])
				}
				st.Sites = slices.Delete(st.Sites, i, i+1)
				return nil
			})
		},
	})
	return cmd
}

var weekdays = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

func (a *App) printSites(st *quarryv1.ProfitSettings) error {
	t := newTable(a.Out, "SITE", "DEFAULT $/KWH", "TIMEZONE", "RULES")
	for _, s := range st.Sites {
		var rules []string
		for _, r := range s.Rules {
			rules = append(rules, formatTariffRule(r))
		}
		name := s.Name
		if name == st.DefaultSite {
			name += " (default)"
		}
		t.row(name, s.DefaultUsdKwh, dash(s.Timezone), dash(strings.Join(rules, " ")))
	}
	if !slices.ContainsFunc(st.Sites, func(s *quarryv1.ProfitSite) bool { return s.Name == st.DefaultSite }) {
		t.row(st.DefaultSite+" (default)", "0 (no tariff set)", "-", "-")
	}
	return t.flush()
}

func formatTariffRule(r *quarryv1.TariffRule) string {
	s := fmt.Sprintf("%d-%d=%g", r.FromHour, r.ToHour, r.PriceUsdKwh)
	if len(r.Days) == 0 {
		return s
	}
	var days []string
	for _, d := range r.Days {
		if d >= 0 && int(d) < len(weekdays) {
			days = append(days, weekdays[d])
		} else {
			days = append(days, strconv.Itoa(int(d)))
		}
	}
	return strings.Join(days, ",") + ":" + s
}

// parseTariffRule reads [DAYS:]FROM-TO=PRICE, DAYS being weekday names
// (mon,tue,…) separated by commas.
func parseTariffRule(s string) (*quarryv1.TariffRule, error) {
	bad := func(why string) error {
		return fmt.Errorf("--rule %q: %s; want [DAYS:]FROM-TO=PRICE, e.g. 22-6=0.07 or sat,sun:0-24=0.05", s, why)
	}
	r := &quarryv1.TariffRule{}
	rest := s
	if days, after, ok := strings.Cut(s, ":"); ok {
		rest = after
		for d := range strings.SplitSeq(days, ",") {
			i := slices.Index(weekdays, strings.ToLower(strings.TrimSpace(d))[:min(3, len(strings.TrimSpace(d)))])
			if i < 0 {
				return nil, bad(fmt.Sprintf("day %q is not a weekday", d))
			}
			r.Days = append(r.Days, int32(i))
		}
	}
	hours, price, ok := strings.Cut(rest, "=")
	if !ok {
		return nil, bad("no price")
	}
	from, to, ok := strings.Cut(hours, "-")
	if !ok {
		return nil, bad("no hours")
	}
	f, err1 := strconv.Atoi(strings.TrimSpace(from))
	t, err2 := strconv.Atoi(strings.TrimSpace(to))
	p, err3 := strconv.ParseFloat(strings.TrimSpace(price), 64)
	if err1 != nil || err2 != nil {
		return nil, bad("hours must be whole numbers")
	}
	if err3 != nil {
		return nil, bad("price must be a number in USD/kWh")
	}
	r.FromHour, r.ToHour, r.PriceUsdKwh = int32(f), int32(t), p
	return r, nil
}

func (a *App) profitSiteSetCmd() *cobra.Command {
	var price float64
	var tz string
	var rules []string
	var clearRules, makeDefault bool
	cmd := &cobra.Command{
		Use:   "set SITE [--default PRICE] [--timezone TZ] [--rule [DAYS:]FROM-TO=PRICE]... [--clear-rules] [--make-default]",
		Short: "Add a site or change its tariff; --rule replaces the site's rules with those given",
		Example: `  quarryctl profit sites set home --default 0.12 --timezone Europe/Berlin --rule 22-6=0.07
  quarryctl profit sites set home --rule mon,tue,wed,thu,fri:17-21=0.30 --rule 22-6=0.07
  quarryctl profit sites set farm --default 0.05 --make-default`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().NFlag() == 0 {
				return fmt.Errorf("nothing to set: give --default, --timezone, --rule, --clear-rules or --make-default")
			}
			if clearRules && len(rules) > 0 {
				return fmt.Errorf("--clear-rules and --rule: give one")
			}
			var parsed []*quarryv1.TariffRule
			for _, s := range rules {
				r, err := parseTariffRule(s)
				if err != nil {
					return err
				}
				parsed = append(parsed, r)
			}
			return a.editProfitSettings(cmd.Context(), func(st *quarryv1.ProfitSettings) error {
				i := slices.IndexFunc(st.Sites, func(s *quarryv1.ProfitSite) bool { return s.Name == args[0] })
				if i < 0 {
					st.Sites = append(st.Sites, &quarryv1.ProfitSite{Name: args[0]})
					i = len(st.Sites) - 1
				}
				s := st.Sites[i]
				if cmd.Flags().Changed("default") {
					s.DefaultUsdKwh = price
				}
				if cmd.Flags().Changed("timezone") {
					s.Timezone = tz
				}
				if len(parsed) > 0 || clearRules {
					s.Rules = parsed
				}
				if makeDefault {
					st.DefaultSite = s.Name
				}
				return nil
			})
		},
	}
	cmd.Flags().Float64Var(&price, "default", 0, "price in USD/kWh at hours no rule covers")
	cmd.Flags().StringVar(&tz, "timezone", "", "the site's time zone (IANA name, e.g. Europe/Berlin); empty is UTC")
	cmd.Flags().StringArrayVar(&rules, "rule", nil, "[DAYS:]FROM-TO=PRICE, repeatable; replaces the site's rules")
	cmd.Flags().BoolVar(&clearRules, "clear-rules", false, "remove the site's time-of-use rules")
	cmd.Flags().BoolVar(&makeDefault, "make-default", false, "make this the site of rigs that name none")
	return cmd
}

// ---- rules

func (a *App) profitRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Pin rigs to a coin or exclude coins, pools or algorithms, fleet-wide or per rig",
		Long: `Rules restrict what the profit switcher may move rigs to. A pin forces one
coin; exclusions remove coins (or, with --pool or --algorithm, pools and
algorithms). Without --rig a rule applies to the whole fleet; a rig's own
pin wins over the fleet's, and exclusions add up.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := a.getProfitSettings(cmd.Context())
			if err != nil {
				return err
			}
			return a.render(resp.Settings, func() error { return a.printRules(resp.Settings) })
		},
	}
	var rig string
	var pool, algo bool
	// rulesOf returns the rules the command edits, creating the rig's
	// entry when needed.
	rulesOf := func(st *quarryv1.ProfitSettings) *quarryv1.ProfitRules {
		if rig == "" {
			if st.Rules == nil {
				st.Rules = &quarryv1.ProfitRules{}
			}
			return st.Rules
		}
		i := slices.IndexFunc(st.Rigs, func(r *quarryv1.RigProfitSettings) bool { return r.Rig == rig })
		if i < 0 {
			st.Rigs = append(st.Rigs, &quarryv1.RigProfitSettings{Rig: rig})
			i = len(st.Rigs) - 1
		}
		if st.Rigs[i].Rules == nil {
			st.Rigs[i].Rules = &quarryv1.ProfitRules{}
		}
		return st.Rigs[i].Rules
	}
	// tidy drops a rig entry left with nothing in it.
	tidy := func(st *quarryv1.ProfitSettings) {
		st.Rigs = slices.DeleteFunc(st.Rigs, func(r *quarryv1.RigProfitSettings) bool {
			return r.Site == "" && len(r.Profile) == 0 && (r.Rules == nil || proto.Equal(r.Rules, &quarryv1.ProfitRules{}))
		})
	}
	listOf := func(r *quarryv1.ProfitRules) (*[]string, string) {
		switch {
		case pool:
			return &r.ExcludePools, "pool"
		case algo:
			return &r.ExcludeAlgorithms, "algorithm"
		}
		return &r.ExcludeCoins, "coin"
	}
	scope := func() string {
		if rig == "" {
			return "fleet"
		}
		return "rig " + rig
	}
	mk := func(use, short string, args cobra.PositionalArgs, edit func(r *quarryv1.ProfitRules, args []string) error) *cobra.Command {
		c := &cobra.Command{
			Use: use, Short: short, Args: args,
			RunE: func(cmd *cobra.Command, args []string) error {
				if pool && algo {
					return fmt.Errorf("--pool and --algorithm: give one")
				}
				return a.editProfitSettings(cmd.Context(), func(st *quarryv1.ProfitSettings) error {
					if err := edit(rulesOf(st), args); err != nil {
						return err
					}
					tidy(st)
					return nil
				})
			},
		}
		c.Flags().StringVar(&rig, "rig", "", "the rig (id or name) the rule is for; default the whole fleet")
		return c
	}
	pin := mk("pin [--rig R] COIN", "Pin the fleet or a rig to a coin", cobra.ExactArgs(1), func(r *quarryv1.ProfitRules, args []string) error {
		r.Pin = strings.ToLower(args[0])
		return nil
	})
	unpin := mk("unpin [--rig R]", "Remove the fleet's or a rig's pin", cobra.NoArgs, func(r *quarryv1.ProfitRules, _ []string) error {
		if r.Pin == "" {
			return fmt.Errorf("%s has no pin", scope())
		}
		r.Pin = ""
		return nil
	})
	exclude := mk("exclude [--rig R] [--pool|--algorithm] NAME", "Exclude a coin (or a pool or algorithm) for the fleet or a rig", cobra.ExactArgs(1), func(r *quarryv1.ProfitRules, args []string) error {
		l, what := listOf(r)
		name := args[0]
		if what == "coin" {
			name = strings.ToLower(name)
		}
		if slices.Contains(*l, name) {
			return fmt.Errorf("%s %s is already excluded for the %s", what, name, scope())
		}
		*l = append(*l, name)
		return nil
	})
	include := mk("include [--rig R] [--pool|--algorithm] NAME", "Remove an exclusion of a coin (or a pool or algorithm)", cobra.ExactArgs(1), func(r *quarryv1.ProfitRules, args []string) error {
		l, what := listOf(r)
		name := args[0]
		if what == "coin" {
			name = strings.ToLower(name)
		}
		i := slices.Index(*l, name)
		if i < 0 {
			return fmt.Errorf("%s %s is not excluded for the %s", what, name, scope())
		}
		*l = slices.Delete(*l, i, i+1)
		return nil
	})
	for _, c := range []*cobra.Command{exclude, include} {
		c.Flags().BoolVar(&pool, "pool", false, "NAME is a pool's short name")
		c.Flags().BoolVar(&algo, "algorithm", false, "NAME is an algorithm")
	}
	cmd.AddCommand(pin, unpin, exclude, include)
	return cmd
}

func (a *App) printRules(st *quarryv1.ProfitSettings) error {
	t := newTable(a.Out, "SCOPE", "SITE", "PIN", "EXCLUDED", "PROFILE")
	row := func(scope, site string, r *quarryv1.ProfitRules, profile []*quarryv1.PerfInput) {
		var excl []string
		var pin string
		if r != nil {
			pin = r.Pin
			for _, x := range []struct {
				what string
				l    []string
			}{{"coin", r.ExcludeCoins}, {"pool", r.ExcludePools}, {"algorithm", r.ExcludeAlgorithms}} {
				for _, n := range x.l {
					excl = append(excl, x.what+" "+n)
				}
			}
		}
		var prof []string
		for _, p := range profile {
			prof = append(prof, fmt.Sprintf("%s %s@%.0fW", p.Algorithm, HashrateHuman(p.Hashrate), p.PowerW))
		}
		t.row(scope, dash(site), dash(pin), dash(strings.Join(excl, ", ")), dash(strings.Join(prof, ", ")))
	}
	row("fleet", "", st.Rules, nil)
	for _, r := range st.Rigs {
		row("rig "+r.Rig, r.Site, r.Rules, r.Profile)
	}
	return t.flush()
}

// ---- policy

func (a *App) profitPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Show or set the switching thresholds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := a.getProfitSettings(cmd.Context())
			if err != nil {
				return err
			}
			return a.render(resp.Settings.GetPolicy(), func() error { return a.printPolicy(resp.Settings.GetPolicy()) })
		},
	}
	var rel, abs, curtail, smoothing float64
	var dwell, downtime time.Duration
	set := &cobra.Command{
		Use:   "set [--relative-threshold F] [--absolute-threshold USD] [--min-dwell D] [--switch-downtime D] [--curtail-below USD] [--smoothing F]",
		Short: "Change switching thresholds; only the flags given change",
		Example: `  quarryctl profit policy set --relative-threshold 0.08 --min-dwell 45m
  quarryctl profit policy set --absolute-threshold 0.25`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().NFlag() == 0 {
				return fmt.Errorf("nothing to set: give at least one threshold flag (see --help)")
			}
			return a.editProfitSettings(cmd.Context(), func(st *quarryv1.ProfitSettings) error {
				p, ch := st.Policy, cmd.Flags().Changed
				if ch("relative-threshold") {
					p.RelativeThreshold = rel
				}
				if ch("absolute-threshold") {
					p.AbsoluteThresholdUsdDay = abs
				}
				if ch("min-dwell") {
					p.MinDwellSeconds = dwell.Seconds()
				}
				if ch("switch-downtime") {
					p.SwitchDowntimeSeconds = downtime.Seconds()
				}
				if ch("curtail-below") {
					p.CurtailBelowUsdDay = curtail
				}
				if ch("smoothing") {
					p.Smoothing = smoothing
				}
				return nil
			})
		},
	}
	set.Flags().Float64Var(&rel, "relative-threshold", 0, "fraction by which the best option must beat the current one (0.05 = 5%)")
	set.Flags().Float64Var(&abs, "absolute-threshold", 0, "least gain in USD/day worth a switch")
	set.Flags().DurationVar(&dwell, "min-dwell", 0, "how long a rig stays on an option before the policy moves it again")
	set.Flags().DurationVar(&downtime, "switch-downtime", 0, "time a switch earns nothing (miner restart, DAG build)")
	set.Flags().Float64Var(&curtail, "curtail-below", 0, "profit in USD/day under which a rig stops mining")
	set.Flags().Float64Var(&smoothing, "smoothing", 0, "weight of the newest observation in profit estimates, in (0,1]")
	cmd.AddCommand(set)
	return cmd
}

func (a *App) printPolicy(p *quarryv1.ProfitPolicy) error {
	if p == nil {
		p = &quarryv1.ProfitPolicy{}
	}
	t := newTable(a.Out)
	sec := func(s float64) string { return time.Duration(s * float64(time.Second)).String() }
	t.row("relative threshold", pct(p.RelativeThreshold))
	t.row("absolute threshold", "$"+usd(p.AbsoluteThresholdUsdDay)+"/day")
	t.row("min dwell", sec(p.MinDwellSeconds))
	t.row("switch downtime", sec(p.SwitchDowntimeSeconds))
	t.row("curtail below", "$"+usd(p.CurtailBelowUsdDay)+"/day")
	t.row("smoothing", p.Smoothing)
	return t.flush()
}
