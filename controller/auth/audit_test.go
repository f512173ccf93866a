package auth

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

type memLog struct{ entries []*quarryv1.AuditEntry }

func (m *memLog) Audit(e *quarryv1.AuditEntry) error {
	m.entries = append(m.entries, e)
	return nil
}

func TestAuditInterceptor(t *testing.T) {
	const method = "/quarry.v1.Test/Act"
	for _, tc := range []struct {
		name    string
		method  string
		err     error
		want    *quarryv1.AuditEntry
		entries int
	}{
		{"ok call", method, nil, &quarryv1.AuditEntry{Who: "olga", Role: RoleOperator, Action: "thing act", Target: "rig-1", Result: "ok", Detail: "why"}, 1},
		{"failed call says why", method, status.Error(codes.NotFound, "rig rig-1 is unknown"),
			&quarryv1.AuditEntry{Who: "olga", Role: RoleOperator, Action: "thing act", Target: "rig-1", Result: "error: rig rig-1 is unknown", Detail: "why"}, 1},
		{"plain error", method, errors.New("boom"), &quarryv1.AuditEntry{Who: "olga", Role: RoleOperator, Action: "thing act", Target: "rig-1", Result: "error: boom", Detail: "why"}, 1},
		{"method not in the table", "/quarry.v1.Test/Read", nil, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &memLog{}
			a := Audit{Log: log, Actions: map[string]string{method: "thing act"}}
			ctx := WithCaller(context.Background(), Caller{Name: "olga", Role: RoleOperator})
			_, err := a.UnaryInterceptor(ctx, nil, &grpc.UnaryServerInfo{FullMethod: tc.method}, func(ctx context.Context, _ any) (any, error) {
				n := Note(ctx)
				n.Target, n.Detail = "rig-1", "why"
				return nil, tc.err
			})
			if !errors.Is(err, tc.err) {
				t.Fatalf("the handler's error %v came back as %v", tc.err, err)
			}
			if len(log.entries) != tc.entries {
				t.Fatalf("%d entries, want %d", len(log.entries), tc.entries)
			}
			if tc.want == nil {
				return
			}
			if got := log.entries[0]; got.Who != tc.want.Who || got.Role != tc.want.Role || got.Action != tc.want.Action ||
				got.Target != tc.want.Target || got.Result != tc.want.Result || got.Detail != tc.want.Detail {
				t.Errorf("entry %v, want %v", got, tc.want)
			}
		})
	}
}

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s stream) Context() context.Context { return s.ctx }

// A stream is audited once, when it ends, with what its handler noted
// along the way; the handler may name the action more precisely.
func TestAuditInterceptorStream(t *testing.T) {
	log := &memLog{}
	a := Audit{Log: log, Actions: map[string]string{"/quarry.v1.Test/Watch": "thing"}}
	ctx := WithCaller(context.Background(), Caller{Name: "ann", Role: RoleAdmin})
	err := a.StreamInterceptor(nil, stream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: "/quarry.v1.Test/Watch"}, func(_ any, ss grpc.ServerStream) error {
		n := Note(ss.Context())
		n.Action, n.Detail = "thing.query.temps", "3 answers"
		if CallerFrom(ss.Context()).Name != "ann" {
			t.Error("the caller is lost inside the stream")
		}
		return nil
	})
	if err != nil || len(log.entries) != 1 || log.entries[0].Action != "thing.query.temps" || log.entries[0].Detail != "3 answers" || log.entries[0].Who != "ann" {
		t.Fatalf("err %v, entries %v", err, log.entries)
	}
}

// Outside an audited call a handler's notes go nowhere and cost nothing.
func TestNoteOutsideACall(t *testing.T) {
	n := Note(context.Background())
	n.Target = "x"
	if Note(context.Background()).Target != "" {
		t.Error("notes made outside a call are shared")
	}
}

func TestSeesSecrets(t *testing.T) {
	for role, want := range map[string]bool{RoleViewer: false, RoleOperator: true, RoleAdmin: true, RoleRig: false, "": false} {
		if got := SeesSecrets(WithCaller(context.Background(), Caller{Name: "x", Role: role})); got != want {
			t.Errorf("%q sees secrets: %v, want %v", role, got, want)
		}
	}
}
