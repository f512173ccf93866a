package leaderhint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

func TestRefusalMessage(t *testing.T) {
	for _, tc := range []struct{ leader, msg string }{
		{"", "not the leader"},
		{"10.0.0.2:7443", "not the leader; leader is at 10.0.0.2:7443"},
	} {
		st := status.Convert(Refusal(tc.leader))
		if st.Code() != codes.Unavailable || st.Message() != tc.msg {
			t.Errorf("Refusal(%q) = %s %q, want Unavailable %q", tc.leader, st.Code(), st.Message(), tc.msg)
		}
	}
}

func TestLeader(t *testing.T) {
	withInfo := func(c codes.Code, info *errdetails.ErrorInfo) error {
		st, err := status.New(c, "x").WithDetails(info)
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	for _, tc := range []struct {
		name    string
		err     error
		addr    string
		refused bool
	}{
		{"nil", nil, "", false},
		{"plain error", errors.New("not the leader"), "", false},
		{"unavailable without detail", status.Error(codes.Unavailable, "connection refused"), "", false},
		{"refusal with leader", Refusal("ctl-2:7443"), "ctl-2:7443", true},
		{"refusal without leader", Refusal(""), "", true},
		{"wrapped refusal", fmt.Errorf("call: %w", Refusal("ctl-2:7443")), "ctl-2:7443", true},
		{"doubly wrapped refusal", fmt.Errorf("a: %w", fmt.Errorf("b: %w", Refusal("ctl-3:7443"))), "ctl-3:7443", true},
		{"other code with the detail", withInfo(codes.PermissionDenied, &errdetails.ErrorInfo{Reason: Reason, Domain: Domain}), "", false},
		{"other reason", withInfo(codes.Unavailable, &errdetails.ErrorInfo{Reason: "QUOTA", Domain: Domain}), "", false},
		{"other domain", withInfo(codes.Unavailable, &errdetails.ErrorInfo{Reason: Reason, Domain: "example.com"}), "", false},
		{"overlong hint dropped", withInfo(codes.Unavailable, &errdetails.ErrorInfo{Reason: Reason, Domain: Domain, Metadata: map[string]string{MetadataLeader: strings.Repeat("a", 300)}}), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, refused := Leader(tc.err)
			if addr != tc.addr || refused != tc.refused {
				t.Errorf("Leader = %q, %v; want %q, %v", addr, refused, tc.addr, tc.refused)
			}
		})
	}
}

// TestRoundTrip checks the refusal survives the wire, on unary and
// streaming calls, the way a standby controller would send it for any
// method.
func TestRoundTrip(t *testing.T) {
	for _, leader := range []string{"", "127.0.0.1:7443"} {
		t.Run("leader="+leader, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error { return Refusal(leader) }))
			done := make(chan struct{})
			go func() { defer close(done); _ = srv.Serve(lis) }()
			t.Cleanup(func() { srv.Stop(); <-done })
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			ctx := t.Context()

			err = conn.Invoke(ctx, "/quarry.v1.Anything/Unary", &emptypb.Empty{}, &emptypb.Empty{})
			if addr, refused := Leader(err); !refused || addr != leader {
				t.Errorf("unary: Leader(%v) = %q, %v; want %q, true", err, addr, refused, leader)
			}

			stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/quarry.v1.Anything/Stream")
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
			err = stream.RecvMsg(&emptypb.Empty{})
			if addr, refused := Leader(err); !refused || addr != leader {
				t.Errorf("stream: Leader(%v) = %q, %v; want %q, true", err, addr, refused, leader)
			}
		})
	}
}

func TestServerUnavailableIsNotRefusal(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Invoke(context.Background(), "/quarry.v1.Anything/Unary", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("dead server: %v, want Unavailable", err)
	}
	if _, refused := Leader(err); refused {
		t.Errorf("a dead server's error counts as a refusal: %v", err)
	}
}
