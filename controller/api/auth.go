package api

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/pki"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// FleetRoles is the least role each FleetService method needs. Every admin
// service has such a table; a method missing from all of them is refused
// for everyone, and a test fails, so no new method ships without a decision.
var FleetRoles = map[string]string{
	quarryv1.FleetService_GetVersion_FullMethodName:       fleet.RoleViewer,
	quarryv1.FleetService_WhoAmI_FullMethodName:           fleet.RoleViewer,
	quarryv1.FleetService_ListRigs_FullMethodName:         fleet.RoleViewer,
	quarryv1.FleetService_GetRig_FullMethodName:           fleet.RoleViewer,
	quarryv1.FleetService_GetCommand_FullMethodName:       fleet.RoleViewer,
	quarryv1.FleetService_SendCommand_FullMethodName:      fleet.RoleOperator,
	quarryv1.FleetService_SetRigLabels_FullMethodName:     fleet.RoleOperator,
	quarryv1.FleetService_CreateToken_FullMethodName:      fleet.RoleAdmin,
	quarryv1.FleetService_RevokeRig_FullMethodName:        fleet.RoleAdmin,
	quarryv1.FleetService_ListAudit_FullMethodName:        fleet.RoleAdmin,
	quarryv1.FleetService_CreateAdminToken_FullMethodName: fleet.RoleAdmin,
	quarryv1.FleetService_ListAdminTokens_FullMethodName:  fleet.RoleAdmin,
	quarryv1.FleetService_RevokeAdminToken_FullMethodName: fleet.RoleAdmin,
}

// Caller is an authenticated admin-API client.
type Caller struct {
	Name string
	Role string
}

type callerKey struct{}

// CallerFrom returns the caller the interceptor authenticated.
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// SeesSecrets reports whether the caller may read secrets: pool
// passwords, miner API tokens, command payloads and outputs, job
// environments. Viewers may not; operators, who can set them, may.
func SeesSecrets(ctx context.Context) bool {
	return fleet.RoleRank(CallerFrom(ctx).Role) >= fleet.RoleRank(fleet.RoleOperator)
}

// Authenticator resolves the caller of an admin-API request and checks
// the role it needs.
type Authenticator struct {
	Fleet *fleet.Fleet
	// Roles maps full method names of every admin service to the least
	// role allowed to call them.
	Roles map[string]string
}

// Authenticate accepts an admin client certificate or a bearer token.
func (a Authenticator) Authenticate(ctx context.Context) (Caller, error) {
	if auth := metadata.ValueFromIncomingContext(ctx, "authorization"); len(auth) > 0 {
		tok, ok := strings.CutPrefix(auth[0], "Bearer ")
		if !ok {
			return Caller{}, status.Error(codes.Unauthenticated, "authorization header must be 'Bearer <token>'")
		}
		// Checked against the database on every call: a revoked or
		// expired token fails on its very next use.
		name, role, err := a.Fleet.CheckAdminToken(strings.TrimSpace(tok))
		if err != nil {
			return Caller{}, status.Error(codes.Unauthenticated, err.Error())
		}
		return Caller{Name: name, Role: role}, nil
	}
	id, _, err := peerIdentity(ctx)
	if err != nil {
		return Caller{}, status.Error(codes.Unauthenticated, "the admin API needs an admin client certificate or a bearer token (run 'quarryctl login')")
	}
	if id.Unit != pki.OUAdmin || fleet.RoleRank(id.Role) == 0 {
		return Caller{}, status.Error(codes.PermissionDenied, "certificate is not an admin certificate")
	}
	return Caller{Name: id.Name, Role: id.Role}, nil
}

func (a Authenticator) authorize(ctx context.Context, method string) (context.Context, error) {
	need, ok := a.Roles[method]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "method %s has no role assigned", method)
	}
	c, err := a.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if fleet.RoleRank(c.Role) < fleet.RoleRank(need) {
		a.Fleet.Audit(&quarryv1.AuditEntry{Who: c.Name, Role: c.Role, Action: "authorize", Target: method, Result: "denied", Detail: "needs role " + need})
		return nil, status.Errorf(codes.PermissionDenied, "%s needs role %s; %s has role %s", shortMethod(method), need, c.Name, c.Role)
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

func shortMethod(m string) string {
	if i := strings.LastIndex(m, "/"); i >= 0 {
		return m[i+1:]
	}
	return m
}

// isAdminMethod is true for everything but AgentService and
// MinerDownloadService, which identify rigs by their certificates, and the standard health service.
func isAdminMethod(m string) bool {
	return !strings.HasPrefix(m, "/"+quarryv1.AgentService_ServiceDesc.ServiceName+"/") &&
		!strings.HasPrefix(m, "/"+quarryv1.MinerDownloadService_ServiceDesc.ServiceName+"/") &&
		!strings.HasPrefix(m, "/grpc.health.v1.Health/")
}

// UnaryInterceptor authenticates and authorises FleetService calls.
func (a Authenticator) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !isAdminMethod(info.FullMethod) {
		return handler(ctx, req)
	}
	ctx, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// StreamInterceptor does the same for streaming FleetService calls.
func (a Authenticator) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !isAdminMethod(info.FullMethod) {
		return handler(srv, ss)
	}
	ctx, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }
