package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
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
			s := rawStream(t, tc, bad)
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

// rawStream opens the agent stream as a's rig, over its mutual TLS, with
// a codec that sends whatever bytes the test gives it.
func rawStream(t *testing.T, tc *testController, a *testAgent) grpc.ClientStream {
	t.Helper()
	conn, err := grpc.NewClient(tc.GRPCAddr(), grpc.WithTransportCredentials(credsFor(a)), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	s, err := conn.NewStream(ctx, connectDesc, quarryv1.AgentService_Connect_FullMethodName)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustMarshal(t *testing.T, m proto.Message) rawBytes {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUnknownFieldsFromARigAreNotKept: a rig may send fields this
// controller does not know (a newer agent) and nothing bounds them, so a
// report carrying 64 KiB of them in its host figures and in an event is
// committed without them; the event, which the rig's record keeps, would
// otherwise hold them for good.
func TestUnknownFieldsFromARigAreNotKept(t *testing.T) {
	tc := startTestController(t, nil)
	a := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	rig := a.id.RigID()
	pad := protowire.AppendBytes(protowire.AppendTag(nil, 999, protowire.BytesType), make([]byte, 64<<10))
	rep := &quarryv1.Report{Seq: 1, Host: &quarryv1.HostStats{CpuPercent: 50}, Events: []*quarryv1.Event{{Kind: "miner_started", Message: "ok"}}}
	rep.Host.ProtoReflect().SetUnknown(pad)
	rep.Events[0].ProtoReflect().SetUnknown(pad)

	s := rawStream(t, tc, a)
	if err := s.SendMsg(helloBytes(t, rig)); err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(mustMarshal(t, &quarryv1.ConnectRequest{Msg: &quarryv1.ConnectRequest_Report{Report: rep}})); err != nil {
		t.Fatal(err)
	}
	for {
		resp := &quarryv1.ConnectResponse{}
		if err := s.RecvMsg(resp); err != nil {
			t.Fatalf("no acknowledgement: %v", err)
		}
		if resp.GetAck().GetUpToSeq() == 1 {
			break
		}
	}
	r, err := tc.Fleet().Rig(rig)
	if err != nil {
		t.Fatal(err)
	}
	if r.Host.GetCpuPercent() != 50 || len(r.Events) == 0 || r.Events[len(r.Events)-1].Message != "ok" {
		t.Fatalf("the report's known fields were not kept: %v", r)
	}
	if n := proto.Size(r); n > 16<<10 {
		t.Fatalf("the rig's record is %d bytes: the unknown fields were kept", n)
	}
}
