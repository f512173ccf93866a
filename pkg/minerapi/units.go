package minerapi

import (
	"fmt"
	"strconv"
	"strings"
)

// UnitFactor returns the multiplier that turns a reading in unit into hashes
// per second. It accepts the spellings miners use: "H/s", "kH/s", "Mh/s",
// "GH", "mhs" (hiveos), "Sol/s", "g/s" (cuckoo graphs). An empty unit means
// H/s.
func UnitFactor(unit string) (float64, error) {
	u := strings.ToLower(strings.TrimSpace(unit))
	u = strings.TrimSuffix(u, "/s")
	u = strings.TrimSuffix(u, "ps")
	if u != "hs" && u != "h" && len(u) > 2 && strings.HasSuffix(u, "hs") {
		u = strings.TrimSuffix(u, "s") // hiveos "khs", "mhs"
	}
	if u == "hs" {
		u = "h"
	}
	var base string
	switch {
	case u == "":
		return 1, nil
	case strings.HasSuffix(u, "sol"):
		base = "sol"
	case strings.HasSuffix(u, "h"):
		base = "h"
	case strings.HasSuffix(u, "g"):
		base = "g"
	default:
		return 0, configErr("unknown hashrate unit %q", unit)
	}
	switch strings.TrimSuffix(u, base) {
	case "":
		return 1, nil
	case "k":
		return 1e3, nil
	case "m":
		return 1e6, nil
	case "g":
		return 1e9, nil
	case "t":
		return 1e12, nil
	case "p":
		return 1e15, nil
	case "e":
		return 1e18, nil
	}
	return 0, configErr("unknown hashrate unit %q", unit)
}

// NormalizeBusID turns the PCI addresses miners print into the long form
// "0000:01:00.0" that NVML and sysfs use. Accepted: "0000:01:00.0",
// "00000000:01:00.0" (NVML), "01:00.0" (xmrig), "01:00" (no function).
// Hex digits may be upper or lower case.
func NormalizeBusID(s string) (string, error) {
	orig := s
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", fmt.Errorf("empty PCI bus id")
	}
	fn := uint64(0)
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		f, err := strconv.ParseUint(s[i+1:], 16, 8)
		if err != nil || f > 7 {
			return "", fmt.Errorf("PCI bus id %.40q: bad function", orig)
		}
		fn = f
		s = s[:i]
	}
	parts := strings.Split(s, ":")
	var domain, bus, dev uint64
	var err error
	switch len(parts) {
	case 2:
		bus, dev, err = parseBusDev(parts[0], parts[1])
	case 3:
		domain, err = strconv.ParseUint(parts[0], 16, 32)
		if err == nil {
			bus, dev, err = parseBusDev(parts[1], parts[2])
		}
	default:
		err = fmt.Errorf("want [domain:]bus:device[.function]")
	}
	if err != nil {
		return "", fmt.Errorf("PCI bus id %.40q: %w", orig, err)
	}
	return formatBusID(domain, bus, dev, fn), nil
}

func parseBusDev(b, d string) (uint64, uint64, error) {
	bus, err := strconv.ParseUint(b, 16, 8)
	if err != nil {
		return 0, 0, fmt.Errorf("bad bus %.10q", b)
	}
	dev, err := strconv.ParseUint(d, 16, 8)
	if err != nil || dev > 31 {
		return 0, 0, fmt.Errorf("bad device %.10q", d)
	}
	return bus, dev, nil
}

func formatBusID(domain, bus, dev, fn uint64) string {
	return fmt.Sprintf("%04x:%02x:%02x.%x", domain, bus, dev, fn)
}

// busIDFromNumbers builds a bus id from the integers T-Rex reports. Out of
// range values (broken replies) give "".
func busIDFromNumbers(domain, bus, dev num) string {
	if !bus.OK || bus.V < 0 || bus.V > 255 || domain.V < 0 || domain.V > 0xffff || dev.V < 0 || dev.V > 31 {
		return ""
	}
	return formatBusID(uint64(domain.V), uint64(bus.V), uint64(dev.V), 0)
}
