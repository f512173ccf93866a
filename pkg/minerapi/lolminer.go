package minerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// lolminer is lolMiner: GET /summary, in the 1.x shape (Session, GPUs) or the
// newer one (Workers, Algorithms); the parser tells them apart.
type lolminer struct{ c *Client }

func newLolminer(o Options) (Adapter, error) { return &lolminer{c: o.client()}, nil }

func (*lolminer) Name() string { return "lolminer" }

func (*lolminer) Launch(fs FlightSheet) (Launch, error) {
	if err := fs.Validate(); err != nil {
		return Launch{}, err
	}
	if err := fs.needAlgorithm(); err != nil {
		return Launch{}, err
	}
	args := []string{"--algo", fs.Algorithm}
	// lolMiner takes repeated --pool/--user/--pass groups as failover
	// pools, in order.
	for _, p := range fs.Pools {
		hp, err := hostPort(p.URL)
		if err != nil {
			return Launch{}, err
		}
		args = append(args, "--pool", hp, "--user", fs.login(p), "--pass", fs.password(p))
		if isTLS(p.URL) {
			args = append(args, "--tls", "on")
		}
	}
	args = append(args, "--apihost", fs.apiHost(), "--apiport", strconv.Itoa(fs.API.Port))
	if len(fs.Devices) > 0 {
		args = append(args, "--devices", fs.deviceList(","))
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

func (l *lolminer) Stats(ctx context.Context, ep Endpoint) (Stats, error) {
	if err := ep.validate(); err != nil {
		return Stats{}, err
	}
	b, err := l.c.GetHTTP(ctx, ep.url("/summary"), ep.Token)
	if errors.Is(err, ErrNotHTTP) {
		// lolMiner 0.x answers on a raw TCP socket with its flat JSON.
		b, err = l.c.TCPRead(ctx, ep.addr(), []byte("\n"))
	}
	if err != nil {
		return Stats{}, err
	}
	return ParseLolminer(b)
}

type lolSession struct {
	Uptime              num    `json:"Uptime"`
	PerformanceSummary  num    `json:"Performance_Summary"`
	PerformanceUnit     string `json:"Performance_Unit"`
	Accepted            num    `json:"Accepted"`
	Submitted           num    `json:"Submitted"`
	TotalPerformanceNew num    `json:"Total_Performance"`
}

type lolSummary struct {
	Software string `json:"Software"`
	Mining   struct {
		Algorithm string `json:"Algorithm"`
	} `json:"Mining"`
	Stratum struct {
		CurrentPool string `json:"Current_Pool"`
	} `json:"Stratum"`
	Session lolSession `json:"Session"`
	GPUs    []struct {
		Index       num    `json:"Index"`
		Name        string `json:"Name"`
		Performance num    `json:"Performance"`
		Power       num    `json:"Consumption (W)"`
		Fan         num    `json:"Fan Speed (%)"`
		Temp        num    `json:"Temp (deg C)"`
		Temps       num    `json:"Temps (deg C)"`
		Accepted    num    `json:"Session_Accepted"`
		Submitted   num    `json:"Session_Submitted"`
		PCIE        string `json:"PCIE_Address"`
	} `json:"GPUs"`
	Workers []struct {
		Index    num    `json:"Index"`
		Name     string `json:"Name"`
		Power    num    `json:"Power"`
		CoreTemp num    `json:"Core_Temp"`
		Fan      num    `json:"Fan_Speed"`
		PCIE     string `json:"PCIE_Address"`
	} `json:"Workers"`
	Algorithms []struct {
		Algorithm         string `json:"Algorithm"`
		Pool              string `json:"Pool"`
		PerformanceUnit   string `json:"Performance_Unit"`
		PerformanceFactor num    `json:"Performance_Factor"`
		TotalPerformance  num    `json:"Total_Performance"`
		TotalAccepted     num    `json:"Total_Accepted"`
		TotalRejected     num    `json:"Total_Rejected"`
		TotalStales       num    `json:"Total_Stales"`
		WorkerPerformance []num  `json:"Worker_Performance"`
		WorkerAccepted    []num  `json:"Worker_Accepted"`
		WorkerRejected    []num  `json:"Worker_Rejected"`
		WorkerStales      []num  `json:"Worker_Stales"`
	} `json:"Algorithms"`
}

// lolBusID reads lolMiner's "bus:device" PCIE_Address, whose numbers are
// decimal ("12:0" is bus 0x0c), unlike every other miner.
func lolBusID(s string) string {
	b, d, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return ""
	}
	bus, err1 := strconv.ParseUint(b, 10, 8)
	dev, err2 := strconv.ParseUint(d, 10, 8)
	if err1 != nil || err2 != nil || dev > 31 {
		return ""
	}
	return formatBusID(0, bus, dev, 0)
}

// ParseLolminer reads lolMiner's /summary reply in either shape.
func ParseLolminer(b []byte) (Stats, error) {
	return hottestOf(parseLolminer(b))
}

func parseLolminer(b []byte) (Stats, error) {
	const miner = "lolminer"
	var s lolSummary
	if err := json.Unmarshal(b, &s); err != nil {
		return Stats{}, badReply(miner, err)
	}
	st := Stats{
		Miner:   miner,
		Version: strings.TrimSpace(strings.TrimPrefix(s.Software, "lolMiner")),
		Uptime:  time.Duration(s.Session.Uptime.count()) * time.Second,
	}
	if bytes.Contains(b, []byte(`"TotalSpeed(`)) {
		return parseLolFlat(st, b)
	}
	switch {
	case s.Algorithms != nil:
		return parseLolNew(st, &s)
	case s.GPUs != nil || s.Session.PerformanceSummary.OK:
		return parseLol1x(st, &s)
	}
	return Stats{}, badReplyf(miner, "summary has neither Algorithms nor Session/GPUs")
}

func parseLol1x(st Stats, s *lolSummary) (Stats, error) {
	const miner = "lolminer"
	f, err := UnitFactor(s.Session.PerformanceUnit)
	if err != nil {
		return Stats{}, badReply(miner, err)
	}
	st.Algorithm = s.Mining.Algorithm
	st.Pool = s.Stratum.CurrentPool
	st.Accepted = s.Session.Accepted.count()
	if sub := s.Session.Submitted.count(); sub > st.Accepted {
		st.Rejected = sub - st.Accepted
	}
	for _, g := range s.GPUs {
		r, err := g.Performance.rate(miner, "Performance")
		if err != nil {
			return Stats{}, err
		}
		temp := g.Temp
		if !temp.OK {
			temp = g.Temps
		}
		gs := GPUStats{
			Index: int(g.Index.count()), BusID: lolBusID(g.PCIE), Name: g.Name, Hashrate: r * f,
			Accepted: g.Accepted.count(), TemperatureC: temp.ptr(), PowerW: g.Power.ptr(), FanPercent: g.Fan.ptr(),
		}
		if sub := g.Submitted.count(); sub > gs.Accepted {
			gs.Rejected = sub - gs.Accepted
		}
		st.GPUs = append(st.GPUs, gs)
	}
	if !s.Session.PerformanceSummary.OK {
		return st, noHashrate(miner)
	}
	r, err := s.Session.PerformanceSummary.rate(miner, "Performance_Summary")
	if err != nil {
		return Stats{}, err
	}
	st.TotalHashrate = r * f
	return st, nil
}

func parseLolNew(st Stats, s *lolSummary) (Stats, error) {
	const miner = "lolminer"
	if len(s.Algorithms) == 0 {
		return st, noHashrate(miner)
	}
	// With dual mining there are two algorithms; the first is the primary
	// and the one Stats describes.
	a := s.Algorithms[0]
	f := a.PerformanceFactor.V
	if !a.PerformanceFactor.OK || f <= 0 {
		var err error
		if f, err = UnitFactor(a.PerformanceUnit); err != nil {
			return Stats{}, badReply(miner, err)
		}
	}
	st.Algorithm = a.Algorithm
	st.Pool = a.Pool
	st.Accepted = a.TotalAccepted.count()
	st.Rejected = a.TotalRejected.count()
	st.Stale = a.TotalStales.count()
	at := func(v []num, i int) num {
		if i < len(v) {
			return v[i]
		}
		return num{}
	}
	for i, w := range s.Workers {
		perf := at(a.WorkerPerformance, i)
		r, err := perf.rate(miner, "Worker_Performance")
		if err != nil {
			return Stats{}, err
		}
		st.GPUs = append(st.GPUs, GPUStats{
			Index: int(w.Index.count()), BusID: lolBusID(w.PCIE), Name: w.Name, Hashrate: r * f,
			Accepted: at(a.WorkerAccepted, i).count(), Rejected: at(a.WorkerRejected, i).count(),
			Stale:        at(a.WorkerStales, i).count(),
			TemperatureC: w.CoreTemp.ptr(), PowerW: w.Power.ptr(), FanPercent: w.Fan.ptr(),
		})
	}
	if !a.TotalPerformance.OK {
		return st, noHashrate(miner)
	}
	r, err := a.TotalPerformance.rate(miner, "Total_Performance")
	if err != nil {
		return Stats{}, err
	}
	st.TotalHashrate = r * f
	return st, nil
}

// lolFlatWindows are the windows of lolMiner 0.x's flat format, shortest
// first.
var lolFlatWindows = []string{"5s", "60s"}

// parseLolFlat reads lolMiner 0.x's flat reply: "TotalSpeed(5s)",
// "TotalSpeed(60s)" (a blank string until filled), and one "GPU<n>" object
// per card with "Speed(5s)"/"Speed(60s)". Speeds are in the algorithm's
// own unit per second (Sol/s for Equihash, the only family 0.x mined).
// Total and cards come from the shortest window all of them have.
func parseLolFlat(st Stats, b []byte) (Stats, error) {
	const miner = "lolminer"
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return Stats{}, badReply(miner, err)
	}
	str := func(k string) string {
		var v string
		_ = json.Unmarshal(raw[k], &v)
		return strings.TrimSpace(v)
	}
	st.Algorithm = str("Algorithm")
	st.Pool = str("ConnectedPool")
	type gpu struct {
		idx   int
		name  string
		speed map[string]num
	}
	var gpus []gpu
	for k, v := range raw {
		n, ok := strings.CutPrefix(k, "GPU")
		idx, err := strconv.Atoi(n)
		if !ok || err != nil || idx < 0 || idx > 255 {
			continue
		}
		var g struct {
			Name string `json:"Name"`
			S5   num    `json:"Speed(5s)"`
			S60  num    `json:"Speed(60s)"`
		}
		if err := json.Unmarshal(v, &g); err != nil {
			return Stats{}, badReply(miner, fmt.Errorf("%s: %w", k, err))
		}
		gpus = append(gpus, gpu{idx: idx, name: g.Name, speed: map[string]num{"5s": g.S5, "60s": g.S60}})
	}
	sort.Slice(gpus, func(i, j int) bool { return gpus[i].idx < gpus[j].idx })
	window := ""
	var total num
	for _, w := range lolFlatWindows {
		var t num
		if err := json.Unmarshal(raw["TotalSpeed("+w+")"], &t); err != nil && raw["TotalSpeed("+w+")"] != nil {
			return Stats{}, badReply(miner, fmt.Errorf("TotalSpeed(%s): %w", w, err))
		}
		complete := t.OK
		for _, g := range gpus {
			complete = complete && g.speed[w].OK
		}
		if complete {
			window, total = w, t
			break
		}
	}
	for _, g := range gpus {
		gs := GPUStats{Index: g.idx, Name: g.name}
		if window != "" {
			r, err := g.speed[window].rate(miner, "Speed("+window+")")
			if err != nil {
				return Stats{}, err
			}
			gs.Hashrate = r
		}
		st.GPUs = append(st.GPUs, gs)
	}
	if window == "" {
		return st, noHashrate(miner)
	}
	r, err := total.rate(miner, "TotalSpeed("+window+")")
	if err != nil {
		return Stats{}, err
	}
	st.TotalHashrate = r
	return st, nil
}
