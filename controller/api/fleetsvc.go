package api

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/pki"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// FleetServer implements FleetService.
type FleetServer struct {
	quarryv1.UnimplementedFleetServiceServer

	Fleet   *fleet.Fleet
	CA      *pki.CA
	Version string
	Log     *slog.Logger
	// OnRevoke, if set, is called after a rig is revoked (to remove it
	// from gossip).
	OnRevoke func(rigID string)
}

func (s *FleetServer) audit(ctx context.Context, action, target string, err error, detail string) {
	c := CallerFrom(ctx)
	result := "ok"
	if err != nil {
		result = "error: " + err.Error()
	}
	if aerr := s.Fleet.Audit(&quarryv1.AuditEntry{Who: c.Name, Role: c.Role, Action: action, Target: target, Result: result, Detail: detail}); aerr != nil {
		s.Log.Error("audit write failed", "action", action, "err", aerr)
	}
}

func fleetErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fleet.ErrUnknownRig), errors.Is(err, fleet.ErrUnknownCommand):
		return status.Error(codes.NotFound, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func (s *FleetServer) GetVersion(context.Context, *quarryv1.GetVersionRequest) (*quarryv1.GetVersionResponse, error) {
	return &quarryv1.GetVersionResponse{Version: s.Version}, nil
}

func (s *FleetServer) WhoAmI(ctx context.Context, _ *quarryv1.WhoAmIRequest) (*quarryv1.WhoAmIResponse, error) {
	c := CallerFrom(ctx)
	return &quarryv1.WhoAmIResponse{Who: c.Name, Role: c.Role}, nil
}

func (s *FleetServer) ListRigs(context.Context, *quarryv1.ListRigsRequest) (*quarryv1.ListRigsResponse, error) {
	return &quarryv1.ListRigsResponse{Rigs: s.Fleet.Rigs()}, nil
}

func (s *FleetServer) GetRig(_ context.Context, req *quarryv1.GetRigRequest) (*quarryv1.GetRigResponse, error) {
	id, err := s.Fleet.Resolve(req.Rig)
	if err != nil {
		return nil, fleetErr(err)
	}
	r, err := s.Fleet.Rig(id)
	if err != nil {
		return nil, fleetErr(err)
	}
	return &quarryv1.GetRigResponse{Rig: r}, nil
}

func (s *FleetServer) SendCommand(ctx context.Context, req *quarryv1.SendCommandRequest) (*quarryv1.SendCommandResponse, error) {
	if req.Kind == quarryv1.CommandKind_COMMAND_KIND_UNSPECIFIED {
		return nil, status.Error(codes.InvalidArgument, "command kind is required")
	}
	id, err := s.Fleet.Resolve(req.Rig)
	if err != nil {
		s.audit(ctx, "command "+req.Kind.String(), req.Rig, err, "")
		return nil, fleetErr(err)
	}
	rec, err := s.Fleet.QueueCommand(id, req.Kind, req.Payload, time.Duration(req.TtlSeconds)*time.Second)
	detail := ""
	if rec != nil {
		detail = rec.Command.Id
	}
	s.audit(ctx, "command "+req.Kind.String(), id, err, detail)
	if err != nil {
		return nil, fleetErr(err)
	}
	return &quarryv1.SendCommandResponse{CommandId: rec.Command.Id}, nil
}

func (s *FleetServer) GetCommand(_ context.Context, req *quarryv1.GetCommandRequest) (*quarryv1.GetCommandResponse, error) {
	rec, err := s.Fleet.Command(req.CommandId)
	if err != nil {
		return nil, fleetErr(err)
	}
	return &quarryv1.GetCommandResponse{Record: rec}, nil
}

func (s *FleetServer) CreateToken(ctx context.Context, req *quarryv1.CreateTokenRequest) (*quarryv1.CreateTokenResponse, error) {
	ttl := time.Duration(req.TtlSeconds) * time.Second
	if ttl == 0 {
		ttl = time.Hour
	}
	if ttl < 0 {
		return nil, status.Error(codes.InvalidArgument, "ttl must be positive")
	}
	tok, exp, err := s.Fleet.CreateToken(s.CA.Hash(), ttl, req.Uses, req.RigName, CallerFrom(ctx).Name)
	s.audit(ctx, "token create", req.RigName, err, "ttl "+ttl.String())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &quarryv1.CreateTokenResponse{Token: tok, ExpiresUnixNano: exp.UnixNano()}, nil
}

func (s *FleetServer) RevokeRig(ctx context.Context, req *quarryv1.RevokeRigRequest) (*quarryv1.RevokeRigResponse, error) {
	id, err := s.Fleet.Resolve(req.Rig)
	if err == nil {
		err = s.Fleet.Revoke(id)
	}
	s.audit(ctx, "rig revoke", req.Rig, err, id)
	if err != nil {
		return nil, fleetErr(err)
	}
	if s.OnRevoke != nil {
		s.OnRevoke(id)
	}
	return &quarryv1.RevokeRigResponse{}, nil
}

func (s *FleetServer) ListAudit(_ context.Context, req *quarryv1.ListAuditRequest) (*quarryv1.ListAuditResponse, error) {
	es, err := s.Fleet.AuditLog(time.Unix(0, req.SinceUnixNano), int(req.Limit))
	if err != nil {
		return nil, fleetErr(err)
	}
	return &quarryv1.ListAuditResponse{Entries: es}, nil
}

func (s *FleetServer) CreateAdminToken(ctx context.Context, req *quarryv1.CreateAdminTokenRequest) (*quarryv1.CreateAdminTokenResponse, error) {
	if req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	tok, err := s.Fleet.CreateAdminToken(req.Name, req.Role)
	s.audit(ctx, "admin token create", req.Name, err, "role "+req.Role)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &quarryv1.CreateAdminTokenResponse{Token: tok}, nil
}
