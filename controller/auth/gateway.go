package auth

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Gateway calls the admin services' unary methods in-process on behalf of
// a caller authenticated elsewhere (a dashboard session). Each call passes
// the same role table and audit interceptor as a call over gRPC, so the
// browser can do exactly what the caller's role allows on the command line
// and leaves the same audit trail; there is no second list of who may do
// what.
type Gateway struct {
	authn   Authenticator
	audit   Audit
	methods map[string]gatewayMethod
}

type gatewayMethod struct {
	impl    any
	handler func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error)
}

// NewGateway returns a gateway checking roles with authn's table and
// auditing with audit.
func NewGateway(authn Authenticator, audit Audit) *Gateway {
	return &Gateway{authn: authn, audit: audit, methods: map[string]gatewayMethod{}}
}

// Register makes desc's unary methods callable through the gateway.
// Streaming methods are not: the dashboard polls or uses its own stream.
func (g *Gateway) Register(desc *grpc.ServiceDesc, impl any) {
	for _, m := range desc.Methods {
		g.methods["/"+desc.ServiceName+"/"+m.MethodName] = gatewayMethod{impl: impl, handler: m.Handler}
	}
}

// Methods maps each method the gateway can call to the least role it
// needs, so a page shows only the controls its viewer may use. Methods
// without a role are left out: nobody may call them.
func (g *Gateway) Methods() map[string]string {
	out := make(map[string]string, len(g.methods))
	for _, m := range slices.Sorted(maps.Keys(g.methods)) {
		if need, ok := g.authn.Roles[m]; ok {
			out[m] = need
		}
	}
	return out
}

// Call runs fullMethod ("/quarry.v1.FleetService/ListRigs") as c. decode
// fills the request message; it returns the response message or a gRPC
// status error.
func (g *Gateway) Call(ctx context.Context, c Caller, fullMethod string, decode func(any) error) (any, error) {
	m, ok := g.methods[fullMethod]
	if !ok || !IsAdminMethod(fullMethod) {
		return nil, status.Errorf(codes.Unimplemented, "no method %s", strings.TrimPrefix(fullMethod, "/"))
	}
	need, ok := g.authn.Roles[fullMethod]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "method %s has no role assigned", fullMethod)
	}
	if RoleRank(c.Role) == 0 {
		return nil, status.Error(codes.Unauthenticated, "no signed-in admin caller")
	}
	ctx, err := g.authn.permit(ctx, c, fullMethod, need)
	if err != nil {
		return nil, err
	}
	dec := func(v any) error {
		if err := decode(v); err != nil {
			return status.Error(codes.InvalidArgument, fmt.Sprintf("request for %s: %v", shortMethod(fullMethod), err))
		}
		return nil
	}
	return m.handler(m.impl, ctx, dec, g.audit.UnaryInterceptor)
}
