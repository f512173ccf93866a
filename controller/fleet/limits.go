package fleet

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
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
	return checkMessage(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().Name()))
}

func checkMessage(m protoreflect.Message, path string) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			mp := v.Map()
			if n, max := mp.Len(), listMax(fd); n > max {
				err = fmt.Errorf("%s has %d entries, the limit is %d: %w", p, n, max, ErrTooLarge)
				return false
			}
			mp.Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if err = checkScalar(fd.MapKey(), k.Value(), p+" key"); err != nil {
					return false
				}
				if fd.MapValue().Message() != nil {
					err = checkMessage(mv.Message(), p+"["+k.String()+"]")
				} else {
					err = checkScalar(fd.MapValue(), mv, p+"["+k.String()+"]")
				}
				return err == nil
			})
		case fd.IsList():
			l := v.List()
			if n, max := l.Len(), listMax(fd); n > max {
				err = fmt.Errorf("%s has %d entries, the limit is %d: %w", p, n, max, ErrTooLarge)
				return false
			}
			for i := 0; i < l.Len() && err == nil; i++ {
				ip := fmt.Sprintf("%s[%d]", p, i)
				if fd.Message() != nil {
					err = checkMessage(l.Get(i).Message(), ip)
				} else {
					err = checkScalar(fd, l.Get(i), ip)
				}
			}
		case fd.Message() != nil:
			err = checkMessage(v.Message(), p)
		default:
			err = checkScalar(fd, v, p)
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

func checkScalar(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) error {
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
		return fmt.Errorf("%s is %d bytes, the limit is %d: %w", path, n, max, ErrTooLarge)
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
