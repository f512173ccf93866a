package auth

import (
	"context"
	"crypto/x509"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/pkg/pki"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Tokens checks admin bearer tokens; the fleet's token store is the one in
// use.
type Tokens interface {
	CheckAdminToken(tok string) (name, role string, err error)
}

// Auditor stores audit entries; the fleet's audit log is the one in use.
// It redacts, caps and logs its own write failures, so callers need not.
type Auditor interface {
	Audit(e *quarryv1.AuditEntry) error
}

// Authenticator resolves the caller of an admin-API request and checks
// the role it needs.
type Authenticator struct {
	Tokens Tokens
	Audit  Auditor
	// Roles maps full method names of every admin service to the least
	// role allowed to call them. A method missing from it is refused for
	// everyone, so no new method ships without a decision.
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
		name, role, err := a.Tokens.CheckAdminToken(strings.TrimSpace(tok))
		if err != nil {
			return Caller{}, status.Error(codes.Unauthenticated, err.Error())
		}
		return Caller{Name: name, Role: role}, nil
	}
	id, _, err := PeerIdentity(ctx)
	if err != nil {
		return Caller{}, status.Error(codes.Unauthenticated, "the admin API needs an admin client certificate or a bearer token (run 'quarryctl login')")
	}
	if id.Unit != pki.OUAdmin || RoleRank(id.Role) == 0 {
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
	return a.permit(ctx, c, method, need)
}

// permit lets c call method when its role is at least need, and audits a
// refusal.
func (a Authenticator) permit(ctx context.Context, c Caller, method, need string) (context.Context, error) {
	if RoleRank(c.Role) < RoleRank(need) {
		_ = a.Audit.Audit(&quarryv1.AuditEntry{Who: c.Name, Role: c.Role, Action: "authorize", Target: method, Result: "denied", Detail: "needs role " + need})
		return nil, status.Errorf(codes.PermissionDenied, "%s needs role %s; %s has role %s", shortMethod(method), need, c.Name, c.Role)
	}
	return WithCaller(ctx, c), nil
}

// PeerIdentity returns the verified client certificate's identity.
func PeerIdentity(ctx context.Context) (pki.Identity, *x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return pki.Identity{}, nil, status.Error(codes.Unauthenticated, "no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return pki.Identity{}, nil, status.Error(codes.Unauthenticated, "connection is not TLS")
	}
	if len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return pki.Identity{}, nil, status.Error(codes.Unauthenticated, "a client certificate issued by this controller is required")
	}
	leaf := ti.State.VerifiedChains[0][0]
	id, err := pki.IdentityOf(leaf)
	if err != nil {
		return pki.Identity{}, nil, status.Error(codes.Unauthenticated, err.Error())
	}
	return id, leaf, nil
}

func shortMethod(m string) string {
	if i := strings.LastIndex(m, "/"); i >= 0 {
		return m[i+1:]
	}
	return m
}

// IsAdminMethod is true for everything but AgentService and
// MinerDownloadService, which identify rigs by their certificates, and the
// standard health service.
func IsAdminMethod(m string) bool {
	return !strings.HasPrefix(m, "/"+quarryv1.AgentService_ServiceDesc.ServiceName+"/") &&
		!strings.HasPrefix(m, "/"+quarryv1.MinerDownloadService_ServiceDesc.ServiceName+"/") &&
		!strings.HasPrefix(m, "/grpc.health.v1.Health/")
}

// UnaryInterceptor authenticates and authorises admin calls.
func (a Authenticator) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !IsAdminMethod(info.FullMethod) {
		return handler(ctx, req)
	}
	ctx, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// StreamInterceptor does the same for streaming admin calls.
func (a Authenticator) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !IsAdminMethod(info.FullMethod) {
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
