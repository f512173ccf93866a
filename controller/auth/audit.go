package auth

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Audit writes one audit entry for each call of an audited admin method:
// who called, the action, what it acted on, and how it ended. It runs after
// the Authenticator, so the caller is known; calls the Authenticator
// refuses are audited there.
type Audit struct {
	Log Auditor
	// Actions maps full method names to the action their entries carry.
	// A method missing from it is not audited.
	Actions map[string]string
}

// Entry is the part of a call's audit entry its handler may fill in:
// Target (what the call acted on) and Detail (anything worth keeping).
// Action starts as the method's action from the table; a handler may make
// it more precise (the kind of command sent, the rotation step run).
type Entry struct {
	Action string
	Target string
	Detail string
}

type entryKey struct{}

// discard takes the notes of calls that are not audited (or made outside
// the interceptor, as in tests), so handlers never check for nil.
func discard() *Entry { return &Entry{} }

// Note returns the audit entry of the call in ctx, for the handler to add
// its target and detail to.
func Note(ctx context.Context) *Entry {
	if e, ok := ctx.Value(entryKey{}).(*Entry); ok {
		return e
	}
	return discard()
}

// Result is how an audit entry records a call's outcome: "ok" or the
// error's message, as the caller saw it.
func Result(err error) string {
	if err == nil {
		return "ok"
	}
	return "error: " + status.Convert(err).Message()
}

func (a Audit) begin(ctx context.Context, method string) (context.Context, *Entry, bool) {
	action, ok := a.Actions[method]
	if !ok {
		return ctx, nil, false
	}
	e := &Entry{Action: action}
	return context.WithValue(ctx, entryKey{}, e), e, true
}

func (a Audit) write(ctx context.Context, e *Entry, err error) {
	c := CallerFrom(ctx)
	_ = a.Log.Audit(&quarryv1.AuditEntry{Who: c.Name, Role: c.Role, Action: e.Action, Target: e.Target, Result: Result(err), Detail: e.Detail})
}

// UnaryInterceptor audits unary admin calls.
func (a Audit) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, e, ok := a.begin(ctx, info.FullMethod)
	if !ok {
		return handler(ctx, req)
	}
	resp, err := handler(ctx, req)
	a.write(ctx, e, err)
	return resp, err
}

// StreamInterceptor audits streaming admin calls once, when they end.
func (a Audit) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, e, ok := a.begin(ss.Context(), info.FullMethod)
	if !ok {
		return handler(srv, ss)
	}
	err := handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	a.write(ctx, e, err)
	return err
}
