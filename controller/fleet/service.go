package fleet

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/pkg/pki"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// FleetRoles is the least role each FleetService method needs. Every admin
// service has such a table; a method missing from all of them is refused
// for everyone, and a test fails, so no new method ships without a decision.
var FleetRoles = map[string]string{
	quarryv1.FleetService_GetVersion_FullMethodName:       RoleViewer,
	quarryv1.FleetService_WhoAmI_FullMethodName:           RoleViewer,
	quarryv1.FleetService_ListRigs_FullMethodName:         RoleViewer,
	quarryv1.FleetService_GetRig_FullMethodName:           RoleViewer,
	quarryv1.FleetService_GetCommand_FullMethodName:       RoleViewer,
	quarryv1.FleetService_SendCommand_FullMethodName:      RoleOperator,
	quarryv1.FleetService_SetRigLabels_FullMethodName:     RoleOperator,
	quarryv1.FleetService_CreateToken_FullMethodName:      RoleAdmin,
	quarryv1.FleetService_RevokeRig_FullMethodName:        RoleAdmin,
	quarryv1.FleetService_ListAudit_FullMethodName:        RoleAdmin,
	quarryv1.FleetService_CreateAdminToken_FullMethodName: RoleAdmin,
	quarryv1.FleetService_ListAdminTokens_FullMethodName:  RoleAdmin,
	quarryv1.FleetService_RevokeAdminToken_FullMethodName: RoleAdmin,
	quarryv1.FleetService_ListTokens_FullMethodName:       RoleAdmin,
	quarryv1.FleetService_RevokeToken_FullMethodName:      RoleAdmin,
}

// FleetAudit is the audit action of each FleetService method that changes
// something or reads what only admins may: every call of one is audited.
var FleetAudit = map[string]string{
	quarryv1.FleetService_SendCommand_FullMethodName:      "command",
	quarryv1.FleetService_SetRigLabels_FullMethodName:     "rig label",
	quarryv1.FleetService_CreateToken_FullMethodName:      "token create",
	quarryv1.FleetService_RevokeRig_FullMethodName:        "rig revoke",
	quarryv1.FleetService_ListAudit_FullMethodName:        "audit list",
	quarryv1.FleetService_CreateAdminToken_FullMethodName: "admin token create",
	quarryv1.FleetService_ListAdminTokens_FullMethodName:  "admin token list",
	quarryv1.FleetService_RevokeAdminToken_FullMethodName: "admin token revoke",
	quarryv1.FleetService_ListTokens_FullMethodName:       "token list",
	quarryv1.FleetService_RevokeToken_FullMethodName:      "token revoke",
}

// FleetServer implements FleetService.
type FleetServer struct {
	quarryv1.UnimplementedFleetServiceServer

	Fleet   *Fleet
	CA      *pki.CA
	Version string
	// OnRevoke, if set, is called after a rig is revoked (to remove it
	// from gossip).
	OnRevoke func(rigID string)
}

func fleetErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnknownRig), errors.Is(err, ErrUnknownCommand):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrBadPageToken), errors.Is(err, ErrBadLabel), errors.Is(err, ErrBadAuditFilter):
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func (s *FleetServer) GetVersion(context.Context, *quarryv1.GetVersionRequest) (*quarryv1.GetVersionResponse, error) {
	return &quarryv1.GetVersionResponse{Version: s.Version}, nil
}

func (s *FleetServer) WhoAmI(ctx context.Context, _ *quarryv1.WhoAmIRequest) (*quarryv1.WhoAmIResponse, error) {
	c := auth.CallerFrom(ctx)
	return &quarryv1.WhoAmIResponse{Who: c.Name, Role: c.Role}, nil
}

// ListRigs answers one bounded page; quarryctl follows next_page_token.
func (s *FleetServer) ListRigs(_ context.Context, req *quarryv1.ListRigsRequest) (*quarryv1.ListRigsResponse, error) {
	rigs, next, err := s.Fleet.RigsPage(int(req.PageSize), req.PageToken)
	if err != nil {
		return nil, fleetErr(err)
	}
	return &quarryv1.ListRigsResponse{Rigs: rigs, NextPageToken: next}, nil
}

