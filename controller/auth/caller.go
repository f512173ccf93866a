// Package auth says who is calling the controller's gRPC services and what
// they may do: the roles, the caller a request carries, the interceptor
// that authenticates and authorises admin calls, and the one that writes
// their audit entries. The domain packages import it to read the caller;
// it imports none of them.
package auth

import "context"

// Roles, weakest first. A role may do everything the roles before it may.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
	// RoleRig is the role audit entries give a rig calling AgentService;
	// it ranks below every admin role.
	RoleRig = "rig"
	// RoleSystem is the role of entries the controller writes on its own
	// behalf (the profit switcher, billing's relay, gossip upkeep).
	RoleSystem = "system"
)

// RoleRank orders roles; unknown roles, rig and system rank below viewer.
func RoleRank(role string) int {
	switch role {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Caller is who is calling: an admin client (Name and Role) or a rig (Rig,
// with Role RoleRig).
type Caller struct {
	Name string
	Role string
	Rig  string
}

type callerKey struct{}

// WithCaller returns ctx carrying c; the interceptors set it, tests and
// in-process callers may too.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller the interceptor authenticated, or the zero
// Caller outside an authenticated call.
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// SeesSecrets reports whether the caller may read secrets: pool
// passwords, miner API tokens, command payloads and outputs, job
// environments. Viewers may not; operators, who can set them, may.
func SeesSecrets(ctx context.Context) bool {
	return RoleRank(CallerFrom(ctx).Role) >= RoleRank(RoleOperator)
}
