// Package amdgpu reads AMD GPUs from the amdgpu driver's sysfs files under
// <sysfs>/class/drm/card*/device, including its hwmon directory.
package amdgpu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/quarryfleet/quarry/pkg/telemetry"
)

// Name is the collector's registry name.
const Name = "amdgpu"

const vendorAMD = "0x1002"

// Collector reads every AMD card on each Update.
type Collector struct {
	sys string
	oc  telemetry.OCSource
}

var _ telemetry.Collector = (*Collector)(nil)

// Factory builds the collector over cfg.SysRoot (default /sys).
func Factory(cfg telemetry.Config) (telemetry.Collector, error) { return New(cfg), nil }

// New returns a collector over cfg.SysRoot.
func New(cfg telemetry.Config) *Collector {
	root := cfg.SysRoot
	if root == "" {
		root = "/sys"
	}
	return &Collector{sys: root, oc: cfg.OC}
}

// cardDir matches card0 but not connector entries such as card0-DP-1.
var cardDir = regexp.MustCompile(`^card([0-9]+)$`)

// Update appends one GPU per amdgpu card. A card whose files vanish
// mid-read (hot unplug, driver reset) is reported Lost.
func (c *Collector) Update(ctx context.Context, s *telemetry.Sample) error {
	entries, err := os.ReadDir(filepath.Join(c.sys, "class", "drm"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("amdgpu: %w", err)
	}
	type card struct {
		idx int
		dir string
	}
	var cards []card
	for _, e := range entries {
		m := cardDir.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		dir := filepath.Join(c.sys, "class", "drm", e.Name(), "device")
		if v, _ := readString(dir, "vendor"); v != vendorAMD {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		cards = append(cards, card{n, dir})
	}
	sort.Slice(cards, func(i, j int) bool { return cards[i].idx < cards[j].idx })
	for _, cd := range cards {
		if err := ctx.Err(); err != nil {
			return err
		}
		g := readCard(cd.dir, cd.idx)
		if c.oc != nil && g.UUID != "" {
			g.Overclock = c.oc.Applied(g.UUID)
		}
		s.GPUs = append(s.GPUs, g)
	}
	return nil
}

func readCard(dir string, idx int) telemetry.GPU {
	g := telemetry.GPU{Vendor: telemetry.VendorAMD, Index: idx}
	if ue, err := readString(dir, "uevent"); err == nil {
		for _, l := range strings.Split(ue, "\n") {
			if v, ok := strings.CutPrefix(l, "PCI_SLOT_NAME="); ok {
				if b, err := telemetry.NormalizeBusID(v); err == nil {
					g.PCIBusID = b
				}
			}
		}
	} else {
		g.Lost = true
		return g
	}
	// unique_id exists on Vega and later; the bus id stands in elsewhere
	// so profiles can still target the card.
	if id, err := readString(dir, "unique_id"); err == nil && id != "" {
		g.UUID = "AMD-" + id
	} else if g.PCIBusID != "" {
		g.UUID = "AMD-PCI-" + g.PCIBusID
	}
	if n, err := readString(dir, "product_name"); err == nil && n != "" {
		g.Name = n
	} else if d, err := readString(dir, "device"); err == nil {
		g.Name = "AMD Radeon " + d
	}
	if v, err := readString(dir, "driver/module/version"); err == nil {
		g.Driver = v
	}
	g.UtilPercent = readInt(dir, "gpu_busy_percent")
	if v := readUint(dir, "mem_info_vram_used"); v != nil {
		g.MemUsed = v
	}
	g.MemTotal = readUint(dir, "mem_info_vram_total")
	g.SMClockMHz, g.SMClockMaxMHz = dpm(dir, "pp_dpm_sclk")
	g.MemClockMHz, g.MemClockMaxMHz = dpm(dir, "pp_dpm_mclk")
	if w := readInt(dir, "current_link_width"); w != nil && *w > 0 {
		g.PCIeWidth = w
	}
	if sp, err := readString(dir, "current_link_speed"); err == nil {
		g.PCIeGen = pcieGen(sp)
	}

	hw := hwmonDir(dir)
	if hw == "" {
		return g
	}
	temps := labelledTemps(hw)
	g.TempC, g.HotspotTempC, g.MemTempC = temps["edge"], temps["junction"], temps["mem"]
	if rpm := readInt(hw, "fan1_input"); rpm != nil {
		g.FanRPM = []int{*rpm}
	}
	if pwm, pmax := readInt(hw, "pwm1"), readInt(hw, "pwm1_max"); pwm != nil && pmax != nil && *pmax > 0 {
		g.FanPercent = []int{(*pwm*100 + *pmax/2) / *pmax}
	}
	// power1_average on most kernels; newer RDNA3 kernels expose only
	// power1_input. Both are microwatts.
	if p := microwatts(hw, "power1_average"); p != nil {
		g.PowerW = p
	} else {
		g.PowerW = microwatts(hw, "power1_input")
	}
	g.PowerLimitW = microwatts(hw, "power1_cap")
	g.PowerDefaultW = microwatts(hw, "power1_cap_default")
	g.PowerMinW = microwatts(hw, "power1_cap_min")
	g.PowerMaxW = microwatts(hw, "power1_cap_max")
	return g
}

func hwmonDir(dir string) string {
	m, _ := filepath.Glob(filepath.Join(dir, "hwmon", "hwmon*"))
	sort.Strings(m)
	if len(m) == 0 {
		return ""
	}
	return m[0]
}

// labelledTemps maps temp*_label ("edge", "junction", "mem") to °C.
func labelledTemps(hw string) map[string]*float64 {
	out := map[string]*float64{}
	inputs, _ := filepath.Glob(filepath.Join(hw, "temp*_input"))
	for _, in := range inputs {
		base := strings.TrimSuffix(filepath.Base(in), "_input")
		label, err := readString(hw, base+"_label")
		if err != nil {
			label = "edge" // single unlabelled sensor on older cards
		}
		if v := readInt(hw, filepath.Base(in)); v != nil {
			out[label] = telemetry.Ptr(float64(*v) / 1000)
		}
	}
	return out
}

// dpm parses pp_dpm_* ("1: 1340Mhz *"): current is the starred level,
// max the highest level listed.
func dpm(dir, name string) (cur, maxMHz *int) {
	s, err := readString(dir, name)
	if err != nil {
		return nil, nil
	}
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.Atoi(strings.TrimSuffix(strings.ToLower(f[1]), "mhz"))
		if err != nil {
			continue
		}
		if maxMHz == nil || v > *maxMHz {
			maxMHz = telemetry.Ptr(v)
		}
		if len(f) >= 3 && f[2] == "*" {
			cur = telemetry.Ptr(v)
		}
	}
	return cur, maxMHz
}

func pcieGen(speed string) *int {
	f := strings.Fields(speed)
	if len(f) == 0 {
		return nil
	}
	gt, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return nil
	}
	for gen, s := range []float64{2.5, 5, 8, 16, 32, 64} {
		if gt == s {
			return telemetry.Ptr(gen + 1)
		}
	}
	return nil
}

func readString(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func readInt(dir, name string) *int {
	s, err := readString(dir, name)
	if err != nil {
		return nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return nil
	}
	return &v
}

func readUint(dir, name string) *uint64 {
	s, err := readString(dir, name)
	if err != nil {
		return nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return nil
	}
	return &v
}

func microwatts(dir, name string) *float64 {
	v := readUint(dir, name)
	if v == nil {
		return nil
	}
	return telemetry.Ptr(float64(*v) / 1e6)
}
