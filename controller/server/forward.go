package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"

	"github.com/quarryfleet/quarry/controller/cluster"
	"github.com/quarryfleet/quarry/pkg/leaderhint"
	"github.com/quarryfleet/quarry/pkg/pki"
)

// forwarder passes admin calls a standby receives on to the leader, so
// quarryctl or a script pointed at any member is served. Only calls that
// carry a bearer token go: the leader checks the token, its role and
// audits the call as if it came directly. A rig's call proves its
// identity with its own TLS certificate, which cannot travel through a
// proxy, so rigs are answered with the leader's address and connect
// there themselves.
type forwarder struct {
	node *cluster.Node
	self string // this member's client-facing address
	ca   *pki.CA

	mu    sync.Mutex
	addr  string
	conn  *grpc.ClientConn
	close bool
}

// forwardable is the metadata that goes with a forwarded call: the
// caller's credentials and quarryctl's own headers, nothing the standby's
// transport added.
func forwardable(md metadata.MD) metadata.MD {
	out := metadata.MD{}
	for k, v := range md {
		if k == "authorization" || strings.HasPrefix(k, "quarry-") {
			out[k] = v
		}
	}
	return out
}

func (f *forwarder) handle(_ any, ss grpc.ServerStream) error {
	_, leader, _ := f.node.Leader()
	md, _ := metadata.FromIncomingContext(ss.Context())
	if len(md.Get("authorization")) == 0 || leader == "" || leader == f.self {
		return leaderhint.Refusal(leader)
	}
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return leaderhint.Refusal(leader)
	}
	conn, err := f.leaderConn(leader)
	if err != nil {
		return leaderhint.Refusal(leader)
	}
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ss.Context(), forwardable(md)))
	defer cancel()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodecV2(passCodec{}))
	if err != nil {
		return err
	}
	go func() {
		for {
			var fr frame
			if err := ss.RecvMsg(&fr); err != nil {
				if errors.Is(err, io.EOF) {
					_ = cs.CloseSend()
				} else {
					cancel()
				}
				return
			}
			if err := cs.SendMsg(&fr); err != nil {
				return
			}
		}
	}()
	if hdr, err := cs.Header(); err == nil && len(hdr) > 0 {
		if err := ss.SendHeader(hdr); err != nil {
			return err
		}
	}
	for {
		var fr frame
		if err := cs.RecvMsg(&fr); err != nil {
			ss.SetTrailer(cs.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err // the leader's status, as it gave it
		}
		if err := ss.SendMsg(&fr); err != nil {
			return err
		}
	}
}

// leaderConn is a connection to the leader's gRPC address, verified
// against the group's CA; kept while the leader stays.
func (f *forwarder) leaderConn(addr string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.close {
		return nil, errors.New("standby stopped")
	}
	if f.conn != nil && f.addr == addr {
		return f.conn, nil
	}
	if f.conn != nil {
		f.conn.Close()
		f.conn = nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: f.ca.Pool(), ServerName: host, MinVersion: tls.VersionTLS13})))
	if err != nil {
		return nil, err
	}
	f.addr, f.conn = addr, conn
	return conn, nil
}

func (f *forwarder) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.close = true
	if f.conn != nil {
		f.conn.Close()
		f.conn = nil
	}
}

// frame is one gRPC message, passed on undecoded.
type frame struct{ b []byte }

// passCodec moves messages as bytes, so the standby forwards any method
// without knowing its types.
type passCodec struct{}

func (passCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*frame).b)}, nil
}

func (passCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*frame).b = data.Materialize()
	return nil
}

func (passCodec) Name() string { return "proto" }
