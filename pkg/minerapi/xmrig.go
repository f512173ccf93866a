package minerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// xmrig serves GET /2/summary and /2/backends and is configured by a JSON
// file, which keeps the API access token out of the process list.
type xmrig struct{ c *Client }

func newXmrig(o Options) (Adapter, error) { return &xmrig{c: o.client()}, nil }

func (*xmrig) Name() string { return "xmrig" }

// XmrigConfigName is the file xmrig's Launch asks to be written.
const XmrigConfigName = "xmrig.json"

func (*xmrig) Launch(fs FlightSheet) (Launch, error) {
	if err := fs.Validate(); err != nil {
		return Launch{}, err
	}
	type pool struct {
		URL       string  `json:"url"`
		User      string  `json:"user"`
		Pass      string  `json:"pass"`
		Algo      *string `json:"algo"`
		Keepalive bool    `json:"keepalive"`
		TLS       bool    `json:"tls"`
		Daemon    bool    `json:"daemon,omitempty"`
	}
	type cuda struct {
		Enabled bool `json:"enabled"`
	}
	cfg := struct {
		Autosave   bool `json:"autosave"`
		Background bool `json:"background"`
		Colors     bool `json:"colors"`
		HTTP       struct {
			Enabled     bool    `json:"enabled"`
			Host        string  `json:"host"`
			Port        int     `json:"port"`
			AccessToken *string `json:"access-token"`
			Restricted  bool    `json:"restricted"`
		} `json:"http"`
		Pools []pool `json:"pools"`
		CUDA  *cuda  `json:"cuda,omitempty"`
	}{}
	cfg.HTTP.Enabled = true
	cfg.HTTP.Host = fs.apiHost()
	cfg.HTTP.Port = fs.API.Port
	cfg.HTTP.Restricted = true
	if fs.API.Token != "" {
		t := fs.API.Token
		cfg.HTTP.AccessToken = &t
	}
	for _, p := range fs.Pools {
		pl := pool{URL: p.URL, User: fs.login(p), Pass: fs.password(p), Keepalive: true, TLS: isTLS(p.URL)}
		if hp, tls, ok := daemonURL(p.URL); ok {
			// Solo mining: xmrig asks the node for block templates. The
			// node wants the bare wallet address, so no worker suffix.
			wallet, _, _ := strings.Cut(fs.login(p), ".")
			pl = pool{URL: hp, User: wallet, Pass: fs.password(p), TLS: tls, Daemon: true}
		}
		if fs.Algorithm != "" {
			a := fs.Algorithm
			pl.Algo = &a
		}
		cfg.Pools = append(cfg.Pools, pl)
	}
	var args []string
	args = append(args, "--config="+XmrigConfigName, "--no-color")
	if len(fs.Devices) > 0 {
		cfg.CUDA = &cuda{Enabled: true}
		args = append(args, "--cuda-devices="+fs.deviceList(","))
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return Launch{}, configErr("xmrig config: %v", err)
	}
	args = append(args, fs.ExtraArgs...)
	return Launch{Args: args, ConfigName: XmrigConfigName, Config: b}, nil
}

// daemonURL splits a daemon+http(s)://host:port pool URL into the host:port
// and TLS flag xmrig's daemon mode wants; ok is false for other schemes.
func daemonURL(raw string) (hostport string, tls, ok bool) {
	scheme, rest, found := strings.Cut(raw, "://")
	if !found {
		return "", false, false
	}
	switch strings.ToLower(scheme) {
	case "daemon+http":
	case "daemon+https":
		tls = true
	default:
		return "", false, false
	}
	hostport, _, _ = strings.Cut(rest, "/")
	return hostport, tls, true
}

func isTLS(u string) bool {
	for _, p := range []string{"stratum+ssl://", "stratum+tls://", "ssl://", "tls://"} {
		if len(u) >= len(p) && u[:len(p)] == p {
			return true
		}
	}
	return false
}

func (x *xmrig) Stats(ctx context.Context, ep Endpoint) (Stats, error) {
	if err := ep.validate(); err != nil {
		return Stats{}, err
	}
	sum, path, err := xmrigSummaryAt(ctx, x.c, ep)
	if err != nil {
		return Stats{}, err
	}
	if path != "/2/summary" {
		// xmrig before 6 and WildRig have no /2/backends; the summary
		// carries threads and (2.x) GPU health.
		return ParseXmrig(sum, nil)
	}
	// Backends add per-GPU detail; a summary without them is still a
	// useful reading, so their failure is not the reading's failure
	// unless it is an auth problem the operator must hear about.
	back, err := x.c.GetHTTP(ctx, ep.url("/2/backends"), ep.Token)
	if err != nil && errors.Is(err, ErrAuth) {
		return Stats{}, err
	}
	return ParseXmrig(sum, back)
}

// xmrigSummaryPaths are where the xmrig API has served its summary over
// the versions: 6.x /2/summary, 3.x-5.x /1/summary, 2.x and WildRig-Multi
// the root.
var xmrigSummaryPaths = []string{"/2/summary", "/1/summary", "/"}

// xmrigSummaryAt fetches the summary from the newest path the miner knows.
func xmrigSummaryAt(ctx context.Context, c *Client, ep Endpoint) ([]byte, string, error) {
	var err error
	for _, p := range xmrigSummaryPaths {
		var b []byte
		if b, err = c.GetHTTP(ctx, ep.url(p), ep.Token); err == nil {
			return b, p, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, "", err
		}
	}
	return nil, "", err
}

type xmrigSummary struct {
	Uptime     num    `json:"uptime"`
	Algo       string `json:"algo"`
	Version    string `json:"version"`
	Connection struct {
		Pool     string `json:"pool"`
		Algo     string `json:"algo"`
		Uptime   num    `json:"uptime"`
		Accepted num    `json:"accepted"`
		Rejected num    `json:"rejected"`
	} `json:"connection"`
	Results struct {
		SharesGood  num `json:"shares_good"`
		SharesTotal num `json:"shares_total"`
	} `json:"results"`
	Hashrate *struct {
		Total []num `json:"total"`
		// Threads is in xmrig 2.x-5.x summaries (and WildRig's); xmrig 6
		// moved it to /2/backends.
		Threads [][]num `json:"threads"`
	} `json:"hashrate"`
	// Health is xmrig-nvidia/xmrig-amd 2.x's per-GPU sensor list, in
	// device order.
	Health []struct {
		Name  string `json:"name"`
		Power num    `json:"power"`
		Temp  num    `json:"temp"`
		Fan   num    `json:"fan"`
	} `json:"health"`
}

type xmrigBackend struct {
	Type    string `json:"type"`
	Enabled bool   `json:"enabled"`
	Threads []struct {
		Index    num    `json:"index"`
		Name     string `json:"name"`
		BusID    string `json:"bus_id"`
		Hashrate []num  `json:"hashrate"`
		Health   *struct {
			Temperature num   `json:"temperature"`
			Power       num   `json:"power"`
			FanSpeed    []num `json:"fan_speed"`
		} `json:"health"`
	} `json:"threads"`
}

// xmrigWindows are the averaging windows of xmrig's hashrate arrays.
var xmrigWindows = []string{"10s", "60s", "15m"}

// completeWindow picks the shortest window in which the total and every
// thread have a figure. xmrig sums only the threads that have one, so a
// total taken while some threads are still null is partial (445 H/s where
// the rig does 1105). -1 means no window is complete yet: warming up.
func completeWindow(total []num, threads [][]num) int {
	for w := range xmrigWindows {
		if w >= len(total) || !total[w].OK {
			continue
		}
		complete := true
		for _, th := range threads {
			if w >= len(th) || !th[w].OK {
				complete = false
				break
			}
		}
		if complete {
			return w
		}
	}
	return -1
}

func at(v []num, i int) num {
	if i >= 0 && i < len(v) {
		return v[i]
	}
	return num{}
}

