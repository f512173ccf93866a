package telemetry

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Print writes s as "table" (for people) or "json".
func Print(w io.Writer, s *Sample, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	case "table", "":
	default:
		return fmt.Errorf("telemetry: unknown format %q (want table or json)", format)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if h := s.Host; h != nil {
		fmt.Fprintf(tw, "HOST\t%s  %s  kernel %s  up %s\n", h.Hostname, h.Platform, h.Kernel, h.Uptime)
		fmt.Fprintf(tw, "CPU\t%s × %d  %s busy", h.CPUModel, h.CPUCores, pct(h.CPUPercent))
		if h.Load != nil {
			fmt.Fprintf(tw, "  load %.2f %.2f %.2f", h.Load.Load1, h.Load.Load5, h.Load.Load15)
		}
		fmt.Fprintln(tw)
		if h.Memory != nil {
			fmt.Fprintf(tw, "MEM\t%s / %s", size(h.Memory.Used), size(h.Memory.Total))
			if h.Swap != nil && h.Swap.Total > 0 {
				fmt.Fprintf(tw, "  swap %s / %s", size(h.Swap.Used), size(h.Swap.Total))
			}
			fmt.Fprintln(tw)
		}
		for _, d := range h.Disks {
			fmt.Fprintf(tw, "DISK\t%s %s  %s / %s\n", d.Label, d.Path, size(d.Used), size(d.Total))
		}
		if h.NetTotal != nil {
			fmt.Fprintf(tw, "NET\trx %s/s  tx %s/s\n", size(uint64(h.NetTotal.RxBytesPS)), size(uint64(h.NetTotal.TxBytesPS)))
		}
		for _, t := range h.Temperatures {
			fmt.Fprintf(tw, "TEMP\t%s %.1f°C\n", t.Name, t.Celsius)
		}
		fmt.Fprintln(tw)
	}
	if len(s.GPUs) > 0 {
		fmt.Fprintln(tw, "GPU\tNAME\tBUS\tTEMP\tFAN\tPOWER/LIMIT\tCORE\tMEM\tUTIL\tVRAM\tPSTATE\tOC\tTHROTTLE")
		for _, g := range s.GPUs {
			if g.Lost {
				fmt.Fprintf(tw, "%s%d\t%s\t%s\tLOST\t\t\t\t\t\t\t\t\t\n", g.Vendor, g.Index, g.Name, g.PCIBusID)
				continue
			}
			fan := "-"
			if len(g.FanPercent) > 0 {
				fan = fmt.Sprintf("%d%%", g.FanPercent[0])
			} else if len(g.FanRPM) > 0 {
				fan = fmt.Sprintf("%drpm", g.FanRPM[0])
			}
			vram := "-"
			if g.MemUsed != nil && g.MemTotal != nil {
				vram = size(*g.MemUsed) + "/" + size(*g.MemTotal)
			}
			pstate := "-"
			if g.PState != nil {
				pstate = fmt.Sprintf("P%d", *g.PState)
			}
			oc := "-"
			if g.Overclock != nil {
				oc = g.Overclock.Profile
			}
			fmt.Fprintf(tw, "%s%d\t%s\t%s\t%s\t%s\t%s/%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				g.Vendor, g.Index, g.Name, g.PCIBusID, temp(g.TempC), fan, watt(g.PowerW), watt(g.PowerLimitW),
				mhz(g.SMClockMHz), mhz(g.MemClockMHz), ipct(g.UtilPercent), vram, pstate, oc, strings.Join(g.ThrottleReasons, ","))
		}
	}
	return tw.Flush()
}

func pct(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", *v)
}

func ipct(v *int) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%d%%", *v)
}

func temp(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f°C", *v)
}

func watt(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0fW", *v)
}

func mhz(v *int) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%dMHz", *v)
}

func size(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
