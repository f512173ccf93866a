package overclock

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/controller/fleet"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Roles is the least role each OverclockService method needs: changing
// what cards run is an operator's job, as with flight sheets; reading the
// profiles is a viewer's.
var Roles = map[string]string{
	quarryv1.OverclockService_PutOverclockProfile_FullMethodName:    fleet.RoleOperator,
	quarryv1.OverclockService_DeleteOverclockProfile_FullMethodName: fleet.RoleOperator,
	quarryv1.OverclockService_ApplyOverclock_FullMethodName:         fleet.RoleOperator,
	quarryv1.OverclockService_ClearOverclock_FullMethodName:         fleet.RoleOperator,
	quarryv1.OverclockService_ListOverclockProfiles_FullMethodName:  fleet.RoleViewer,
}

// Audit is the audit action of each method that changes something.
var Audit = map[string]string{
	quarryv1.OverclockService_PutOverclockProfile_FullMethodName:    "oc profile put",
	quarryv1.OverclockService_DeleteOverclockProfile_FullMethodName: "oc profile delete",
	quarryv1.OverclockService_ApplyOverclock_FullMethodName:         "oc apply",
	quarryv1.OverclockService_ClearOverclock_FullMethodName:         "oc clear",
}

// Fleet is what the service needs of the fleet; *fleet.Fleet fits.
type Fleet interface {
	Resolve(idOrName string) (string, error)
	Rig(id string) (*quarryv1.Rig, error)
	QueueCommand(rigID string, kind quarryv1.CommandKind, payload []byte, ttl time.Duration) (*quarryv1.CommandRecord, error)
	Now() time.Time
}

// Server is quarry.v1.OverclockService.
type Server struct {
	quarryv1.UnimplementedOverclockServiceServer
	S     *Store
	Fleet Fleet
}

var _ quarryv1.OverclockServiceServer = (*Server)(nil)

func grpcErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, fleet.ErrUnknownRig):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrOutOfRange):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNoCards):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrFull):
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// PutOverclockProfile stores a profile.
func (s *Server) PutOverclockProfile(ctx context.Context, req *quarryv1.PutOverclockProfileRequest) (*quarryv1.PutOverclockProfileResponse, error) {
	if req.Profile == nil {
		return nil, status.Error(codes.InvalidArgument, "profile is required")
	}
	auth.Note(ctx).Target = req.Profile.Name
	rec, err := s.S.Put(req.Profile, auth.CallerFrom(ctx).Name, s.Fleet.Now().UnixNano())
	if err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.PutOverclockProfileResponse{Profile: rec}, nil
}

// ListOverclockProfiles lists the stored profiles, which hold no secret.
func (s *Server) ListOverclockProfiles(context.Context, *quarryv1.ListOverclockProfilesRequest) (*quarryv1.ListOverclockProfilesResponse, error) {
	list, err := s.S.List()
	if err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.ListOverclockProfilesResponse{Profiles: list}, nil
}

// DeleteOverclockProfile removes a stored profile.
func (s *Server) DeleteOverclockProfile(ctx context.Context, req *quarryv1.DeleteOverclockProfileRequest) (*quarryv1.DeleteOverclockProfileResponse, error) {
	if req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	auth.Note(ctx).Target = req.Name
	if err := s.S.Delete(req.Name); err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.DeleteOverclockProfileResponse{}, nil
}

// ApplyOverclock checks the profiles against the rig's cards and, only if
// every value fits, queues them to the rig.
func (s *Server) ApplyOverclock(ctx context.Context, req *quarryv1.ApplyOverclockRequest) (*quarryv1.ApplyOverclockResponse, error) {
	a := auth.Note(ctx)
	a.Target, a.Detail = req.Rig, "profiles="+strings.Join(req.Profiles, ",")
	if req.TtlSeconds < 0 {
		return nil, status.Error(codes.InvalidArgument, "ttl_seconds must not be negative")
	}
	rig, err := s.rig(req.Rig)
	if err != nil {
		return nil, grpcErr(err)
	}
	f, payload, err := s.S.File(req.Profiles)
	if err != nil {
		return nil, grpcErr(err)
	}
	cards, err := Plan(f, rig.Gpus)
	if err != nil {
		return nil, grpcErr(fmt.Errorf("rig %s: %w", rig.Name, err))
	}
	cmd, err := s.Fleet.QueueCommand(rig.Id, quarryv1.CommandKind_COMMAND_KIND_SET_OVERCLOCK, payload, time.Duration(req.TtlSeconds)*time.Second)
	if err != nil {
		return nil, grpcErr(err)
	}
	a.Detail += " command=" + cmd.Command.Id
	sort.Slice(cards, func(i, j int) bool { return cards[i].Index < cards[j].Index })
	return &quarryv1.ApplyOverclockResponse{RigId: rig.Id, CommandId: cmd.Command.Id, Cards: cards}, nil
}

// ClearOverclock queues an empty profile file: every card back to its
// defaults.
func (s *Server) ClearOverclock(ctx context.Context, req *quarryv1.ClearOverclockRequest) (*quarryv1.ClearOverclockResponse, error) {
	a := auth.Note(ctx)
	a.Target = req.Rig
	if req.TtlSeconds < 0 {
		return nil, status.Error(codes.InvalidArgument, "ttl_seconds must not be negative")
	}
	rig, err := s.rig(req.Rig)
	if err != nil {
		return nil, grpcErr(err)
	}
	cmd, err := s.Fleet.QueueCommand(rig.Id, quarryv1.CommandKind_COMMAND_KIND_SET_OVERCLOCK, nil, time.Duration(req.TtlSeconds)*time.Second)
	if err != nil {
		return nil, grpcErr(err)
	}
	a.Detail = "command=" + cmd.Command.Id
	return &quarryv1.ClearOverclockResponse{RigId: rig.Id, CommandId: cmd.Command.Id}, nil
}

func (s *Server) rig(idOrName string) (*quarryv1.Rig, error) {
	if idOrName == "" {
		return nil, fmt.Errorf("%w: rig is required", ErrInvalid)
	}
	id, err := s.Fleet.Resolve(idOrName)
	if err != nil {
		return nil, err
	}
	return s.Fleet.Rig(id)
}
