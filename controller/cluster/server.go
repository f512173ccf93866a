package cluster

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/auth"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// ClusterRoles is the least role each ClusterService method needs: the
// group's health is anyone's to see; taking a member out changes the
// quorum, so it is the admin's.
var ClusterRoles = map[string]string{
	quarryv1.ClusterService_ListPeers_FullMethodName:  auth.RoleViewer,
	quarryv1.ClusterService_RemovePeer_FullMethodName: auth.RoleAdmin,
}

// ClusterAudit is the audit action of each changing ClusterService method.
var ClusterAudit = map[string]string{
	quarryv1.ClusterService_RemovePeer_FullMethodName: "raft remove-peer",
}

// ClusterServer serves ClusterService from the leading member.
type ClusterServer struct {
	quarryv1.UnimplementedClusterServiceServer
	Node *Node
}

func (s *ClusterServer) ListPeers(context.Context, *quarryv1.ListPeersRequest) (*quarryv1.ListPeersResponse, error) {
	peers, err := s.Node.Peers()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	st := s.Node.Status()
	resp := &quarryv1.ListPeersResponse{LeaderId: st.LeaderID, Term: st.Term, LastIndex: st.LastIndex, CommitIndex: st.CommitIndex}
	for _, p := range peers {
		resp.Peers = append(resp.Peers, &quarryv1.RaftPeer{Id: p.ID, RaftAddr: p.RaftAddr, GrpcAddr: p.GRPCAddr, Voter: p.Voter,
			Leader: p.Leader, Alive: p.Alive, AppliedIndex: p.AppliedIndex, Lag: p.Lag})
	}
	return resp, nil
}

func (s *ClusterServer) RemovePeer(ctx context.Context, req *quarryv1.RemovePeerRequest) (*quarryv1.RemovePeerResponse, error) {
	id := strings.TrimSpace(req.GetId())
	auth.Note(ctx).Target = id
	if id == "" || len(id) > 128 {
		return nil, status.Error(codes.InvalidArgument, "id: the member's node id is required (see raft list-peers)")
	}
	peers, err := s.Node.Peers()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	found := false
	for _, p := range peers {
		found = found || p.ID == id
	}
	if !found {
		return nil, status.Errorf(codes.NotFound, "%q is not a member of the group", id)
	}
	if err := s.Node.RemovePeer(id); err != nil {
		if errors.Is(err, ErrNotLeader) {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return &quarryv1.RemovePeerResponse{}, nil
}
