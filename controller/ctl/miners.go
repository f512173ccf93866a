package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func readSheetFile(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("-f: flight sheet file is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-f: %w", err)
	}
	return b, nil
}

func (a *App) flightSheetCmd() *cobra.Command {
	fsCmd := &cobra.Command{Use: "flightsheet", Aliases: []string{"fs"}, Short: "Store flight sheets and apply them to rigs"}
	fsCmd.AddCommand(a.flightSheetApplyCmd(), a.flightSheetPutCmd(), a.flightSheetListCmd(), a.flightSheetShowCmd(), a.flightSheetDeleteCmd())
	return fsCmd
}

func (a *App) flightSheetApplyCmd() *cobra.Command {
	var file, rigs string
	var wait bool
	var ttl time.Duration
	apply := &cobra.Command{
		Use:   "apply -f FILE --rigs SELECTOR",
		Short: "Store a flight sheet and send it to every rig the selector matches",
		Long: `Stores the flight sheet, then queues it to each rig the selector matches.
A selector is comma-separated terms that must all match: a rig's name or id
(a bare word, as 'rig show' takes it), name=GLOB, tag=GLOB (a rig's labels
are offered as "key" and "key=value"), gpu=MODEL. An empty selector matches
every rig. Rigs refuse a sheet whose miner binary does not match its sha256.`,
		Example: "  quarryctl flightsheet apply -f rvn.yaml --rigs 'name=rig-*,gpu=RTX 3070'\n" +
			"  quarryctl flightsheet apply -f xmr.yaml --rigs rig-07",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := readSheetFile(file)
			if err != nil {
				return err
			}
			if wait {
				// The rig answers once the miner has settled and its
				// API answered (up to the agent's apply_api_wait).
				a.Opts.Timeout = max(a.Opts.Timeout, 2*time.Minute)
			}
			return a.callConn(cmd.Context(), func(ctx context.Context, conn grpc.ClientConnInterface) error {
				resp, err := quarryv1.NewMinerServiceClient(conn).ApplyFlightSheet(ctx, &quarryv1.ApplyFlightSheetRequest{
					Yaml: b, Selector: rigs, TtlSeconds: int64(ttl / time.Second),
				})
				if err != nil {
					return err
				}
				if a.Opts.Output == "json" && !wait {
					return a.json(resp)
				}
				fmt.Fprintf(a.Out, "flight sheet %s sent to %d rig(s):\n", resp.Sheet.Name, len(resp.Rigs))
				t := newTable(a.Out, "RIG", "NAME", "COMMAND", "STATUS")
				for _, r := range resp.Rigs {
					st := "queued (rig offline)"
					if r.Online {
						st = "sent"
					}
					t.row(r.RigId, r.RigName, r.CommandId, st)
				}
				if err := t.flush(); err != nil || !wait {
					return err
				}
				return a.waitApplied(ctx, quarryv1.NewFleetServiceClient(conn), resp.Rigs)
			})
		},
	}
	apply.Flags().StringVarP(&file, "file", "f", "", "flight sheet YAML file")
	apply.Flags().StringVar(&rigs, "rigs", "", "which rigs: a rig name or id, or a selector such as 'name=rig-*,tag=site=a' (empty: every rig)")
	apply.Flags().BoolVar(&wait, "wait", false, "wait for each rig's result")
	apply.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the command waits for an offline rig")
	_ = apply.MarkFlagFilename("file", "yaml", "yml")
	return apply
}

// waitApplied waits for each rig's answer to an applied flight sheet and
// prints it; it fails when any rig refused the sheet.
func (a *App) waitApplied(ctx context.Context, c quarryv1.FleetServiceClient, rigs []*quarryv1.AppliedRig) error {
	var errs []error
	for _, r := range rigs {
		rec, err := waitRecord(ctx, c, r.CommandId)
		if err != nil {
			return err
		}
		switch rec.Status {
		case quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED:
			fmt.Fprintf(a.Out, "%s: %s\n", r.RigName, strings.TrimSpace(string(rec.Output)))
		case quarryv1.CommandStatus_COMMAND_STATUS_FAILED, quarryv1.CommandStatus_COMMAND_STATUS_EXPIRED:
			fmt.Fprintf(a.Out, "%s: FAILED: %s\n", r.RigName, rec.Error)
			if out := strings.TrimSpace(string(rec.Output)); out != "" {
				// The miner's last output (operators only).
				fmt.Fprintf(a.Out, "%s: last miner output:\n  %s\n", r.RigName, strings.ReplaceAll(out, "\n", "\n  "))
			}
			errs = append(errs, fmt.Errorf("rig %s: %s", r.RigName, rec.Error))
		default:
			fmt.Fprintf(a.Out, "%s: still %s\n", r.RigName, statusWord(rec.Status))
		}
	}
	return errors.Join(errs...)
}

