package fleet

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Limits on what a rig may send. Everything a rig says is stored and shown,
// so each string and list has a fixed maximum; a message over any of them
// is refused whole rather than stored in part.
const (
	// MaxFieldBytes bounds names, ids, models, versions, bus ids, keys and
	// values: every string a rig sends unless listed in longFields.
	MaxFieldBytes = 256
	// MaxTextBytes bounds free text: event messages and miner errors.
	MaxTextBytes = 1024
	// MaxListLen bounds any list a rig sends unless listed in listLimits.
	MaxListLen = 64
	// MaxCommandOutput bounds a command result's output (miner logs).
	MaxCommandOutput = 1 << 20
)

// ErrTooLarge marks a message from a rig that is over a limit.
var ErrTooLarge = errors.New("over the size limit")

// longFields may hold more than MaxFieldBytes.
var longFields = map[protoreflect.FullName]int{
	"quarry.v1.Event.message":        MaxTextBytes,
	"quarry.v1.MinerStats.error":     MaxTextBytes,
	"quarry.v1.CommandResult.error":  MaxTextBytes,
	"quarry.v1.CommandResult.output": MaxCommandOutput,
}

// listLimits are the lists and maps with their own maximum.
var listLimits = map[protoreflect.FullName]int{
	"quarry.v1.Report.gpus":                64,
	"quarry.v1.Inventory.gpus":             64,
	"quarry.v1.Report.miners":              32,
	"quarry.v1.Report.events":              64,
	"quarry.v1.Inventory.tags":             32,
	"quarry.v1.Inventory.installed_miners": 64,
	"quarry.v1.Event.fields":               16,
	"quarry.v1.HostStats.cpu_core_percent": 1024,
	"quarry.v1.HostStats.sensors":          128,
	"quarry.v1.MinerStats.gpus":            64,
	"quarry.v1.GPUStats.throttle_reasons":  32,
	"quarry.v1.GPUStats.fan_percent":       16,
	"quarry.v1.GPUStats.fan_rpm":           16,
}

// CheckLimits returns an error naming the first field of m that is over
// its limit, with ErrTooLarge in its chain.
func CheckLimits(m proto.Message) error {
	if m == nil {
		return nil
	}
	// Every rig sends a report every few seconds; walking it by reflection
	// cost about 16 µs and 39 allocations. A report the direct check
	// passes is within every limit; one it does not is walked for the
	// precise error.
	if r, ok := m.(*quarryv1.Report); ok && reportWithinLimits(r) {
		return nil
	}
	r := m.ProtoReflect()
	if err := checkMessage(r); err != nil {
		err.at(string(r.Descriptor().Name()))
		return err
	}
	return nil
}

// limitError names the field over its limit. Every report is checked, so
// the field's path is built only for an error, as it unwinds (innermost
// part first), not for every field of every message that passes.
type limitError struct {
	rev    []string // path parts, innermost first
	detail string
}

func (e *limitError) at(part string) { e.rev = append(e.rev, part) }

func (e *limitError) Error() string {
	n := len(e.detail) + 2
	for _, p := range e.rev {
		n += len(p)
	}
	b := make([]byte, 0, n+len(ErrTooLarge.Error()))
	for i := len(e.rev) - 1; i >= 0; i-- {
		b = append(b, e.rev[i]...)
	}
	b = append(b, e.detail...)
	b = append(b, ": "...)
	b = append(b, ErrTooLarge.Error()...)
	return string(b)
}

func (e *limitError) Unwrap() error { return ErrTooLarge }

func checkMessage(m protoreflect.Message) *limitError {
	var err *limitError
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			mp := v.Map()
			if n, max := mp.Len(), listMax(fd); n > max {
				err = &limitError{detail: fmt.Sprintf(" has %d entries, the limit is %d", n, max)}
				break
			}
			mp.Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if err = checkScalar(fd.MapKey(), k.Value()); err != nil {
					err.at(" key")
					return false
				}
				if fd.MapValue().Message() != nil {
					err = checkMessage(mv.Message())
				} else {
					err = checkScalar(fd.MapValue(), mv)
				}
				if err != nil {
					err.at("[" + k.String() + "]")
				}
				return err == nil
			})
		case fd.IsList():
			l := v.List()
			if n, max := l.Len(), listMax(fd); n > max {
				err = &limitError{detail: fmt.Sprintf(" has %d entries, the limit is %d", n, max)}
				break
			}
			for i := 0; i < l.Len() && err == nil; i++ {
				if fd.Message() != nil {
					err = checkMessage(l.Get(i).Message())
				} else {
					err = checkScalar(fd, l.Get(i))
				}
				if err != nil {
					err.at(fmt.Sprintf("[%d]", i))
				}
			}
		case fd.Message() != nil:
			err = checkMessage(v.Message())
		default:
			err = checkScalar(fd, v)
		}
		if err != nil {
			err.at("." + string(fd.Name()))
		}
		return err == nil
	})
	return err
}

func listMax(fd protoreflect.FieldDescriptor) int {
	if n, ok := listLimits[fd.FullName()]; ok {
		return n
	}
	return MaxListLen
}

func checkScalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) *limitError {
	var n int
	switch fd.Kind() {
	case protoreflect.StringKind:
		n = len(v.String())
	case protoreflect.BytesKind:
		n = len(v.Bytes())
	default:
		return nil
	}
	max := MaxFieldBytes
	if l, ok := longFields[fd.FullName()]; ok {
		max = l
	}
	if n > max {
		return &limitError{detail: fmt.Sprintf(" is %d bytes, the limit is %d", n, max)}
	}
	return nil
}

