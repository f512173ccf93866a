package ctl

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/pkg/pki"
	"github.com/quarryfleet/quarry/pkg/redact"
	"github.com/quarryfleet/quarry/pkg/termsafe"
	"github.com/quarryfleet/quarry/pkg/version"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Main runs quarryctl and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		// Errors can quote what a rig said (a command's error, a name).
		fmt.Fprintln(stderr, "quarryctl:", termsafe.Text(err.Error()))
		return 1
	}
	return 0
}

// App holds the global options and output streams for every command.
type App struct {
	Opts Options
	Out  io.Writer
	Err  io.Writer
}

// NewRoot builds the command tree.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	app := &App{}
	// Everything printed for people passes through the terminal filter,
	// whichever command prints it; JSON output is left to its encoder.
	app.Out = termsafe.NewWriter(stdout, func() bool { return app.Opts.Output != "json" })
	app.Err = termsafe.NewWriter(stderr, nil)
	stdout, stderr = app.Out, app.Err
	root := &cobra.Command{
		Use:           "quarryctl",
		Short:         "Administer a Quarry mining fleet",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringSliceVar(&app.Opts.Controllers, "controller", splitAddrs([]string{os.Getenv("QUARRY_CONTROLLER")}),
		"controller gRPC address host:port; several, comma-separated or repeated, are tried in order until one serves, "+
			"and a standby's leader hint is followed only to one of them (env QUARRY_CONTROLLER; default 127.0.0.1:7443)")
	pf.StringVar(&app.Opts.Token, "token", os.Getenv("QUARRY_TOKEN"), "admin bearer token (env QUARRY_TOKEN)")
	pf.StringVar(&app.Opts.CAFile, "ca", os.Getenv("QUARRY_CA"), "controller CA certificate file (env QUARRY_CA)")
	pf.StringVar(&app.Opts.DataDir, "data-dir", "./quarry-data", "a local controller's data dir, where credentials are found with no login")
	pf.StringVar(&app.Opts.ConfigPath, "config", DefaultConfigPath(), "quarryctl credential file written by login")
	pf.StringVarP(&app.Opts.Output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&app.Opts.Timeout, "timeout", 10*time.Second, "how long to wait for the controller")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))

	root.AddCommand(app.versionCmd(), app.rigsCmd(), app.rigCmd(), app.tokenCmd(), app.auditCmd(), app.loginCmd(), app.whoamiCmd())
	root.AddCommand(app.jobCmd())
	root.AddCommand(app.customerCmd(), app.planCmd(), app.billingCmd())
	root.AddCommand(app.profitCmd(), app.marketCmd(), app.backtestCmd())
	root.AddCommand(app.flightSheetCmd(), app.fleetCmd(), app.gossipCmd(), app.operatorCmd())
	root.AddCommand(app.minerCmd(), app.alertsCmd())
	return root
}

// call runs fn with a connected client and a deadline.
func (a *App) call(ctx context.Context, fn func(ctx context.Context, c quarryv1.FleetServiceClient) error) error {
	return a.callConn(ctx, func(ctx context.Context, conn grpc.ClientConnInterface) error {
		return fn(ctx, quarryv1.NewFleetServiceClient(conn))
	})
}

// callConn is call for services other than FleetService: build the
// client you need from conn (e.g. quarryv1.NewProfitServiceClient(conn)).
// fn may run more than once, against each controller in turn, until one
// serves it (see withController).
func (a *App) callConn(ctx context.Context, fn func(ctx context.Context, conn grpc.ClientConnInterface) error) error {
	if a.Opts.Output != "table" && a.Opts.Output != "json" {
		return fmt.Errorf("--output %q: want table or json", a.Opts.Output)
	}
	return a.Opts.withController(ctx, a.Opts.Timeout, fn)
}

func (a *App) json(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: false}.Marshal(m)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.Out, string(b))
	return nil
}

