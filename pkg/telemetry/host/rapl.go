package host

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// raplZone matches the top-level powercap zones (intel-rapl:0, :1, …);
// their subzones (intel-rapl:0:0, the cores) are inside the package figure
// and the MMIO copies (intel-rapl-mmio:0) repeat it.
var raplZone = regexp.MustCompile(`^intel-rapl:[0-9]+$`)

// rapl turns the kernel's RAPL energy counters (powercap sysfs, also on
// AMD since Linux 5.8) into CPU package power: energy between two samples
// over the time between them. Kernels since 5.10 let only root read
// energy_uj; then, or without RAPL, there is no figure.
type rapl struct {
	root string // sysfs root

	prev     map[string]uint64 // energy_uj per zone at prevTime
	prevTime time.Time
}

// power returns the summed package power in watts, or false on the first
// sample, without readable package zones, or when the zones changed.
func (r *rapl) power(now time.Time) (float64, bool) {
	dir := filepath.Join(r.root, "class", "powercap")
	ents, err := os.ReadDir(dir)
	if err != nil {
		r.prev = nil
		return 0, false
	}
	cur := map[string]uint64{}
	maxRange := map[string]uint64{}
	for _, e := range ents {
		if !raplZone.MatchString(e.Name()) {
			continue
		}
		zone := filepath.Join(dir, e.Name())
		// psys (the whole platform) is a top-level zone on some laptops;
		// adding it to the packages would count them twice.
		if name, err := readTrim(filepath.Join(zone, "name")); err != nil || !strings.HasPrefix(name, "package") {
			continue
		}
		v, err1 := readUint(filepath.Join(zone, "energy_uj"))
		m, err2 := readUint(filepath.Join(zone, "max_energy_range_uj"))
		if err1 != nil || err2 != nil {
			continue
		}
		cur[e.Name()], maxRange[e.Name()] = v, m
	}
	prev, prevTime := r.prev, r.prevTime
	r.prev, r.prevTime = cur, now
	secs := now.Sub(prevTime).Seconds()
	if len(cur) == 0 || len(prev) != len(cur) || secs <= 0 {
		return 0, false
	}
	var joulesMicro float64
	for zone, v := range cur {
		p, ok := prev[zone]
		if !ok {
			return 0, false
		}
		d := v - p
		if v < p {
			// The counter wrapped at max_energy_range_uj.
			d = maxRange[zone] - p + v
		}
		joulesMicro += float64(d)
	}
	return joulesMicro / 1e6 / secs, true
}

func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

func readUint(path string) (uint64, error) {
	s, err := readTrim(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(s, 10, 64)
}