// Truncate shortens s to at most max bytes (on a rune boundary) and says
// how much was cut, so a stored value is bounded but visibly incomplete.
func Truncate(s string, max int) string {
	return truncateFrom(s, max, len(s))
}

// truncateFrom is Truncate for s taken from a text of total bytes, which
// the marker reports.
func truncateFrom(s string, max, total int) string {
	if len(s) <= max && total == len(s) {
		return s
	}
	marker := fmt.Sprintf("…[%d bytes cut]", total)
	keep := max - len(marker)
	if keep < 0 {
		keep = 0
	}
	keep = min(keep, len(s))
	for keep > 0 && keep < len(s) && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + marker
}

// reportWithinLimits is the reflective check written out for Report, the
// one message every rig sends all the time. It must reach every string and
// list in Report the reflective walk reaches: TestReportFastCheckCoversEveryField
// sets each one over its limit, from the descriptors, and fails when this
// passes it. Unknown fields are not among them: the walk skips them too,
// and DropUnknown removes them before anything is stored.
func reportWithinLimits(r *quarryv1.Report) bool {
	if len(r.Gpus) > 64 || len(r.Miners) > 32 || len(r.Events) > 64 {
		return false
	}
	if h := r.Host; h != nil {
		if len(h.CpuCorePercent) > 1024 || len(h.Sensors) > 128 || len(h.CpuPowerSource) > MaxFieldBytes {
			return false
		}
		for _, s := range h.Sensors {
			if len(s.GetName()) > MaxFieldBytes {
				return false
			}
		}
	}
	for _, g := range r.Gpus {
		if g == nil {
			continue
		}
		if len(g.Vendor) > MaxFieldBytes || len(g.Uuid) > MaxFieldBytes || len(g.Name) > MaxFieldBytes || len(g.BusId) > MaxFieldBytes ||
			len(g.AppliedProfile) > MaxFieldBytes || len(g.DriverVersion) > MaxFieldBytes ||
			len(g.FanPercent) > 16 || len(g.FanRpm) > 16 || len(g.ThrottleReasons) > 32 {
			return false
		}
		for _, t := range g.ThrottleReasons {
			if len(t) > MaxFieldBytes {
				return false
			}
		}
	}
	for _, m := range r.Miners {
		if m == nil {
			continue
		}
		if len(m.Miner) > MaxFieldBytes || len(m.Version) > MaxFieldBytes || len(m.Algorithm) > MaxFieldBytes || len(m.Coin) > MaxFieldBytes ||
			len(m.Pool) > MaxFieldBytes || len(m.State) > MaxFieldBytes || len(m.Error) > MaxTextBytes || len(m.Gpus) > 64 {
			return false
		}
		for _, g := range m.Gpus {
			if len(g.GetBusId()) > MaxFieldBytes {
				return false
			}
		}
	}
	for _, e := range r.Events {
		if e == nil {
			continue
		}
		if len(e.Kind) > MaxFieldBytes || len(e.Message) > MaxTextBytes || len(e.Fields) > 16 {
			return false
		}
		for k, v := range e.Fields {
			if len(k) > MaxFieldBytes || len(v) > MaxFieldBytes {
				return false
			}
		}
	}
	return true
}

// DropUnknown removes from m the fields this controller does not know. A
// rig on a newer version may send them; nothing checks or bounds them, and
// a rig's events are kept, so a rig could otherwise park megabytes in its
// record within one message's size limit. Reports, sent all the time, are
// looked at directly first and are nearly always left as they are.
func DropUnknown(m proto.Message) {
	if m == nil {
		return
	}
	if r, ok := m.(*quarryv1.Report); ok && !reportHasUnknown(r) {
		return
	}
	discardUnknown(m.ProtoReflect())
}

func discardUnknown(m protoreflect.Message) {
	if len(m.GetUnknown()) > 0 {
		m.SetUnknown(nil)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					discardUnknown(mv.Message())
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				for i := range v.List().Len() {
					discardUnknown(v.List().Get(i).Message())
				}
			}
		case fd.Message() != nil:
			discardUnknown(v.Message())
		}
		return true
	})
}

// reportHasUnknown reports whether any message in r carries unknown
// fields; TestReportUnknownFieldsFound sets them on each kind of message
// in a report, from the descriptors.
func reportHasUnknown(r *quarryv1.Report) bool {
	if unknownFields(r) || anyUnknownFields(r.Gpus) || anyUnknownFields(r.Events) {
		return true
	}
	if h := r.Host; h != nil && (unknownFields(h) || anyUnknownFields(h.Sensors)) {
		return true
	}
	for _, m := range r.Miners {
		if m != nil && (unknownFields(m) || anyUnknownFields(m.Gpus)) {
			return true
		}
	}
	return false
}

func unknownFields(m proto.Message) bool { return len(m.ProtoReflect().GetUnknown()) > 0 }

// anyUnknownFields reports whether a message in the list, nil ones
// skipped, carries unknown fields.
func anyUnknownFields[M interface {
	comparable
	proto.Message
}](list []M) bool {
	var none M
	for _, m := range list {
		if m != none && unknownFields(m) {
			return true
		}
	}
	return false
}