func (a *App) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print quarryctl's version and, if reachable, the controller's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(a.Out, "quarryctl", version.Version)
			v, err := fetch(a, cmd.Context(), quarryv1.NewFleetServiceClient, quarryv1.FleetServiceClient.GetVersion, &quarryv1.GetVersionRequest{})
			if err != nil {
				fmt.Fprintln(a.Err, "controller: unknown:", err)
				return nil
			}
			fmt.Fprintln(a.Out, "controller", v.Version)
			return nil
		},
	}
}

func ago(unixNano int64, now time.Time) string {
	if unixNano == 0 {
		return "never"
	}
	d := now.Sub(time.Unix(0, unixNano)).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

func bytesHuman(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func rigStatus(r *quarryv1.Rig) string {
	switch {
	case r.Revoked:
		return "revoked"
	case r.Online:
		return "online" + gossipDisagreement(r)
	}
	return "offline" + gossipDisagreement(r)
}

func (a *App) rigsCmd() *cobra.Command {
	rigs := &cobra.Command{Use: "rigs", Short: "Work with the list of rigs"}
	rigs.AddCommand(a.rigsListCmd())
	return rigs
}

func (a *App) rigsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List rigs with their status and basic figures",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var rigs []*quarryv1.Rig
			err := a.call(cmd.Context(), func(ctx context.Context, c quarryv1.FleetServiceClient) error {
				var err error
				rigs, err = listRigs(ctx, c)
				return err
			})
			if err != nil {
				return err
			}
			now := time.Now()
			return a.renderTable(&quarryv1.ListRigsResponse{Rigs: rigs}, []string{"RIG", "NAME", "HOSTNAME", "STATUS", "GOSSIP", "LAST SEEN", "CPU", "MEMORY"}, func(t *table) {
				for _, r := range rigs {
					cpu, memory := "-", "-"
					if h := r.Host; h != nil {
						cpu = fmt.Sprintf("%.0f%%", h.CpuPercent)
						if h.MemoryTotalBytes > 0 {
							memory = fmt.Sprintf("%s/%s", bytesHuman(h.MemoryUsedBytes), bytesHuman(h.MemoryTotalBytes))
						}
					}
					t.row(r.Id, r.Name, r.Hostname, rigStatus(r), dash(r.GossipStatus), ago(r.LastSeenUnixNano, now), cpu, memory)
				}
			})
		},
	}
}

// listRigs pages through ListRigs: each answer is bounded by the
// controller, so a fleet of any size lists without hitting message limits.
func listRigs(ctx context.Context, c quarryv1.FleetServiceClient) ([]*quarryv1.Rig, error) {
	var out []*quarryv1.Rig
	req := &quarryv1.ListRigsRequest{}
	for {
		resp, err := c.ListRigs(ctx, req)
		if err != nil {
			return nil, err
		}
		out = append(out, resp.Rigs...)
		if resp.NextPageToken == "" || len(resp.Rigs) == 0 {
			return out, nil
		}
		req.PageToken = resp.NextPageToken
	}
}

func (a *App) completeRigs(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	_ = a.call(cmd.Context(), func(ctx context.Context, c quarryv1.FleetServiceClient) error {
		rigs, err := listRigs(ctx, c)
		if err != nil {
			return err
		}
		for _, r := range rigs {
			names = append(names, r.Id+"\t"+r.Name)
		}
		return nil
	})
	return names, cobra.ShellCompDirectiveNoFileComp
}

// commandKinds maps the CLI's words to command kinds.
var commandKinds = map[string]quarryv1.CommandKind{
	"ping":          quarryv1.CommandKind_COMMAND_KIND_PING,
	"restart-miner": quarryv1.CommandKind_COMMAND_KIND_RESTART_MINER,
	"stop-miner":    quarryv1.CommandKind_COMMAND_KIND_STOP_MINER,
	"reboot":        quarryv1.CommandKind_COMMAND_KIND_REBOOT,
	"pause":         quarryv1.CommandKind_COMMAND_KIND_PAUSE,
	"resume":        quarryv1.CommandKind_COMMAND_KIND_RESUME,
}

