package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// gossipDisagreement notes when the gRPC link and gossip tell different
// stories about a rig: " (gossip: failed)" for a rig online over gRPC that
// gossip lost, " (gossip: alive)" for one gossip still reaches while its
// link is down.
func gossipDisagreement(r *quarryv1.Rig) string {
	g := r.GossipStatus
	switch {
	case g == "":
		return ""
	case r.Online && g != "alive":
		return " (gossip: " + g + ")"
	case !r.Online && g == "alive":
		return " (gossip: alive)"
	}
	return ""
}

func (a *App) fleetCmd() *cobra.Command {
	fleet := &cobra.Command{Use: "fleet", Short: "Reach many rigs at once over gossip (works while their gRPC link is down)"}
	fleet.AddCommand(a.fleetEventCmd("pause", "Stop mining on the selected rigs"), a.fleetEventCmd("resume", "Start mining again on the selected rigs"), a.fleetQueryCmd())
	return fleet
}

// fleetEventCmd is 'fleet pause' or 'fleet resume': kind is the event.
func (a *App) fleetEventCmd(kind, short string) *cobra.Command {
	var selector string
	c := &cobra.Command{
		Use:   kind,
		Short: short,
		Long: "Sends a fleet event signed with the controller's key over gossip. Rigs act on it only\n" +
			"when the signature verifies. Selector terms: key=glob or key!=glob, comma-separated,\n" +
			"on name, role, rig, ver, gpus, gpu_model or grpc; empty picks every agent.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewGossipServiceClient, quarryv1.GossipServiceClient.FleetEvent, &quarryv1.FleetEventRequest{Kind: kind, Selector: selector})
			if err != nil {
				return err
			}
			return a.render(resp, func() error {
				fmt.Fprintf(a.Out, "%s event %s sent; %d alive agents selected", kind, resp.EventId, len(resp.Targets))
				if len(resp.Targets) > 0 {
					fmt.Fprintf(a.Out, ": %s", strings.Join(resp.Targets, ", "))
				}
				fmt.Fprintln(a.Out)
				return nil
			})
		},
	}
	c.Flags().StringVar(&selector, "selector", "", `which rigs, e.g. "gpu_model=RTX 30*" or "name=rig-0[1-4]"`)
	return c
}

func (a *App) fleetQueryCmd() *cobra.Command {
	var selector string
	var wait time.Duration
	query := &cobra.Command{
		Use:       "query temps|hashrate|version",
		Short:     "Ask the selected rigs over gossip; answers print as they arrive, then who did not answer",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"temps", "hashrate", "version"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait <= 0 || wait > time.Minute {
				return fmt.Errorf("--timeout %s: want more than 0 and at most 1m", wait)
			}
			// The call must outlive the query.
			a.Opts.Timeout += wait
			return a.callConn(cmd.Context(), func(ctx context.Context, conn grpc.ClientConnInterface) error {
				names := rigNames(ctx, conn)
				stream, err := quarryv1.NewGossipServiceClient(conn).FleetQuery(ctx, &quarryv1.FleetQueryRequest{Name: args[0], Selector: selector, TimeoutMs: wait.Milliseconds()})
				if err != nil {
					return err
				}
				return a.printQuery(stream, names)
			})
		},
	}
	query.Flags().StringVar(&selector, "selector", "", "which rigs (see 'fleet pause --help')")
	query.Flags().DurationVar(&wait, "timeout", 5*time.Second, "how long to wait for answers")
	return query
}

// rigNames maps rig ids to names for display; empty when not allowed.
func rigNames(ctx context.Context, conn grpc.ClientConnInterface) map[string]string {
	out := map[string]string{}
	rigs, err := listRigs(ctx, quarryv1.NewFleetServiceClient(conn))
	if err != nil {
		return out
	}
	for _, r := range rigs {
		out[r.Id] = r.Name
	}
	return out
}

