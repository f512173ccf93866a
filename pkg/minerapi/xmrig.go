package minerapi

import (
	"context"
	"encoding/json"
	"errors"
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
	sum, err := x.c.GetHTTP(ctx, ep.url("/2/summary"), ep.Token)
	if err != nil {
		return Stats{}, err
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

type xmrigSummary struct {
	Uptime     num    `json:"uptime"`
	Algo       string `json:"algo"`
	Version    string `json:"version"`
	Connection struct {
		Pool     string `json:"pool"`
		Algo     string `json:"algo"`
		Accepted num    `json:"accepted"`
		Rejected num    `json:"rejected"`
	} `json:"connection"`
	Hashrate *struct {
		Total []num `json:"total"`
	} `json:"hashrate"`
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

// firstRate picks the most recent window that has data: xmrig's arrays are
// [10s, 60s, 15m] with null until a window has filled.
func firstRate(v []num) num {
	for _, n := range v {
		if n.OK {
			return n
		}
	}
	return num{}
}

// ParseXmrig reads xmrig's /2/summary reply and, when not nil, its
// /2/backends reply.
func ParseXmrig(summary, backends []byte) (Stats, error) {
	const miner = "xmrig"
	var s xmrigSummary
	if err := json.Unmarshal(summary, &s); err != nil {
		return Stats{}, badReply(miner, err)
	}
	if s.Version == "" && s.Hashrate == nil && s.Connection.Pool == "" {
		return Stats{}, badReplyf(miner, "summary has none of version, hashrate, connection")
	}
	st := Stats{
		Miner:     miner,
		Version:   s.Version,
		Algorithm: s.Algo,
		Uptime:    time.Duration(s.Uptime.count()) * time.Second,
		Pool:      s.Connection.Pool,
		Accepted:  s.Connection.Accepted.count(),
		Rejected:  s.Connection.Rejected.count(),
	}
	if st.Algorithm == "" {
		st.Algorithm = s.Connection.Algo
	}
	if len(backends) > 0 {
		gpus, err := parseXmrigBackends(backends)
		if err != nil {
			return Stats{}, err
		}
		st.GPUs = gpus
	}
	var total num
	if s.Hashrate != nil {
		total = firstRate(s.Hashrate.Total)
	}
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

func parseXmrigBackends(b []byte) ([]GPUStats, error) {
	const miner = "xmrig"
	var bs []xmrigBackend
	if err := json.Unmarshal(b, &bs); err != nil {
		return nil, badReply(miner, err)
	}
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
			rate, err := firstRate(th.Hashrate).rate(miner, "thread hashrate")
			if err != nil {
				return nil, err
			}
			// Several threads may run on one device; they add up.
			if i, ok := byBus[bus]; ok && bus != "" {
				gpus[i].Hashrate += rate
				continue
			}
			g := GPUStats{Index: int(th.Index.count()), BusID: bus, Name: th.Name, Hashrate: rate}
			if th.Health != nil {
				g.TemperatureC = th.Health.Temperature.ptr()
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