func commandWords() []string {
	w := make([]string, 0, len(commandKinds))
	for k := range commandKinds {
		w = append(w, k)
	}
	sort.Strings(w)
	return w
}

func (a *App) rigCmd() *cobra.Command {
	rig := &cobra.Command{Use: "rig", Short: "Inspect and command one rig"}
	rig.AddCommand(a.rigShowCmd(), a.rigCommandCmd(), a.rigRevokeCmd(), a.rigLabelCmd(), a.rigOCCmd())
	rig.AddCommand(a.rigLogsCmd(), a.rigBenchmarkCmd(), a.rigBenchmarksCmd(), a.rigEventsCmd())
	return rig
}

func (a *App) rigShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "show RIG",
		Short:             "Show a rig's latest state, GPUs, miners and events",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRigs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewFleetServiceClient, quarryv1.FleetServiceClient.GetRig, &quarryv1.GetRigRequest{Rig: args[0]})
			if err != nil {
				return err
			}
			return a.render(resp.Rig, func() error { return printRig(a.Out, resp.Rig, time.Now()) })
		},
	}
}

func (a *App) rigCommandCmd() *cobra.Command {
	var wait bool
	var ttl time.Duration
	command := &cobra.Command{
		Use:   "command RIG " + strings.Join(commandWords(), "|"),
		Short: "Send a command to a rig (queued until it is online)",
		Args:  cobra.ExactArgs(2),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, tc string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 1 {
				return commandWords(), cobra.ShellCompDirectiveNoFileComp
			}
			return a.completeRigs(cmd, args, tc)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, ok := commandKinds[args[1]]
			if !ok {
				return fmt.Errorf("unknown command %q: want one of %s", args[1], strings.Join(commandWords(), ", "))
			}
			return a.sendCommand(cmd.Context(), &quarryv1.SendCommandRequest{Rig: args[0], Kind: kind, TtlSeconds: int64(ttl / time.Second)}, wait)
		},
	}
	command.Flags().BoolVar(&wait, "wait", true, "wait for the rig's result")
	command.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the command waits for an offline rig")
	return command
}

// sendCommand queues a command and, with wait, prints its result.
func (a *App) sendCommand(ctx context.Context, req *quarryv1.SendCommandRequest, wait bool) error {
	return a.call(ctx, func(ctx context.Context, c quarryv1.FleetServiceClient) error {
		resp, err := c.SendCommand(ctx, req)
		if err != nil {
			return err
		}
		if !wait {
			fmt.Fprintln(a.Out, resp.CommandId, "queued")
			return nil
		}
		return a.waitCommand(ctx, c, resp.CommandId)
	})
}

func (a *App) rigRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "revoke RIG",
		Short:             "Revoke a rig's certificate and close its stream now",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRigs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := fetch(a, cmd.Context(), quarryv1.NewFleetServiceClient, quarryv1.FleetServiceClient.RevokeRig, &quarryv1.RevokeRigRequest{Rig: args[0]}); err != nil {
				return err
			}
			fmt.Fprintln(a.Out, "revoked", args[0])
			return nil
		},
	}
}

func (a *App) rigLabelCmd() *cobra.Command {
	var unset []string
	label := &cobra.Command{
		Use:   "label RIG KEY=VALUE... [KEY-...]",
		Short: "Set or remove a rig's labels, which selectors, the electricity site and billing use",
		Long: "Labels are the controller's record of a rig: flight-sheet and job selectors, the profit switcher's\n" +
			"electricity site (label 'site') and billing go by them. Tags a rig reports about itself are shown\n" +
			"by 'rig show' as reported and are never used for these. KEY- or --remove KEY removes a label.",
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: a.completeRigs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &quarryv1.SetRigLabelsRequest{Rig: args[0], Set: map[string]string{}, Remove: unset}
			for _, arg := range args[1:] {
				if k, v, ok := strings.Cut(arg, "="); ok {
					req.Set[k] = v
				} else if k, ok := strings.CutSuffix(arg, "-"); ok && k != "" {
					req.Remove = append(req.Remove, k)
				} else {
					return fmt.Errorf("%q: want KEY=VALUE to set or KEY- to remove", arg)
				}
			}
			resp, err := fetch(a, cmd.Context(), quarryv1.NewFleetServiceClient, quarryv1.FleetServiceClient.SetRigLabels, req)
			if err != nil {
				return err
			}
			return a.renderDone(resp.Rig, "%s labels: %s", resp.Rig.Name, dash(formatMap(resp.Rig.Labels)))
		},
	}
	label.Flags().StringSliceVar(&unset, "remove", nil, "label keys to remove")
	return label
}

