package minerapi

import (
	"context"
	"encoding/json"
	"time"
)

// gminer is GMiner: GET /stat. It reports no total, only per-device speeds.
type gminer struct{ c *Client }

func newGminer(o Options) (Adapter, error) { return &gminer{c: o.client()}, nil }

func (*gminer) Name() string { return "gminer" }

func (*gminer) Launch(fs FlightSheet) (Launch, error) {
	if err := fs.Validate(); err != nil {
		return Launch{}, err
	}
	if err := fs.needAlgorithm(); err != nil {
		return Launch{}, err
	}
	args := []string{"--algo", fs.Algorithm}
	// GMiner takes repeated --server/--user/--pass groups as failover
	// pools, in order; --server wants host:port without scheme.
	for _, p := range fs.Pools {
		hp, err := hostPort(p.URL)
		if err != nil {
			return Launch{}, err
		}
		args = append(args, "--server", hp, "--user", fs.login(p), "--pass", fs.password(p))
		if isTLS(p.URL) {
			args = append(args, "--ssl", "1")
		}
	}
	args = append(args, "--api", fs.API.addr(), "--color", "0", "--watchdog", "0")
	if len(fs.Devices) > 0 {
		args = append(args, "--devices", fs.deviceList(" "))
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

func (g *gminer) Stats(ctx context.Context, ep Endpoint) (Stats, error) {
	if err := ep.validate(); err != nil {
		return Stats{}, err
	}
	b, err := g.c.GetHTTP(ctx, ep.url("/stat"), ep.Token)
	if err != nil {
		return Stats{}, err
	}
	return ParseGminer(b)
}

type gminerStat struct {
	Miner         string `json:"miner"`
	Uptime        num    `json:"uptime"`
	Server        string `json:"server"`
	Algorithm     string `json:"algorithm"`
	SpeedUnit     string `json:"speed_unit"`
	SpeedUnitOld  string `json:"speedUnit"`
	TotalAccepted num    `json:"total_accepted_shares"`
	TotalRejected num    `json:"total_rejected_shares"`
	TotalStale    num    `json:"total_stale_shares"`
	Devices       []struct {
		GPUID       num    `json:"gpu_id"`
		BusID       string `json:"bus_id"`
		Name        string `json:"name"`
		Speed       num    `json:"speed"`
		Accepted    num    `json:"accepted_shares"`
		Rejected    num    `json:"rejected_shares"`
		Stale       num    `json:"stale_shares"`
		Invalid     num    `json:"invalid_shares"`
		Temperature num    `json:"temperature"`
		Power       num    `json:"power_usage"`
		Fan         num    `json:"fan"`
	} `json:"devices"`
}

// ParseGminer reads GMiner's /stat reply.
func ParseGminer(b []byte) (Stats, error) {
	return hottestOf(parseGminer(b))
}

func parseGminer(b []byte) (Stats, error) {
	const miner = "gminer"
	var s gminerStat
	if err := json.Unmarshal(b, &s); err != nil {
		return Stats{}, badReply(miner, err)
	}
	if s.Miner == "" && s.Devices == nil && s.Algorithm == "" {
		return Stats{}, badReplyf(miner, "stat has none of miner, devices, algorithm")
	}
	unit := s.SpeedUnit
	if unit == "" {
		unit = s.SpeedUnitOld
	}
	f, err := UnitFactor(unit)
	if err != nil {
		return Stats{}, badReply(miner, err)
	}
	st := Stats{
		Miner:     miner,
		Version:   s.Miner,
		Algorithm: s.Algorithm,
		Uptime:    time.Duration(s.Uptime.count()) * time.Second,
		Pool:      s.Server,
	}
	var seen bool
	var acc, rej, stale uint64
	for _, d := range s.Devices {
		r, err := d.Speed.rate(miner, "speed")
		if err != nil {
			return Stats{}, err
		}
		bus, err := NormalizeBusID(d.BusID)
		if err != nil {
			bus = ""
		}
		seen = seen || d.Speed.OK
		st.TotalHashrate += r * f
		g := GPUStats{
			Index: int(d.GPUID.count()), BusID: bus, Name: d.Name, Hashrate: r * f,
			Accepted: d.Accepted.count(), Rejected: d.Rejected.count() + d.Invalid.count(), Stale: d.Stale.count(),
			TemperatureC: d.Temperature.ptr(), PowerW: d.Power.ptr(), FanPercent: d.Fan.ptr(),
		}
		acc += g.Accepted
		rej += g.Rejected
		stale += g.Stale
		st.GPUs = append(st.GPUs, g)
	}
	// Totals when GMiner gives them (not every version does), else the sum.
	st.Accepted, st.Rejected, st.Stale = acc, rej, stale
	if s.TotalAccepted.OK {
		st.Accepted = s.TotalAccepted.count()
	}
	if s.TotalRejected.OK {
		st.Rejected = s.TotalRejected.count()
	}
	if s.TotalStale.OK {
		st.Stale = s.TotalStale.count()
	}
	if !seen {
		st.TotalHashrate = 0
		return st, noHashrate(miner)
	}
	return st, nil
}
