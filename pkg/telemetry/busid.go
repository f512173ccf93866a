package telemetry

import (
	"fmt"
	"strings"
)

// NormalizeBusID turns the PCI addresses drivers report ("00000000:01:00.0"
// from NVML, "0000:01:00.0" from sysfs, upper or lower case) into the
// four-digit-domain lower-case form "0000:01:00.0", so cards can be
// matched across vendors and tools.
func NormalizeBusID(id string) (string, error) {
	id = strings.ToLower(strings.TrimSpace(strings.TrimRight(id, "\x00")))
	var domain, bus, dev, fn uint64
	parts := strings.Split(id, ":")
	switch len(parts) {
	case 3:
	case 2:
		parts = append([]string{"0"}, parts...)
	default:
		return "", fmt.Errorf("pci bus id %q: want [domain:]bus:device.function", id)
	}
	devFn := strings.SplitN(parts[2], ".", 2)
	if len(devFn) != 2 {
		return "", fmt.Errorf("pci bus id %q: missing .function", id)
	}
	for _, f := range []struct {
		s    string
		dst  *uint64
		bits int
	}{{parts[0], &domain, 32}, {parts[1], &bus, 8}, {devFn[0], &dev, 5}, {devFn[1], &fn, 3}} {
		if f.s == "" {
			return "", fmt.Errorf("pci bus id %q: empty field", id)
		}
		var v uint64
		if _, err := fmt.Sscanf(f.s, "%x", &v); err != nil || len(f.s) > 8 || v >= 1<<f.bits {
			return "", fmt.Errorf("pci bus id %q: bad field %q", id, f.s)
		}
		*f.dst = v
	}
	return fmt.Sprintf("%04x:%02x:%02x.%x", domain, bus, dev, fn), nil
}