// formatMap prints k=v pairs sorted by key.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// waitCommand waits for a command's result and prints it; a command
// still waiting for an offline rig when the timeout ends is not an error.
func (a *App) waitCommand(ctx context.Context, c quarryv1.FleetServiceClient, id string) error {
	rec, err := waitRecord(ctx, c, id)
	if err != nil {
		return err
	}
	switch rec.Status {
	case quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED:
		return a.renderDone(rec, "%s succeeded: %s", id, strings.TrimSpace(string(rec.Output)))
	case quarryv1.CommandStatus_COMMAND_STATUS_FAILED, quarryv1.CommandStatus_COMMAND_STATUS_EXPIRED:
		if a.Opts.Output == "json" {
			_ = a.json(rec)
		}
		return fmt.Errorf("%s %s: %s", id, statusWord(rec.Status), rec.Error)
	}
	fmt.Fprintf(a.Out, "%s still %s; the rig will run it when it is online (see 'quarryctl rig show')\n", id, statusWord(rec.Status))
	return nil
}

// dash shows an empty field as "-" in tables.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printRig writes a rig for a person: its record, then a table each for
// GPUs and miners, then recent events.
func printRig(w io.Writer, r *quarryv1.Rig, now time.Time) error {
	t := newTable(w)
	t.row("Rig:", r.Id)
	t.row("Name:", r.Name)
	t.row("Hostname:", r.Hostname)
	t.row("Status:", rigStatus(r))
	if r.GossipStatus != "" {
		t.row("Gossip:", r.GossipStatus)
	}
	t.row("Version:", r.Version)
	t.row("Labels:", dash(formatMap(r.Labels)))
	if len(r.Tags) > 0 {
		t.row("Reported tags:", formatMap(r.Tags)+" (informational, as the rig reports them)")
	}
	t.row("Last seen:", ago(r.LastSeenUnixNano, now))
	t.row("Reports:", fmt.Sprintf("%d (last seq %d, gaps %d)", r.Reports, r.LastSeq, r.SeqGaps))
	if h := r.Host; h != nil {
		t.row("CPU:", fmt.Sprintf("%.1f%%  load %.2f %.2f %.2f", h.CpuPercent, h.Load1, h.Load5, h.Load15))
		t.row("Memory:", bytesHuman(h.MemoryUsedBytes)+" / "+bytesHuman(h.MemoryTotalBytes))
		t.row("Uptime:", (time.Duration(h.UptimeSeconds) * time.Second).String())
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(r.Gpus) > 0 {
		fmt.Fprintln(w, "\nGPUs:")
		t = newTable(w, "IDX", "BUS", "NAME", "TEMP", "FAN", "POWER", "CORE", "MEM", "UTIL", "STATE")
		for _, g := range r.Gpus {
			state := "ok"
			if g.Lost {
				state = "LOST"
			}
			fan := "-"
			if len(g.FanPercent) > 0 {
				fan = fmt.Sprintf("%.0f%%", g.FanPercent[0])
			}
			t.row(g.Index, g.BusId, g.Name, optF(g.TemperatureC, "%.0f°C"), fan, optF(g.PowerW, "%.0f W"),
				optU(g.SmClockMhz, "%d MHz"), optU(g.MemoryClockMhz, "%d MHz"), optF(g.UtilizationPercent, "%.0f%%"), state)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(r.Miners) > 0 {
		fmt.Fprintln(w, "\nMiners:")
		t = newTable(w, "MINER", "VERSION", "ALGO", "COIN", "POOL", "HASHRATE", "ACCEPTED", "REJECTED", "UPTIME", "STATE")
		for _, m := range r.Miners {
			// A pool URL may carry a password (user:pass@host); the
			// screen gets the URL without it.
			t.row(m.Miner, dash(m.Version), m.Algorithm, m.Coin, dash(redact.Text(m.Pool)), MinerHashrate(m),
				m.Accepted, m.Rejected, minerUptime(m.UptimeSeconds), m.State)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(r.Events) > 0 {
		fmt.Fprintln(w, "\nRecent events:")
		for _, e := range r.Events {
			fmt.Fprintf(w, "  %s  %-16s %s\n", time.Unix(0, e.TimeUnixNano).Format(time.DateTime), e.Kind, e.Message)
		}
	}
	return nil
}

// minerUptime is how long the miner has run by its own stats API; "-"
// when the miner did not say (stopped, crashed, its API not answering).
func minerUptime(s uint64) string {
	if s == 0 {
		return "-"
	}
	return (time.Duration(s) * time.Second).String()
}

// HashrateHuman prints H/s with an SI prefix.
func HashrateHuman(h float64) string {
	units := []string{"H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s"}
	i := 0
	for h >= 1000 && i < len(units)-1 {
		h /= 1000
		i++
	}
	return fmt.Sprintf("%.2f %s", h, units[i])
}

func optF(p *float64, f string) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf(f, *p)
}

func optU(p *uint32, f string) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf(f, *p)
}

func (a *App) tokenCmd() *cobra.Command {
	tok := &cobra.Command{Use: "token", Short: "Join tokens for enrolling rigs; admin-API tokens"}
	tok.AddCommand(a.tokenCreateCmd(), a.tokenAdminCmd(), a.tokenListCmd(), a.tokenRevokeCmd(), a.tokenJoinsCmd(), a.tokenRevokeJoinCmd())
	return tok
}

func (a *App) tokenCreateCmd() *cobra.Command {
	var ttl time.Duration
	var uses uint32
	var name string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a join token; run 'quarry-agent --controller HOST:PORT --token TOKEN' on the rig",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewFleetServiceClient, quarryv1.FleetServiceClient.CreateToken,
				&quarryv1.CreateTokenRequest{TtlSeconds: int64(ttl / time.Second), Uses: uses, RigName: name})
			if err != nil {
				return err
			}
			return a.render(resp, func() error {
				fmt.Fprintln(a.Out, resp.Token)
				fmt.Fprintf(a.Err, "valid until %s for %d enrollment(s)\n", time.Unix(0, resp.ExpiresUnixNano).Format(time.RFC3339), max(uses, 1))
				return nil
			})
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	create.Flags().Uint32Var(&uses, "uses", 1, "how many rigs may enroll with it")
	create.Flags().StringVar(&name, "rig-name", "", "name for the rig that enrolls (default: its hostname)")
	return create
}

func (a *App) tokenAdminCmd() *cobra.Command {
	var role string
	var ttl time.Duration
	admin := &cobra.Command{
		Use:   "admin NAME",
		Short: "Create an admin-API bearer token with a role (viewer, operator or admin) and a lifetime (admin only)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl < time.Second {
				return fmt.Errorf("--ttl must be at least 1s, got %s", ttl)
			}
			resp, err := fetch(a, cmd.Context(), quarryv1.NewFleetServiceClient, quarryv1.FleetServiceClient.CreateAdminToken,
				&quarryv1.CreateAdminTokenRequest{Name: args[0], Role: role, TtlSeconds: int64(ttl / time.Second)})
			if err != nil {
				return err
			}
			return a.render(resp, func() error {
				fmt.Fprintln(a.Out, resp.Token)
				fmt.Fprintf(a.Err, "role %s, valid until %s; store it with 'quarryctl login --token TOKEN'\n", role, time.Unix(0, resp.ExpiresUnixNano).Format(time.RFC3339))
				return nil
			})
		},
	}
	admin.Flags().StringVar(&role, "role", "viewer", "viewer, operator or admin")
	admin.Flags().DurationVar(&ttl, "ttl", 90*24*time.Hour, "how long the token is valid (e.g. 720h)")
	_ = admin.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"viewer", "operator", "admin"}, cobra.ShellCompDirectiveNoFileComp))
	return admin
}