func (a *App) flightSheetPutCmd() *cobra.Command {
	var file string
	put := &cobra.Command{
		Use:   "put -f FILE",
		Short: "Store a flight sheet without applying it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := readSheetFile(file)
			if err != nil {
				return err
			}
			resp, err := fetch(a, cmd.Context(), quarryv1.NewMinerServiceClient, quarryv1.MinerServiceClient.PutFlightSheet, &quarryv1.PutFlightSheetRequest{Yaml: b})
			if err != nil {
				return err
			}
			return a.renderDone(resp, "stored flight sheet %s (%s %s with %s)", resp.Sheet.Name, resp.Sheet.Coin, resp.Sheet.Algorithm, resp.Sheet.Miner)
		},
	}
	put.Flags().StringVarP(&file, "file", "f", "", "flight sheet YAML file")
	return put
}

func (a *App) flightSheetListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List stored flight sheets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewMinerServiceClient, quarryv1.MinerServiceClient.ListFlightSheets, &quarryv1.ListFlightSheetsRequest{})
			if err != nil {
				return err
			}
			now := time.Now()
			return a.renderTable(resp, []string{"NAME", "COIN", "ALGORITHM", "MINER", "POOLS", "UPDATED", "BY"}, func(t *table) {
				for _, s := range resp.Sheets {
					t.row(s.Name, s.Coin, s.Algorithm, s.Miner, s.Pools, ago(s.UpdatedUnixNano, now), s.UpdatedBy)
				}
			})
		},
	}
}

func (a *App) flightSheetShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Print a stored flight sheet",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewMinerServiceClient, quarryv1.MinerServiceClient.GetFlightSheet, &quarryv1.GetFlightSheetRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return a.render(resp, func() error {
				_, err := fmt.Fprintf(a.Out, "# %s, updated %s by %s\n%s", resp.Sheet.Name, time.Unix(0, resp.Sheet.UpdatedUnixNano).Format(time.DateTime), resp.Sheet.UpdatedBy, resp.Sheet.Yaml)
				return err
			})
		},
	}
}

func (a *App) flightSheetDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a stored flight sheet (rigs mining it keep mining)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := fetch(a, cmd.Context(), quarryv1.NewMinerServiceClient, quarryv1.MinerServiceClient.DeleteFlightSheet, &quarryv1.DeleteFlightSheetRequest{Name: args[0]}); err != nil {
				return err
			}
			fmt.Fprintln(a.Out, "deleted", args[0])
			return nil
		},
	}
}

func statusWord(s quarryv1.CommandStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "COMMAND_STATUS_"))
}