// SetRigLabels changes the controller-side labels that selectors, the
// electricity site and billing go by.
func (s *FleetServer) SetRigLabels(ctx context.Context, req *quarryv1.SetRigLabelsRequest) (*quarryv1.SetRigLabelsResponse, error) {
	id, err := s.Fleet.Resolve(req.Rig)
	var r *quarryv1.Rig
	if err == nil {
		r, err = s.Fleet.SetLabels(id, req.Set, req.Remove)
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(req.Set)) {
		parts = append(parts, k+"="+req.Set[k])
	}
	for _, k := range req.Remove {
		parts = append(parts, k+"-")
	}
	a := auth.Note(ctx)
	a.Target, a.Detail = req.Rig, strings.Join(parts, " ")
	if err != nil {
		return nil, fleetErr(err)
	}
	return &quarryv1.SetRigLabelsResponse{Rig: r}, nil
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
	a := auth.Note(ctx)
	a.Action, a.Target = "command "+req.Kind.String(), req.Rig
	if req.Kind == quarryv1.CommandKind_COMMAND_KIND_UNSPECIFIED {
		return nil, status.Error(codes.InvalidArgument, "command kind is required")
	}
	if req.Kind == quarryv1.CommandKind_COMMAND_KIND_RUN_JOB {
		// A raw RUN_JOB would run any command as root on the rig without
		// the job service's admin check and records.
		return nil, status.Error(codes.PermissionDenied, "RUN_JOB is sent only by the job service: use 'quarryctl job run', which needs role admin")
	}
	id, err := s.Fleet.Resolve(req.Rig)
	if err != nil {
		return nil, fleetErr(err)
	}
	a.Target = id
	rec, err := s.Fleet.QueueCommand(id, req.Kind, req.Payload, time.Duration(req.TtlSeconds)*time.Second)
	if rec != nil {
		a.Detail = rec.Command.Id
	}
	if err != nil {
		return nil, fleetErr(err)
	}
	return &quarryv1.SendCommandResponse{CommandId: rec.Command.Id}, nil
}