func (a *App) tokenListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List admin-API tokens: name, role, created, last used, expiry; never the token (admin only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewFleetServiceClient, quarryv1.FleetServiceClient.ListAdminTokens, &quarryv1.ListAdminTokensRequest{})
			if err != nil {
				return err
			}
			now := time.Now()
			return a.renderTable(resp, []string{"NAME", "ROLE", "CREATED", "BY", "LAST USED", "EXPIRES"}, func(t *table) {
				for _, tk := range resp.Tokens {
					exp := stamp(tk.ExpiresUnixNano, "never")
					if tk.ExpiresUnixNano != 0 && time.Unix(0, tk.ExpiresUnixNano).Before(now) {
						exp += " (expired)"
					}
					t.row(tk.Name, tk.Role, stamp(tk.CreatedUnixNano, "-"), dash(tk.CreatedBy), stamp(tk.LastUsedUnixNano, "never"), exp)
				}
			})
		},
	}
}

func (a *App) tokenRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an admin-API token by name; it is refused from the next call on (admin only)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := fetch(a, cmd.Context(), quarryv1.NewFleetServiceClient, quarryv1.FleetServiceClient.RevokeAdminToken, &quarryv1.RevokeAdminTokenRequest{Name: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "revoked admin token %s\n", args[0])
			return nil
		},
	}
}