// ParseXmrig reads xmrig's summary (any API version, and miners that serve
// the same API such as WildRig-Multi) and, when not nil, its /2/backends
// reply. Total and per-device rates come from one window, the shortest
// that every thread has filled (README, "Averaging window").
func ParseXmrig(summary, backends []byte) (Stats, error) {
	const miner = "xmrig"
	var s xmrigSummary
	if err := json.Unmarshal(summary, &s); err != nil {
		return Stats{}, badReply(miner, err)
	}
	if s.Version == "" && s.Hashrate == nil && s.Connection.Pool == "" {
		return Stats{}, badReplyf(miner, "summary has none of version, hashrate, connection")
	}
	uptime := s.Uptime
	if !uptime.OK {
		uptime = s.Connection.Uptime
	}
	st := Stats{
		Miner:     miner,
		Version:   s.Version,
		Algorithm: s.Algo,
		Uptime:    time.Duration(uptime.count()) * time.Second,
		Pool:      s.Connection.Pool,
		Accepted:  s.Connection.Accepted.count(),
		Rejected:  s.Connection.Rejected.count(),
	}
	if !s.Connection.Accepted.OK && s.Results.SharesGood.OK {
		// xmrig 2.x counts shares only in results.
		st.Accepted = s.Results.SharesGood.count()
		if t := s.Results.SharesTotal.count(); t > st.Accepted {
			st.Rejected = t - st.Accepted
		}
	}
	if st.Algorithm == "" {
		st.Algorithm = s.Connection.Algo
	}
	var total []num
	var threads [][]num
	if s.Hashrate != nil {
		total, threads = s.Hashrate.Total, s.Hashrate.Threads
	}
	var bs []xmrigBackend
	if len(backends) > 0 {
		if err := json.Unmarshal(backends, &bs); err != nil {
			return Stats{}, badReply(miner, err)
		}
		for _, be := range bs {
			if !be.Enabled {
				continue
			}
			for _, th := range be.Threads {
				threads = append(threads, th.Hashrate)
			}
		}
	}
	w := completeWindow(total, threads)
	gpus, err := xmrigGPUs(bs, w)
	if err != nil {
		return Stats{}, err
	}
	st.GPUs = gpus
	if len(st.GPUs) == 0 {
		st.GPUs = xmrigHealth(&s, w)
	}
	for _, g := range st.GPUs {
		if g.TemperatureC != nil {
			st.HottestC = hottest(num{V: *g.TemperatureC, OK: true}, numOf(st.HottestC))
		}
	}
	if w < 0 {
		return st, fmt.Errorf("%w: warming up, no window has a figure from every thread yet", noHashrate(miner))
	}
	r, err := total[w].rate(miner, "hashrate")
	if err != nil {
		return Stats{}, err
	}
	st.TotalHashrate = r
	return st, nil
}

func numOf(p *float64) num {
	if p == nil {
		return num{}
	}
	return num{V: *p, OK: true}
}

// xmrigHealth reads xmrig 2.x's health list. A rate is given to each GPU
// only when there is one thread per GPU; with several threads per GPU the
// 2.x API does not say which thread runs where.
func xmrigHealth(s *xmrigSummary, w int) []GPUStats {
	var gpus []GPUStats
	oneThreadEach := s.Hashrate != nil && len(s.Hashrate.Threads) == len(s.Health)
	for i, h := range s.Health {
		g := GPUStats{Index: i, Name: h.Name, TemperatureC: hottest(h.Temp), PowerW: h.Power.ptr(), FanPercent: h.Fan.ptr()}
		if oneThreadEach && w >= 0 {
			if r := at(s.Hashrate.Threads[i], w); r.OK && r.V >= 0 {
				g.Hashrate = r.V
			}
		}
		gpus = append(gpus, g)
	}
	return gpus
}

func xmrigGPUs(bs []xmrigBackend, w int) ([]GPUStats, error) {
	const miner = "xmrig"
	var gpus []GPUStats
	byBus := map[string]int{}
	for _, be := range bs {
		if be.Type != "cuda" && be.Type != "opencl" {
			continue
		}
		for _, th := range be.Threads {
			bus, err := NormalizeBusID(th.BusID)
			if err != nil {
				bus = "" // keep the reading; matching by index still works
			}
			var rate float64
			if w >= 0 {
				if rate, err = at(th.Hashrate, w).rate(miner, "thread hashrate"); err != nil {
					return nil, err
				}
			}
			// Several threads may run on one device; they add up.
			if i, ok := byBus[bus]; ok && bus != "" {
				gpus[i].Hashrate += rate
				continue
			}
			g := GPUStats{Index: int(th.Index.count()), BusID: bus, Name: th.Name, Hashrate: rate}
			if th.Health != nil {
				g.TemperatureC = hottest(th.Health.Temperature)
				g.PowerW = th.Health.Power.ptr()
				if len(th.Health.FanSpeed) > 0 {
					g.FanPercent = th.Health.FanSpeed[0].ptr()
				}
			}
			byBus[bus] = len(gpus)
			gpus = append(gpus, g)
		}
	}
	return gpus, nil
}