// GetCommand returns a command's state. A viewer sees its kind, status
// and error but neither its payload (a flight sheet with pool passwords)
// nor its output (miner logs).
func (s *FleetServer) GetCommand(ctx context.Context, req *quarryv1.GetCommandRequest) (*quarryv1.GetCommandResponse, error) {
	rec, err := s.Fleet.Command(req.CommandId)
	if err != nil {
		return nil, fleetErr(err)
	}
	if !auth.SeesSecrets(ctx) {
		if rec.Command != nil {
			rec.Command.Payload = nil
		}
		rec.Output = nil
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
	tok, exp, err := s.Fleet.CreateToken(s.CA.Hash(), ttl, req.Uses, req.RigName, auth.CallerFrom(ctx).Name)
	a := auth.Note(ctx)
	a.Target, a.Detail = req.RigName, "ttl "+ttl.String()
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
	a := auth.Note(ctx)
	a.Target, a.Detail = req.Rig, id
	if err != nil {
		return nil, fleetErr(err)
	}
	if s.OnRevoke != nil {
		s.OnRevoke(id)
	}
	return &quarryv1.RevokeRigResponse{}, nil
}

// ListAudit answers one page, newest entries first across pages.
func (s *FleetServer) ListAudit(_ context.Context, req *quarryv1.ListAuditRequest) (*quarryv1.ListAuditResponse, error) {
	q := AuditFilter{Since: time.Unix(0, req.SinceUnixNano), Who: req.Who, Action: req.Action, Target: req.Target}
	if req.UntilUnixNano != 0 {
		q.Until = time.Unix(0, req.UntilUnixNano)
	}
	es, next, err := s.Fleet.AuditQuery(q, int(req.Limit), req.PageToken)
	if err != nil {
		return nil, fleetErr(err)
	}
	return &quarryv1.ListAuditResponse{Entries: es, NextPageToken: next}, nil
}

func (s *FleetServer) CreateAdminToken(ctx context.Context, req *quarryv1.CreateAdminTokenRequest) (*quarryv1.CreateAdminTokenResponse, error) {
	if req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if req.TtlSeconds < 0 {
		return nil, status.Error(codes.InvalidArgument, "ttl must be positive")
	}
	tok, exp, err := s.Fleet.IssueAdminToken(req.Name, req.Role, time.Duration(req.TtlSeconds)*time.Second, auth.CallerFrom(ctx).Name)
	detail := "role " + req.Role
	if err == nil {
		detail += " expires " + exp.UTC().Format(time.RFC3339)
	}
	a := auth.Note(ctx)
	a.Target, a.Detail = req.Name, detail
	switch {
	case errors.Is(err, ErrAdminTokenExists):
		return nil, status.Error(codes.AlreadyExists, err.Error())
	case err != nil:
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &quarryv1.CreateAdminTokenResponse{Token: tok, ExpiresUnixNano: exp.UnixNano()}, nil
}

// ListAdminTokens lists tokens by name; the secret is not stored, so it
// cannot be shown.
func (s *FleetServer) ListAdminTokens(_ context.Context, _ *quarryv1.ListAdminTokensRequest) (*quarryv1.ListAdminTokensResponse, error) {
	ts, err := s.Fleet.AdminTokens()
	if err != nil {
		return nil, fleetErr(err)
	}
	resp := &quarryv1.ListAdminTokensResponse{}
	for _, t := range ts {
		resp.Tokens = append(resp.Tokens, &quarryv1.AdminToken{
			Name: t.Name, Role: t.Role, CreatedBy: t.CreatedBy, CreatedUnixNano: unixNano(t.Created),
			LastUsedUnixNano: unixNano(t.LastUsed), ExpiresUnixNano: unixNano(t.Expires),
		})
	}
	return resp, nil
}

// RevokeAdminToken deletes a token by name; the next call with it fails.
func (s *FleetServer) RevokeAdminToken(ctx context.Context, req *quarryv1.RevokeAdminTokenRequest) (*quarryv1.RevokeAdminTokenResponse, error) {
	if req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	err := s.Fleet.RevokeAdminToken(req.Name)
	auth.Note(ctx).Target = req.Name
	switch {
	case errors.Is(err, ErrAdminTokenUnknown):
		return nil, status.Error(codes.NotFound, err.Error())
	case err != nil:
		return nil, fleetErr(err)
	}
	return &quarryv1.RevokeAdminTokenResponse{}, nil
}

// ListTokens lists join tokens; their secrets are not stored, so they
// cannot be shown again after creation.
func (s *FleetServer) ListTokens(_ context.Context, _ *quarryv1.ListTokensRequest) (*quarryv1.ListTokensResponse, error) {
	ts, err := s.Fleet.JoinTokens()
	if err != nil {
		return nil, fleetErr(err)
	}
	resp := &quarryv1.ListTokensResponse{}
	for _, t := range ts {
		resp.Tokens = append(resp.Tokens, &quarryv1.JoinToken{
			Id: t.ID, RigName: t.RigName, UsesLeft: t.UsesLeft, ExpiresUnixNano: unixNano(t.Expires), CreatedBy: t.CreatedBy,
		})
	}
	return resp, nil
}

// RevokeToken deletes a join token by id; enrolments with it are refused
// from then on.
func (s *FleetServer) RevokeToken(ctx context.Context, req *quarryv1.RevokeTokenRequest) (*quarryv1.RevokeTokenResponse, error) {
	if req.Id == "" {
		return nil, status.Error(codes.InvalidArgument, "token id is required")
	}
	if len(req.Id) > maxAuditField {
		return nil, status.Errorf(codes.InvalidArgument, "token id longer than %d bytes", maxAuditField)
	}
	err := s.Fleet.RevokeToken(req.Id)
	auth.Note(ctx).Target = req.Id
	switch {
	case errors.Is(err, ErrJoinTokenUnknown):
		return nil, status.Error(codes.NotFound, err.Error())
	case err != nil:
		return nil, fleetErr(err)
	}
	return &quarryv1.RevokeTokenResponse{}, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
