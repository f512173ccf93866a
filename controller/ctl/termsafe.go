package ctl

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/quarryfleet/quarry/pkg/termsafe"
)

// multiline are the string fields printed as blocks of lines (logs,
// specs, diffs); every other string is one table cell or one line.
var multiline = map[protoreflect.Name]bool{"text": true, "output_tail": true, "diff": true, "spec_yaml": true, "error": true}

// cleanStrings removes terminal controls from every string in m, in place:
// names, hostnames, GPU models, events and logs come from rigs, and a
// table must show them as text, never let them drive the terminal.
func cleanStrings(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				if fd.Kind() == protoreflect.StringKind {
					l.Set(i, protoreflect.ValueOfString(cleanField(fd, l.Get(i).String())))
				} else if fd.Kind() == protoreflect.MessageKind {
					cleanStrings(l.Get(i).Message())
				}
			}
		case fd.IsMap():
			mp := v.Map()
			type kv struct {
				k protoreflect.MapKey
				v protoreflect.Value
			}
			var fix []kv
			mp.Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				switch fd.MapValue().Kind() {
				case protoreflect.StringKind:
					fix = append(fix, kv{k, protoreflect.ValueOfString(termsafe.Line(mv.String()))})
				case protoreflect.MessageKind:
					cleanStrings(mv.Message())
				}
				if fd.MapKey().Kind() == protoreflect.StringKind && termsafe.Line(k.String()) != k.String() {
					fix = append(fix, kv{k, protoreflect.Value{}})
				}
				return true
			})
			for _, f := range fix {
				if !f.v.IsValid() {
					val := mp.Get(f.k)
					mp.Clear(f.k)
					mp.Set(protoreflect.ValueOfString(termsafe.Line(f.k.String())).MapKey(), val)
					continue
				}
				mp.Set(f.k, f.v)
			}
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString(cleanField(fd, v.String())))
		case fd.Kind() == protoreflect.MessageKind:
			cleanStrings(v.Message())
		}
		return true
	})
}

func cleanField(fd protoreflect.FieldDescriptor, s string) string {
	if multiline[fd.Name()] {
		return termsafe.Text(s)
	}
	return termsafe.Line(s)
}

// cleanReplies cleans every answer for table output; JSON output is left
// as sent, its encoder escapes control characters.
func (o *Options) cleanReplies() []grpc.DialOption {
	on := func() bool { return o.Output != "json" }
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if m, ok := reply.(proto.Message); ok && err == nil && on() {
				cleanStrings(m.ProtoReflect())
			}
			return err
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil || !on() {
				return s, err
			}
			return cleanStream{s}, nil
		}),
	}
}

type cleanStream struct{ grpc.ClientStream }

func (s cleanStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if pm, ok := m.(proto.Message); ok && err == nil {
		cleanStrings(pm.ProtoReflect())
	}
	return err
}