// waitRecord polls a command until it ends or ctx does; on ctx's end it
// returns the last record seen.
func waitRecord(ctx context.Context, c quarryv1.FleetServiceClient, id string) (*quarryv1.CommandRecord, error) {
	var last *quarryv1.CommandRecord
	for {
		resp, err := c.GetCommand(ctx, &quarryv1.GetCommandRequest{CommandId: id})
		if err != nil {
			if last != nil && ctx.Err() != nil {
				return last, nil
			}
			return nil, err
		}
		last = resp.Record
		switch last.Status {
		case quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, quarryv1.CommandStatus_COMMAND_STATUS_FAILED, quarryv1.CommandStatus_COMMAND_STATUS_EXPIRED:
			return last, nil
		}
		select {
		case <-ctx.Done():
			return last, nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (a *App) rigLogsCmd() *cobra.Command {
	var n uint32
	cmd := &cobra.Command{
		Use:               "logs RIG",
		Short:             "Show the last lines the rig's miner printed",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRigs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewMinerServiceClient, quarryv1.MinerServiceClient.GetRigLogs, &quarryv1.GetRigLogsRequest{Rig: args[0], Lines: n})
			if err != nil {
				return err
			}
			return a.render(resp, func() error {
				for _, l := range resp.Lines {
					fmt.Fprintln(a.Out, l)
				}
				return nil
			})
		},
	}
	cmd.Flags().Uint32VarP(&n, "lines", "n", 100, "how many lines")
	return cmd
}

func (a *App) rigBenchmarkCmd() *cobra.Command {
	var algos, sheets []string
	var d time.Duration
	var wait bool
	cmd := &cobra.Command{
		Use:   "benchmark RIG --algos A,B [--duration 2m]",
		Short: "Measure a rig's hashrate and power for each algorithm",
		Long: `Runs each algorithm on the rig for the duration, with a stored flight sheet
of that algorithm (or the sheets named by --sheets), then puts the rig back to
what it mined before. The results become the rig's figures for the profit
engine; live reports refine them afterwards.`,
		Example:           "  quarryctl rig benchmark rig-01 --algos kawpow,etchash --duration 2m",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRigs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(algos) == 0 && len(sheets) == 0 {
				return errors.New("--algos or --sheets is required")
			}
			if wait {
				runs := max(len(algos), len(sheets))
				a.Opts.Timeout = max(a.Opts.Timeout, d*time.Duration(runs)+2*time.Minute)
			}
			return a.callConn(cmd.Context(), func(ctx context.Context, conn grpc.ClientConnInterface) error {
				resp, err := quarryv1.NewMinerServiceClient(conn).RunBenchmark(ctx, &quarryv1.RunBenchmarkRequest{
					Rig: args[0], Algorithms: algos, Sheets: sheets, DurationSeconds: int64(d / time.Second),
				})
				if err != nil {
					return err
				}
				if !wait {
					return a.renderDone(resp, "%s queued: %s", resp.CommandId, strings.Join(resp.Sheets, ", "))
				}
				fmt.Fprintf(a.Err, "benchmarking %s with %s, %s each\n", args[0], strings.Join(resp.Sheets, ", "), d)
				rec, err := waitRecord(ctx, quarryv1.NewFleetServiceClient(conn), resp.CommandId)
				if err != nil {
					return err
				}
				if a.Opts.Output == "json" {
					return a.json(rec)
				}
				return a.printBenchmark(resp.CommandId, rec)
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&algos, "algos", nil, "algorithms to measure, comma-separated")
	f.StringSliceVar(&sheets, "sheets", nil, "stored flight sheets to measure with (default: one per algorithm)")
	f.DurationVar(&d, "duration", 2*time.Minute, "how long to mine each algorithm")
	f.BoolVar(&wait, "wait", true, "wait for the results")
	return cmd
}

// printBenchmark writes the results a rig's benchmark command returned;
// it fails unless the command succeeded.
func (a *App) printBenchmark(id string, rec *quarryv1.CommandRecord) error {
	var res []struct {
		Algorithm  string   `json:"algorithm"`
		Sheet      string   `json:"sheet"`
		HashrateHs float64  `json:"hashrate_hs"`
		PowerW     *float64 `json:"power_w"`
		Samples    int      `json:"samples"`
		Error      string   `json:"error"`
	}
	if len(rec.Output) > 0 {
		if err := json.Unmarshal(rec.Output, &res); err != nil {
			return fmt.Errorf("benchmark output: %w", err)
		}
	}
	t := newTable(a.Out, "ALGORITHM", "SHEET", "HASHRATE", "POWER", "READINGS", "ERROR")
	for _, r := range res {
		t.row(r.Algorithm, r.Sheet, HashrateHuman(r.HashrateHs), optF(r.PowerW, "%.0f W"), r.Samples, r.Error)
	}
	_ = t.flush()
	if rec.Status != quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
		return fmt.Errorf("%s %s: %s", id, statusWord(rec.Status), rec.Error)
	}
	return nil
}

func (a *App) rigBenchmarksCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "benchmarks [RIG]",
		Short:             "Show the hashrate and power known per algorithm (all rigs without RIG)",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completeRigs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &quarryv1.ListBenchmarksRequest{}
			if len(args) == 1 {
				req.Rig = args[0]
			}
			resp, err := fetch(a, cmd.Context(), quarryv1.NewMinerServiceClient, quarryv1.MinerServiceClient.ListBenchmarks, req)
			if err != nil {
				return err
			}
			now := time.Now()
			return a.renderTable(resp, []string{"RIG", "ALGORITHM", "HASHRATE", "POWER", "SOURCE", "SAMPLES", "UPDATED"}, func(t *table) {
				for _, b := range resp.Benchmarks {
					power := "-"
					if b.PowerW > 0 {
						power = fmt.Sprintf("%.0f W", b.PowerW)
					}
					t.row(b.RigId, b.Algorithm, HashrateHuman(b.Hashrate), power, b.Source, b.Samples, ago(b.UpdatedUnixNano, now))
				}
			})
		},
	}
}

func (a *App) rigEventsCmd() *cobra.Command {
	var n uint32
	cmd := &cobra.Command{
		Use:               "events RIG",
		Short:             "Show a rig's recent miner, watchdog and agent events",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRigs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewMinerServiceClient, quarryv1.MinerServiceClient.ListEvents, &quarryv1.ListEventsRequest{Rig: args[0], Limit: n})
			if err != nil {
				return err
			}
			return a.renderTable(resp, []string{"TIME", "KIND", "MESSAGE"}, func(t *table) {
				for _, e := range resp.Events {
					t.row(time.Unix(0, e.TimeUnixNano).Format(time.DateTime), e.Kind, e.Message)
				}
			})
		},
	}
	cmd.Flags().Uint32VarP(&n, "limit", "n", 0, "newest events only (0: all kept)")
	return cmd
}

// MinerHashrate is a miner's hashrate for text output; an unknown one says
// why ("— (api-unreachable)") instead of showing zero.
func MinerHashrate(m *quarryv1.MinerStats) string {
	if m.HashrateKnown() {
		return HashrateHuman(m.Hashrate)
	}
	why := m.GetState()
	if why == "" {
		why = "no reading"
	}
	return "— (" + why + ")"
}
