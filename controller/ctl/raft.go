package ctl

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// errAlone explains Unimplemented from ClusterService: the controller has
// no cluster section.
var errAlone = errors.New("this controller runs alone (no cluster section in its configuration), so it has no Raft group")

func (a *App) raftCmd() *cobra.Command {
	c := &cobra.Command{Use: "raft", Short: "Show or change the controllers' Raft group"}
	c.AddCommand(a.raftListPeersCmd(), a.raftRemovePeerCmd())
	return c
}

func (a *App) raftListPeersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list-peers",
		Short: "List the group's members: leader, liveness, applied index and lag",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewClusterServiceClient, quarryv1.ClusterServiceClient.ListPeers, &quarryv1.ListPeersRequest{})
			if status.Code(err) == codes.Unimplemented {
				return errAlone
			}
			if err != nil {
				return err
			}
			return a.render(resp, func() error {
				fmt.Fprintf(a.Out, "term %d, last index %d, commit index %d\n", resp.Term, resp.LastIndex, resp.CommitIndex)
				t := newTable(a.Out, "ID", "RAFT ADDRESS", "GRPC ADDRESS", "STATE", "VOTER", "ALIVE", "APPLIED", "LAG")
				for _, p := range resp.Peers {
					state := "follower"
					if p.Leader {
						state = "leader"
					}
					applied, lag := "unknown", "unknown"
					if p.AppliedIndex > 0 {
						applied, lag = fmt.Sprint(p.AppliedIndex), fmt.Sprint(p.Lag)
					}
					t.row(p.Id, p.RaftAddr, orUnknown(p.GrpcAddr), state, p.Voter, p.Alive, applied, lag)
				}
				return t.flush()
			})
		},
	}
}

func (a *App) raftRemovePeerCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "remove-peer ID",
		Short:   "Take a member that is gone for good out of the group (admin)",
		Example: "  quarryctl operator raft remove-peer ctl-3",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewClusterServiceClient, quarryv1.ClusterServiceClient.RemovePeer, &quarryv1.RemovePeerRequest{Id: args[0]})
			if status.Code(err) == codes.Unimplemented {
				return errAlone
			}
			if err != nil {
				return err
			}
			return a.renderDone(resp, "removed %s from the group", args[0])
		},
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
