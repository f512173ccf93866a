package nvidia

import "math/bits"

// throttleNames follows NVML's nvmlClocksEventReason bit order.
var throttleNames = [...]string{
	"gpu_idle", "applications_clocks", "sw_power_cap", "hw_slowdown",
	"sync_boost", "sw_thermal_slowdown", "hw_thermal_slowdown",
	"hw_power_brake_slowdown", "display_clocks",
}

// ThrottleReasons decodes NVML's clock event bitmask into names; unknown
// bits come out as "bit_N" so nothing is silently dropped.
func ThrottleReasons(mask uint64) []string {
	var out []string
	for mask != 0 {
		b := bits.TrailingZeros64(mask)
		mask &^= 1 << b
		if b < len(throttleNames) {
			out = append(out, throttleNames[b])
		} else {
			out = append(out, "bit_"+itoa(b))
		}
	}
	return out
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return string(rune('0'+n/10)) + string(rune('0'+n%10))
}
