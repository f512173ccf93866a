package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// rawCodec lets a test put arbitrary bytes on the wire where gRPC expects a
// protobuf message.
type rawCodec struct{}

type rawBytes []byte

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.(rawBytes); ok {
		return b, nil
	}
	return proto.Marshal(v.(proto.Message))
}
func (rawCodec) Unmarshal(b []byte, v any) error { return proto.Unmarshal(b, v.(proto.Message)) }
func (rawCodec) Name() string                    { return "proto" }

var connectDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

func helloBytes(t *testing.T, rig string) rawBytes {
	b, err := proto.Marshal(&quarryv1.ConnectRequest{Msg: &quarryv1.ConnectRequest_Hello{Hello: &quarryv1.Hello{RigId: rig}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBadInputOnTheAgentStream(t *testing.T) {
	tc := startTestController(t, nil)
	good := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	good.report(t, 3)
	good.run(t, tc, pingHandler{})
	eventually(t, "good agent committed", func() bool { return tc.Fleet().LastSeq(good.id.RigID()) == 3 })

	bad := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	rig := bad.id.RigID()
	report := &quarryv1.ConnectRequest{Msg: &quarryv1.ConnectRequest_Report{Report: &quarryv1.Report{Seq: 1, Host: &quarryv1.HostStats{CpuPercent: 50, MemoryTotalBytes: 1 << 30}}}}
	full, _ := proto.Marshal(report)

	cases := []struct {
		name string
		msgs []rawBytes
		code codes.Code
	}{
		{"garbage first", []rawBytes{rawBytes("\xff\xff\xff\xff garbage")}, codes.Internal},
		{"garbage after hello", []rawBytes{helloBytes(t, rig), rawBytes("\x12\xff\xff\xff\xff\x0f")}, codes.Internal},
		{"truncated report", []rawBytes{helloBytes(t, rig), rawBytes(full[:len(full)-3])}, codes.Internal},
		{"report before hello", []rawBytes{rawBytes(full)}, codes.InvalidArgument},
		{"duplicate hello", []rawBytes{helloBytes(t, rig), helloBytes(t, rig)}, codes.InvalidArgument},
		{"empty message", []rawBytes{helloBytes(t, rig), rawBytes{}}, codes.InvalidArgument},
		{"report seq zero", []rawBytes{helloBytes(t, rig), mustMarshal(t, &quarryv1.ConnectRequest{Msg: &quarryv1.ConnectRequest_Report{Report: &quarryv1.Report{}}})}, codes.InvalidArgument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, err := grpc.NewClient(tc.GRPCAddr(), grpc.WithTransportCredentials(credsFor(bad)), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := conn.NewStream(cctx, connectDesc, quarryv1.AgentService_Connect_FullMethodName)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range c.msgs {
				if err := s.SendMsg(m); err != nil {
					break
				}
			}
			var got error
			for got == nil {
				got = s.RecvMsg(&quarryv1.ConnectResponse{})
			}
			if status.Code(got) != c.code {
				t.Fatalf("got %v, want %s", got, c.code)
			}
		})
	}
	// Nothing the bad client sent was committed, and the good agent kept
	// going the whole time.
	if n := tc.Fleet().LastSeq(rig); n != 0 {
		t.Fatalf("bad client committed up to seq %d", n)
	}
	good.report(t, 2)
	eventually(t, "good agent still served", func() bool { return tc.Fleet().LastSeq(good.id.RigID()) == 5 })
	if !tc.Fleet().Online(good.id.RigID()) {
		t.Fatal("good agent went offline")
	}
}

func mustMarshal(t *testing.T, m proto.Message) rawBytes {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
