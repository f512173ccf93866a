package fleet

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// TestReportFastCheckCoversEveryField walks Report's descriptors and, for
// every string, list and map anywhere in it, builds a report with just that
// one at its limit (which both checks must pass) and one over it (which
// both must refuse). A field added to Report or its parts without a line
// in reportWithinLimits fails here.
func TestReportFastCheckCoversEveryField(t *testing.T) {
	var cases int
	var walk func(path []protoreflect.FieldDescriptor, md protoreflect.MessageDescriptor)
	walk = func(path []protoreflect.FieldDescriptor, md protoreflect.MessageDescriptor) {
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			p := append(append([]protoreflect.FieldDescriptor{}, path...), fd)
			name := pathName(p)
			switch {
			case fd.IsMap():
				check(t, name+" entries", p, func(m protoreflect.Message, over bool) {
					mp := m.Mutable(fd).Map()
					for j := range entries(fd, over) {
						mp.Set(protoreflect.ValueOfString(strings.Repeat("k", j+1)).MapKey(), protoreflect.ValueOfString("v"))
					}
				})
				check(t, name+" key", p, func(m protoreflect.Message, over bool) {
					m.Mutable(fd).Map().Set(protoreflect.ValueOfString(sized(fd.MapKey(), over)).MapKey(), protoreflect.ValueOfString("v"))
				})
				check(t, name+" value", p, func(m protoreflect.Message, over bool) {
					m.Mutable(fd).Map().Set(protoreflect.ValueOfString("k").MapKey(), protoreflect.ValueOfString(sized(fd.MapValue(), over)))
				})
				cases += 3
			case fd.IsList():
				check(t, name+" entries", p, func(m protoreflect.Message, over bool) {
					l := m.Mutable(fd).List()
					for range entries(fd, over) {
						l.Append(l.NewElement())
					}
				})
				cases++
				if fd.Kind() == protoreflect.StringKind {
					check(t, name+" element", p, func(m protoreflect.Message, over bool) {
						m.Mutable(fd).List().Append(protoreflect.ValueOfString(sized(fd, over)))
					})
					cases++
				}
				if fd.Message() != nil {
					walk(p, fd.Message())
				}
			case fd.Message() != nil:
				walk(p, fd.Message())
			case fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind:
				check(t, name, p, func(m protoreflect.Message, over bool) {
					if fd.Kind() == protoreflect.BytesKind {
						m.Set(fd, protoreflect.ValueOfBytes([]byte(sized(fd, over))))
						return
					}
					m.Set(fd, protoreflect.ValueOfString(sized(fd, over)))
				})
				cases++
			}
		}
	}
	walk(nil, (&quarryv1.Report{}).ProtoReflect().Descriptor())
	if cases < 30 {
		t.Fatalf("only %d cases from Report's descriptors", cases)
	}
}

// entries is the number of entries at fd's limit, or one over it.
func entries(fd protoreflect.FieldDescriptor, over bool) int {
	if over {
		return listMax(fd) + 1
	}
	return listMax(fd)
}

// sized is a string at fd's limit, or one byte over it.
func sized(fd protoreflect.FieldDescriptor, over bool) string {
	n := MaxFieldBytes
	if l, ok := longFields[fd.FullName()]; ok {
		n = l
	}
	if over {
		n++
	}
	return strings.Repeat("x", n)
}

func pathName(p []protoreflect.FieldDescriptor) string {
	var b strings.Builder
	b.WriteString("Report")
	for _, fd := range p {
		b.WriteString("." + string(fd.Name()))
	}
	return b.String()
}

// down fills r along path, one element of each list on the way, and
// returns the message at its end.
func down(r *quarryv1.Report, path []protoreflect.FieldDescriptor) protoreflect.Message {
	m := r.ProtoReflect()
	for _, fd := range path {
		if fd.IsList() {
			l := m.Mutable(fd).List()
			e := l.NewElement()
			l.Append(e)
			m = e.Message()
			continue
		}
		m = m.Mutable(fd).Message()
	}
	return m
}

// check builds a report down path (one element of each list on the way),
// lets set fill the last field at or over its limit, and compares both
// checks with what the limit says.
func check(t *testing.T, name string, path []protoreflect.FieldDescriptor, set func(m protoreflect.Message, over bool)) {
	t.Helper()
	for _, over := range []bool{false, true} {
		r := &quarryv1.Report{}
		set(down(r, path[:len(path)-1]), over)
		fast := reportWithinLimits(r)
		slow := checkMessage(r.ProtoReflect()) == nil
		if fast != !over || slow != !over {
			t.Errorf("%s (over the limit: %v): direct check passes it: %v, reflective walk passes it: %v", name, over, fast, slow)
		}
	}
}

// TestReportUnknownFieldsFound sets unknown fields on every message in a
// report, one at a time, from the descriptors: each must be found and
// dropped, and a report without them must be left alone.
func TestReportUnknownFieldsFound(t *testing.T) {
	// Field 999, varint 1: a field no message in Report has.
	unknown := protoreflect.RawFields{0xb8, 0x3e, 0x01}
	var cases int
	var walk func(path []protoreflect.FieldDescriptor, md protoreflect.MessageDescriptor)
	walk = func(path []protoreflect.FieldDescriptor, md protoreflect.MessageDescriptor) {
		r := &quarryv1.Report{Seq: 7}
		m := down(r, path)
		clean := proto.Clone(r).(*quarryv1.Report)
		if reportHasUnknown(r) {
			t.Fatalf("%s: found unknown fields in a report without any", pathName(path))
		}
		m.SetUnknown(unknown)
		cases++
		if !reportHasUnknown(r) {
			t.Errorf("%s: unknown fields not found", pathName(path))
		}
		DropUnknown(r)
		if !proto.Equal(r, clean) || reportHasUnknown(r) {
			t.Errorf("%s: unknown fields not dropped: %v", pathName(path), r)
		}
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			if fd.Message() != nil && !fd.IsMap() {
				walk(append(append([]protoreflect.FieldDescriptor{}, path...), fd), fd.Message())
			}
		}
	}
	walk(nil, (&quarryv1.Report{}).ProtoReflect().Descriptor())
	if cases < 7 {
		t.Fatalf("only %d messages in Report's tree", cases)
	}
}
