package minerapi

import (
	"context"
	"encoding/json"
	"time"
)

// trex is T-Rex (NVIDIA): GET /summary, hashrates in H/s.
type trex struct{ c *Client }

func newTrex(o Options) (Adapter, error) { return &trex{c: o.client()}, nil }

func (*trex) Name() string { return "trex" }

func (*trex) Launch(fs FlightSheet) (Launch, error) {
	if err := fs.Validate(); err != nil {
		return Launch{}, err
	}
	if err := fs.needAlgorithm(); err != nil {
		return Launch{}, err
	}
	args := []string{"-a", fs.Algorithm}
	// T-Rex takes repeated -o/-u/-p groups as failover pools, in order.
	for _, p := range fs.Pools {
		args = append(args, "-o", p.URL, "-u", fs.login(p), "-p", fs.password(p))
	}
	if fs.Worker != "" {
		args = append(args, "-w", fs.Worker)
	}
	args = append(args, "--api-bind-http", fs.API.addr(), "--api-read-only", "--no-color")
	if len(fs.Devices) > 0 {
		args = append(args, "-d", fs.deviceList(","))
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

func (t *trex) Stats(ctx context.Context, ep Endpoint) (Stats, error) {
	if err := ep.validate(); err != nil {
		return Stats{}, err
	}
	b, err := t.c.GetHTTP(ctx, ep.url("/summary"), ep.Token)
	if err != nil {
		return Stats{}, err
	}
	return ParseTrex(b)
}

type trexSummary struct {
	Name          string `json:"name"`
	Version       string `json:"version"`
	Algorithm     string `json:"algorithm"`
	Uptime        num    `json:"uptime"`
	Hashrate      num    `json:"hashrate"`
	AcceptedCount num    `json:"accepted_count"`
	RejectedCount num    `json:"rejected_count"`
	ActivePool    struct {
		URL string `json:"url"`
	} `json:"active_pool"`
	GPUs []struct {
		DeviceID    num    `json:"device_id"`
		GPUID       num    `json:"gpu_id"`
		Name        string `json:"name"`
		Hashrate    num    `json:"hashrate"`
		Temperature num    `json:"temperature"`
		Power       num    `json:"power"`
		FanSpeed    num    `json:"fan_speed"`
		PCIBus      num    `json:"pci_bus"`
		PCIDomain   num    `json:"pci_domain"`
		PCIID       num    `json:"pci_id"`
		Shares      struct {
			Accepted num `json:"accepted_count"`
			Rejected num `json:"rejected_count"`
			Invalid  num `json:"invalid_count"`
		} `json:"shares"`
	} `json:"gpus"`
}

// ParseTrex reads T-Rex's /summary reply.
func ParseTrex(b []byte) (Stats, error) {
	return hottestOf(parseTrex(b))
}

func parseTrex(b []byte) (Stats, error) {
	const miner = "trex"
	var s trexSummary
	if err := json.Unmarshal(b, &s); err != nil {
		return Stats{}, badReply(miner, err)
	}
	if s.Version == "" && !s.Hashrate.OK && s.GPUs == nil && s.Algorithm == "" {
		return Stats{}, badReplyf(miner, "summary has none of version, hashrate, gpus, algorithm")
	}
	st := Stats{
		Miner:     miner,
		Version:   s.Version,
		Algorithm: s.Algorithm,
		Uptime:    time.Duration(s.Uptime.count()) * time.Second,
		Pool:      s.ActivePool.URL,
		Accepted:  s.AcceptedCount.count(),
		Rejected:  s.RejectedCount.count(),
	}
	for _, g := range s.GPUs {
		r, err := g.Hashrate.rate(miner, "gpu hashrate")
		if err != nil {
			return Stats{}, err
		}
		st.GPUs = append(st.GPUs, GPUStats{
			Index:        int(g.DeviceID.count()),
			BusID:        busIDFromNumbers(g.PCIDomain, g.PCIBus, g.PCIID),
			Name:         g.Name,
			Hashrate:     r,
			Accepted:     g.Shares.Accepted.count(),
			Rejected:     g.Shares.Rejected.count() + g.Shares.Invalid.count(),
			TemperatureC: g.Temperature.ptr(),
			PowerW:       g.Power.ptr(),
			FanPercent:   g.FanSpeed.ptr(),
		})
	}
	if !s.Hashrate.OK {
		return st, noHashrate(miner)
	}
	r, err := s.Hashrate.rate(miner, "hashrate")
	if err != nil {
		return Stats{}, err
	}
	st.TotalHashrate = r
	return st, nil
}
