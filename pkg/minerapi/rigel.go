package minerapi

import (
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// rigelArgs: Rigel takes the algorithm with -a, each failover pool with its
// own -o, one username and password (-u, -p) for all of them, the worker
// with -w and serves its HTTP API where --api-bind says. --no-tui keeps the
// log readable; --no-watchdog leaves restarting to the agent, since Rigel's
// own watchdog respawns the miner as a second process the agent does not
// know of (it keeps mining after the agent stops the first).
func rigelArgs(fs FlightSheet) (Launch, error) {
	if err := fs.needAlgorithm(); err != nil {
		return Launch{}, err
	}
	if strings.ContainsAny(fs.Algorithm, "+[]") {
		return Launch{}, configErr("rigel: algorithm %q: dual and triple mining are not supported, name one algorithm", fs.Algorithm)
	}
	first := fs.Pools[0]
	args := []string{"-a", fs.Algorithm}
	for i, p := range fs.Pools {
		if p.User != first.User || fs.password(p) != fs.password(first) {
			return Launch{}, configErr("rigel takes one username and password for all its pools: pools[%d] must use the user and password of pools[0]", i)
		}
		if strings.HasPrefix(p.URL, "[") {
			return Launch{}, configErr("rigel: pools[%d].url must not start with an algorithm index", i)
		}
		args = append(args, "-o", p.URL)
	}
	args = append(args, "-u", first.User, "-p", fs.password(first))
	if fs.Worker != "" {
		args = append(args, "-w", fs.Worker)
	}
	args = append(args, "--api-bind", fs.API.addr(), "--no-tui", "--no-watchdog")
	if len(fs.Devices) > 0 {
		args = append(args, "-d", fs.deviceList(","))
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

// rigelSolutions is Rigel's share counter for one algorithm; its "invalid"
// count has no place in Stats and is not read.
type rigelSolutions struct {
	Accepted num `json:"accepted"`
	Rejected num `json:"rejected"`
}

// ParseRigel reads Rigel's GET / document. Rates are H/s keyed by
// algorithm, averaged over Rigel's --hashrate-avg window (10 s by
// default); the first algorithm of "algorithm" ("a+b" when dual mining) is
// the one read. The total is the miner's own, over the same window as each
// device's figure.
func ParseRigel(b []byte) (Stats, error) {
	const miner = "rigel"
	var s struct {
		Version   string                    `json:"version"`
		Uptime    num                       `json:"uptime"`
		Algorithm string                    `json:"algorithm"`
		Hashrate  map[string]num            `json:"hashrate"`
		Solutions map[string]rigelSolutions `json:"solution_stat"`
		Pools     map[string][]rigelPool    `json:"pools"`
		Devices   []rigelDevice             `json:"devices"`
	}
	if err := decodeTolerant(b, &s); err != nil {
		return Stats{}, badReply(miner, err)
	}
	if s.Algorithm == "" || (s.Hashrate == nil && s.Devices == nil) {
		return Stats{}, badReplyf(miner, "reply has no algorithm, hashrate or devices")
	}
	algo, _, _ := strings.Cut(s.Algorithm, "+")
	sol := s.Solutions[algo]
	st := Stats{
		Miner: miner, Version: s.Version, Algorithm: algo,
		Uptime:   time.Duration(s.Uptime.count()) * time.Second,
		Accepted: sol.Accepted.count(), Rejected: sol.Rejected.count(),
	}
	for _, p := range s.Pools[algo] {
		if p.Details.Hostname == "" || p.Details.Port.count() == 0 || p.Details.Port.V > 65535 {
			continue
		}
		st.Pool = net.JoinHostPort(p.Details.Hostname, strconv.FormatUint(p.Details.Port.count(), 10))
		break
	}
	for i, d := range s.Devices {
		if d.Selected != nil && !*d.Selected {
			continue // excluded with -d: not mining
		}
		r, err := d.Hashrate[algo].rate(miner, "device hashrate")
		if err != nil {
			return Stats{}, err
		}
		ds := d.Solutions[algo]
		idx := i
		if d.ID.OK && d.ID.V >= 0 && d.ID.V < 1024 {
			idx = int(d.ID.V)
		}
		m := d.Monitoring
		g := GPUStats{Index: idx, Name: d.Name, Hashrate: r, Accepted: ds.Accepted.count(), Rejected: ds.Rejected.count(),
			TemperatureC: hottest(m.CoreTemp, m.MemTemp)}
		if m.Fan.OK && m.Fan.V >= 0 && m.Fan.V <= 100 {
			g.FanPercent = m.Fan.ptr()
		}
		if m.Power.OK && m.Power.V > 0 {
			g.PowerW = m.Power.ptr()
		}
		if bus, err := NormalizeBusID(d.PCI); err == nil {
			g.BusID = bus
		}
		st.GPUs = append(st.GPUs, g)
	}
	sort.SliceStable(st.GPUs, func(a, b int) bool { return st.GPUs[a].Index < st.GPUs[b].Index })
	st = withHottest(st)
	total := s.Hashrate[algo]
	if !total.OK {
		return st, noHashrate(miner)
	}
	r, err := total.rate(miner, "hashrate")
	if err != nil {
		return Stats{}, err
	}
	st.TotalHashrate = r
	return st, nil
}

type rigelPool struct {
	Details struct {
		Hostname string `json:"hostname"`
		Port     num    `json:"port"`
	} `json:"connection_details"`
}

type rigelDevice struct {
	ID         num                       `json:"id"`
	Selected   *bool                     `json:"selected"`
	Name       string                    `json:"name"`
	PCI        string                    `json:"pci_address"`
	Hashrate   map[string]num            `json:"hashrate"`
	Solutions  map[string]rigelSolutions `json:"solution_stat"`
	Monitoring struct {
		CoreTemp num `json:"core_temperature"`
		MemTemp  num `json:"memory_temperature"`
		Fan      num `json:"fan_speed"`
		Power    num `json:"power_usage"`
	} `json:"monitoring_info"`
}