func (a *App) tokenJoinsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "joins",
		Short: "List join tokens: id, rig name, uses left, expiry, creator; never the token (admin only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewFleetServiceClient, quarryv1.FleetServiceClient.ListTokens, &quarryv1.ListTokensRequest{})
			if err != nil {
				return err
			}
			now := time.Now()
			return a.renderTable(resp, []string{"ID", "RIG NAME", "USES LEFT", "EXPIRES", "BY"}, func(t *table) {
				for _, tk := range resp.Tokens {
					exp := stamp(tk.ExpiresUnixNano, "never")
					if tk.ExpiresUnixNano != 0 && time.Unix(0, tk.ExpiresUnixNano).Before(now) {
						exp += " (expired)"
					}
					t.row(tk.Id, dash(tk.RigName), fmt.Sprint(tk.UsesLeft), exp, dash(tk.CreatedBy))
				}
			})
		},
	}
}

func (a *App) tokenRevokeJoinCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke-join ID",
		Short: "Revoke a join token by id (from 'token joins'); enrolments with it are refused from then on (admin only)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := fetch(a, cmd.Context(), quarryv1.NewFleetServiceClient, quarryv1.FleetServiceClient.RevokeToken, &quarryv1.RevokeTokenRequest{Id: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "revoked join token %s\n", args[0])
			return nil
		},
	}
}

// stamp prints a unix-nanosecond time, or none when it is zero.
func stamp(ns int64, none string) string {
	if ns == 0 {
		return none
	}
	return time.Unix(0, ns).Format(time.DateTime)
}