func (a *App) printQuery(stream grpc.ServerStreamingClient[quarryv1.FleetQueryResponse], names map[string]string) error {
	label := func(id string) string {
		if n := names[id]; n != "" && n != id {
			return id + " (" + n + ")"
		}
		return id
	}
	answered := 0
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("the controller ended the query without a summary")
		}
		if err != nil {
			return err
		}
		if a.Opts.Output == "json" {
			if err := a.json(msg); err != nil {
				return err
			}
		}
		switch m := msg.Msg.(type) {
		case *quarryv1.FleetQueryResponse_Answer:
			answered++
			if a.Opts.Output == "json" {
				continue
			}
			if m.Answer.Error != "" {
				fmt.Fprintf(a.Out, "%s\terror: %s\n", label(m.Answer.From), m.Answer.Error)
			} else {
				fmt.Fprintf(a.Out, "%s\t%s\n", label(m.Answer.From), m.Answer.Payload)
			}
		case *quarryv1.FleetQueryResponse_Summary:
			if a.Opts.Output == "json" {
				return nil
			}
			s := m.Summary
			fmt.Fprintf(a.Out, "%d of %d alive selected rigs answered\n", answered, len(s.Expected))
			var silent []string
			for _, id := range s.Missing {
				silent = append(silent, label(id)+" (no answer in time)")
			}
			for _, u := range s.Unreachable {
				silent = append(silent, label(u.Name)+" (gossip: "+u.Status+")")
			}
			if len(silent) > 0 {
				fmt.Fprintf(a.Out, "did not answer: %s\n", strings.Join(silent, ", "))
			}
			if len(s.Unverified) > 0 {
				var names []string
				for _, id := range s.Unverified {
					names = append(names, label(id))
				}
				fmt.Fprintf(a.Out, "ignored unverified answers (not signed by the rig's certificate key): %s\n", strings.Join(names, ", "))
			}
			return nil
		}
	}
}

func (a *App) gossipCmd() *cobra.Command {
	g := &cobra.Command{Use: "gossip", Short: "Inspect the gossip cluster and rotate its keys"}
	keys := &cobra.Command{Use: "keys", Short: "Replace the gossip key of the controller and every rig that is not revoked (admin)"}
	keys.AddCommand(a.gossipKeysRotateCmd())
	g.AddCommand(a.gossipMembersCmd(), keys)
	return g
}

func (a *App) gossipMembersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List gossip members with their status and tags",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewGossipServiceClient, quarryv1.GossipServiceClient.ListMembers, &quarryv1.ListMembersRequest{})
			if err != nil {
				return err
			}
			return a.renderTable(resp, []string{"NAME", "ADDRESS", "STATUS", "ROLE", "VERSION", "GPUS", "GPU MODEL", "GRPC", "OTHER TAGS"}, func(t *table) {
				memberRows(t, resp)
			})
		},
	}
}

func (a *App) gossipKeysRotateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate",
		Short: "Generate a new key, hand it to every rig that is not revoked over gRPC, then switch to it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.rotateKeys(cmd.Context(), "rotate", "")
		},
	}
}

// keyOpTimeout covers handing the key to every connected rig.
const keyOpTimeout = time.Minute

func (a *App) rotateKeys(ctx context.Context, step, key string) error {
	a.Opts.Timeout = max(a.Opts.Timeout, keyOpTimeout)
	resp, err := fetch(a, ctx, quarryv1.NewGossipServiceClient, quarryv1.GossipServiceClient.RotateKeys, &quarryv1.RotateKeysRequest{Step: step, Key: key})
	if err != nil {
		return err
	}
	return a.render(resp, func() error {
		for _, s := range resp.Steps {
			fmt.Fprintf(a.Out, "%-8s key %s: handed to %d of %d connected rigs over gRPC, %d missed\n", s.Step, s.KeyFingerprint, s.Responses, s.Nodes, s.Errors)
			for _, m := range sortedKeys(s.Messages) {
				fmt.Fprintf(a.Out, "  %s: %s\n", m, s.Messages[m])
			}
		}
		fmt.Fprintf(a.Out, "controller keyring (fingerprints, primary first): %s\n", strings.Join(resp.KeyringFingerprints, ", "))
		return nil
	})
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// memberRows adds a row per gossip member; tags with a column of their
// own are left out of OTHER TAGS.
func memberRows(t *table, resp *quarryv1.ListMembersResponse) {
	known := map[string]bool{"role": true, "ver": true, "gpus": true, "gpu_model": true, "grpc": true, "rig": true}
	for _, m := range resp.Members {
		name := m.Name
		if name == resp.Local {
			name += " (this controller)"
		}
		var other []string
		for _, k := range sortedKeys(m.Tags) {
			if !known[k] {
				other = append(other, k+"="+m.Tags[k])
			}
		}
		st := m.Status
		if !m.Verified {
			st += " (unverified)"
		}
		t.row(name, m.Addr, st, dash(m.Tags["role"]), dash(m.Tags["ver"]), dash(m.Tags["gpus"]), dash(m.Tags["gpu_model"]), dash(m.Tags["grpc"]), dash(strings.Join(other, ",")))
	}
}
