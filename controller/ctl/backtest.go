package ctl

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/quarryfleet/quarry/pkg/backtest"
	"github.com/quarryfleet/quarry/pkg/profit"
)

const backtestLong = `Replay daily market history against rig profiles, locally (no controller
needed), and compare the switching policy with a hindsight oracle, the best
single coin held throughout, and greedy daily switching. Prints per rig and
in total: each strategy's profit in USD, switches per rig-day and days off.

--history is a CSV in the Coin Metrics daily format, one row per coin per
UTC day, sorted by date, with this header:

  date,tag,algorithm,block_time_s,block_reward,difficulty,nethash_hs,price_usd
  2019-06-01,etc,Ethash,14.159,4.0086,130547316068300,9.2199e+12,8.5845

  date          UTC day, YYYY-MM-DD
  tag           coin ticker (lower case)
  algorithm     PoW algorithm that day (Ethash, Equihash_144_5, RandomX, ...)
  block_time_s  mean seconds per block that day
  block_reward  coins paid to miners per block, fees included
  difficulty    mean block difficulty (native units)
  nethash_hs    network hash rate in H/s (Sol/s for Equihash); may be empty
                only for Grin's Cuckatoo31, which is priced from difficulty
  price_usd     USD per coin that day

A damaged file (a bad number, a repeated date and coin, rows out of order)
is refused with every bad line named. --rigs is a YAML or JSON file with a
list under "rigs": name, site, electricity_usd_kwh (or tariff), pool_fee and
algorithms: {ALGO: {hashrate: H/s, power: W}}; see pkg/backtest/testdata/rigs.yaml.

The policy starts from the defaults; --policy FILE (YAML: relative_threshold,
absolute_threshold, min_dwell, switch_downtime, curtail_below, smoothing)
replaces them, and the flags below override single fields.`

func (a *App) backtestCmd() *cobra.Command {
	var historyPath, rigsPath, policyPath string
	var progress bool
	var rel, abs, curtail, smoothing float64
	var dwell, downtime time.Duration
	cmd := &cobra.Command{
		Use:   "backtest --history FILE --rigs FILE",
		Short: "Replay market history: switching policy vs oracle, best single coin and greedy",
		Long:  backtestLong,
		Example: `  quarryctl backtest --history coinmetrics-daily.csv --rigs rigs.yaml
  quarryctl backtest --history coinmetrics-daily.csv --rigs rigs.yaml --threshold 0.10 --abs 0.5 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.Opts.Output != "table" && a.Opts.Output != "json" {
				return fmt.Errorf("--output %q: want table or json", a.Opts.Output)
			}
			if historyPath == "" || rigsPath == "" {
				return fmt.Errorf("--history and --rigs are required")
			}
			policy := profit.DefaultPolicy()
			if policyPath != "" {
				b, err := os.ReadFile(policyPath)
				if err != nil {
					return fmt.Errorf("--policy: %w", err)
				}
				dec := yaml.NewDecoder(bytes.NewReader(b))
				dec.KnownFields(true)
				if err := dec.Decode(&policy); err != nil && err != io.EOF {
					return fmt.Errorf("--policy %s: %w", policyPath, err)
				}
			}
			fl := cmd.Flags()
			if fl.Changed("threshold") {
				policy.RelativeThreshold = rel
			}
			if fl.Changed("abs") {
				policy.AbsoluteThreshold = abs
			}
			if fl.Changed("dwell") {
				policy.MinDwell = dwell
			}
			if fl.Changed("downtime") {
				policy.SwitchDowntime = downtime
			}
			if fl.Changed("curtail-below") {
				policy.CurtailBelow = curtail
			}
			if fl.Changed("smoothing") {
				policy.Smoothing = smoothing
			}
			if err := policy.Validate(); err != nil {
				return err
			}
			hist, err := backtest.LoadFile(historyPath)
			if err != nil {
				return fmt.Errorf("--history: %w", err)
			}
			rigs, err := backtest.LoadRigs(rigsPath)
			if err != nil {
				return fmt.Errorf("--rigs: %w", err)
			}
			var bar backtest.Progress
			if progress || isTerminal(a.Err) {
				bar = progressBar(a.Err)
			}
			rep, err := backtest.Run(cmd.Context(), hist, rigs, policy, bar)
			if err != nil {
				return err
			}
			if a.Opts.Output == "json" {
				return rep.WriteJSON(a.Out)
			}
			return rep.WriteText(a.Out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&historyPath, "history", "", "market history CSV (Coin Metrics daily format, see above)")
	f.StringVar(&rigsPath, "rigs", "", "rig profiles, YAML or JSON")
	f.StringVar(&policyPath, "policy", "", "switching policy, YAML")
	f.Float64Var(&rel, "threshold", 0, "relative gain needed to switch, a fraction (0.05 = 5 %)")
	f.Float64Var(&abs, "abs", 0, "absolute gain needed to switch, USD/day")
	f.DurationVar(&dwell, "dwell", 0, "minimum time on an option before moving again")
	f.DurationVar(&downtime, "downtime", 0, "expected time a switch earns nothing")
	f.Float64Var(&curtail, "curtail-below", 0, "stop mining when the best option makes less, USD/day")
	f.Float64Var(&smoothing, "smoothing", 0, "weight of the newest day in the profit estimate, (0,1]")
	f.BoolVar(&progress, "progress", false, "show a progress bar on stderr even when it is not a terminal")
	return cmd
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressBar draws "[#####     ] 3/6 rigs" on one line, redrawn in place,
// and ends the line when done.
func progressBar(w io.Writer) backtest.Progress {
	const width = 30
	return func(done, total int) {
		if total <= 0 {
			return
		}
		n := done * width / total
		fmt.Fprintf(w, "\r[%s%s] %d/%d rigs", strings.Repeat("#", n), strings.Repeat(" ", width-n), done, total)
		if done == total {
			fmt.Fprintln(w)
		}
	}
}