func (a *App) auditCmd() *cobra.Command {
	var since, until time.Duration
	var limit uint32
	var pageToken, who, action, target string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log: who did what, when, and the result",
		Long: "Shows the newest --limit entries, oldest first. When older entries remain, the token to show\n" +
			"the next older ones with --page-token is printed on standard error.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd.Context(), func(ctx context.Context, c quarryv1.FleetServiceClient) error {
				req := &quarryv1.ListAuditRequest{PageToken: pageToken, Who: who, Action: action, Target: target}
				if since > 0 {
					req.SinceUnixNano = time.Now().Add(-since).UnixNano()
				}
				if until > 0 {
					req.UntilUnixNano = time.Now().Add(-until).UnixNano()
				}
				// Pages come newest first; gather until --limit, then
				// print oldest first.
				var entries []*quarryv1.AuditEntry
				next := ""
				for {
					req.Limit = limit - uint32(len(entries))
					resp, err := c.ListAudit(ctx, req)
					if err != nil {
						return err
					}
					entries = append(resp.Entries, entries...)
					next = resp.NextPageToken
					if next == "" || len(resp.Entries) == 0 || uint32(len(entries)) >= limit {
						break
					}
					req.PageToken = next
				}
				err := a.renderTable(&quarryv1.ListAuditResponse{Entries: entries, NextPageToken: next}, []string{"TIME", "WHO", "ROLE", "ACTION", "TARGET", "RESULT", "DETAIL"}, func(t *table) {
					for _, e := range entries {
						t.row(time.Unix(0, e.TimeUnixNano).Format(time.DateTime), e.Who, e.Role, e.Action, e.Target, e.Result, e.Detail)
					}
				})
				if err != nil || a.Opts.Output == "json" {
					return err
				}
				if next != "" {
					fmt.Fprintf(a.Err, "older entries: quarryctl audit --page-token %s\n", next)
				}
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&since, "since", 0, "only entries newer than this (e.g. 24h)")
	cmd.Flags().Uint32Var(&limit, "limit", 200, "most entries to show (the newest)")
	cmd.Flags().StringVar(&pageToken, "page-token", "", "continue with entries older than a previous answer's")
	cmd.Flags().DurationVar(&until, "until", 0, "only entries older than this (e.g. 1h)")
	cmd.Flags().StringVar(&who, "who", "", "only entries whose caller contains this text")
	cmd.Flags().StringVar(&action, "action", "", "only entries whose action contains this text (e.g. \"token\")")
	cmd.Flags().StringVar(&target, "target", "", "only entries whose target contains this text")
	return cmd
}

func (a *App) whoamiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show which credential and role quarryctl is using",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewFleetServiceClient, quarryv1.FleetServiceClient.WhoAmI, &quarryv1.WhoAmIRequest{})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "%s (role %s)\n", resp.Who, resp.Role)
			return nil
		},
	}
}

func (a *App) loginCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "login",
		Short: "Check a controller address, CA and token, then store them for later commands",
		Long:  "Stores --controller (every address given), --token and the CA (from --ca or the local data dir) in the file named by --config, readable only by you.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := a.Opts.resolve()
			if err != nil {
				return err
			}
			who, err := fetch(a, cmd.Context(), quarryv1.NewFleetServiceClient, quarryv1.FleetServiceClient.WhoAmI, &quarryv1.WhoAmIRequest{})
			if err != nil {
				return err
			}
			caPEM, err := a.caPEM()
			if err != nil {
				return err
			}
			b, err := yaml.Marshal(FileConfig{Controller: strings.Join(r.addrs, ","), Token: r.token, CAPEM: string(caPEM)})
			if err != nil {
				return err
			}
			if err := pki.WriteFileAtomic(a.Opts.ConfigPath, b, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "logged in to %s as %s (role %s); saved to %s\n", strings.Join(r.addrs, ","), who.Who, who.Role, a.Opts.ConfigPath)
			return nil
		},
	}
}

func (a *App) caPEM() ([]byte, error) {
	if a.Opts.CAFile != "" {
		return os.ReadFile(a.Opts.CAFile)
	}
	if fc, err := readFileConfig(a.Opts.ConfigPath); err == nil && fc.CAPEM != "" {
		return []byte(fc.CAPEM), nil
	}
	return os.ReadFile(a.Opts.DataDir + "/ca.crt")
}
