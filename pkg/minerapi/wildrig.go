package minerapi

import (
	"context"
	"strconv"
)

// wildrig is WildRig-Multi. Its stats API is xmrig's (summary at the root,
// with per-thread rates), so reading goes through the xmrig parser; only
// the command line differs.
type wildrig struct{ c *Client }

func newWildrig(o Options) (Adapter, error) { return &wildrig{c: o.client()}, nil }

func (*wildrig) Name() string { return "wildrig" }

// Launch builds WildRig-Multi's command line: -a, one -o/-u/-p group per
// pool (the later groups are its backup servers), --api-port, and
// -d for OpenCL device indexes. WildRig's API has no access token.
func (*wildrig) Launch(fs FlightSheet) (Launch, error) {
	if err := fs.Validate(); err != nil {
		return Launch{}, err
	}
	if err := fs.needAlgorithm(); err != nil {
		return Launch{}, err
	}
	args := []string{"--algo", fs.Algorithm}
	for _, p := range fs.Pools {
		args = append(args, "--url", p.URL, "--user", fs.login(p), "--pass", fs.password(p))
	}
	args = append(args, "--api-port", strconv.Itoa(fs.API.Port), "--no-color")
	if len(fs.Devices) > 0 {
		args = append(args, "--opencl-devices", fs.deviceList(","))
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

func (w *wildrig) Stats(ctx context.Context, ep Endpoint) (Stats, error) {
	if err := ep.validate(); err != nil {
		return Stats{}, err
	}
	sum, _, err := xmrigSummaryAt(ctx, w.c, ep)
	if err != nil {
		return Stats{}, err
	}
	st, err := ParseXmrig(sum, nil)
	st.Miner = "wildrig"
	return st, err
}
