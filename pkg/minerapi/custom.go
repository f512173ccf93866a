package minerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// CustomMapping describes a miner this package has no adapter for: where its
// JSON stats live and which fields mean what. Paths are dot-separated keys,
// with numbers indexing arrays: "Algorithms.0.Total_Performance".
type CustomMapping struct {
	// URL of the stats reply. A path ("/summary") is joined to the
	// endpoint's host and port; a full http URL is used as is.
	URL string `json:"url" yaml:"url"`

	Total     string `json:"total" yaml:"total"`             // total hashrate; required
	Unit      string `json:"unit" yaml:"unit"`               // fixed unit, e.g. "MH/s"; empty means H/s
	UnitPath  string `json:"unit_path" yaml:"unit_path"`     // or where the reply names its unit
	Accepted  string `json:"accepted" yaml:"accepted"`       // optional counters
	Rejected  string `json:"rejected" yaml:"rejected"`       //
	Stale     string `json:"stale" yaml:"stale"`             //
	Uptime    string `json:"uptime" yaml:"uptime"`           // seconds
	Algorithm string `json:"algorithm" yaml:"algorithm"`     //
	Pool      string `json:"pool" yaml:"pool"`               //
	Version   string `json:"version" yaml:"version"`         //
	GPURates  string `json:"gpu_rates" yaml:"gpu_rates"`     // array of per-GPU hashrates, same unit
	GPUBusIDs string `json:"gpu_bus_ids" yaml:"gpu_bus_ids"` // array of bus ids, same order
	GPUTemps  string `json:"gpu_temps" yaml:"gpu_temps"`     // array of temperatures, same order

	// Args is the miner's command line. Placeholders: {algo}, {api_host},
	// {api_port}, {api_addr}, {token}, {devices} (comma separated), {worker},
	// and for the first pool {url}, {user} (with worker), {pass}.
	Args []string `json:"args" yaml:"args"`
	// PoolArgs is repeated once per pool, in failover order, after Args,
	// with {url}, {user}, {pass} of that pool.
	PoolArgs []string `json:"pool_args" yaml:"pool_args"`
}

// Validate names the first field of the mapping that cannot work.
func (m CustomMapping) Validate() error {
	if strings.TrimSpace(m.URL) == "" {
		return configErr("custom.url is empty")
	}
	if !strings.HasPrefix(m.URL, "/") && !strings.HasPrefix(m.URL, "http://") && !strings.HasPrefix(m.URL, "https://") {
		return configErr("custom.url %q: want a path (/summary) or an http URL", m.URL)
	}
	if strings.TrimSpace(m.Total) == "" {
		return configErr("custom.total is empty: the path of the total hashrate is required")
	}
	if m.UnitPath == "" {
		if _, err := UnitFactor(m.Unit); err != nil {
			return configErr("custom.unit: %v", err)
		}
	}
	for name, p := range map[string]string{"total": m.Total, "unit_path": m.UnitPath, "accepted": m.Accepted,
		"rejected": m.Rejected, "stale": m.Stale, "uptime": m.Uptime, "algorithm": m.Algorithm, "pool": m.Pool,
		"version": m.Version, "gpu_rates": m.GPURates, "gpu_bus_ids": m.GPUBusIDs, "gpu_temps": m.GPUTemps} {
		if strings.Contains(p, "..") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") {
			return configErr("custom.%s %q: empty path segment", name, p)
		}
	}
	return nil
}

type custom struct {
	c *Client
	m CustomMapping
}

func newCustom(o Options) (Adapter, error) {
	if o.Custom == nil {
		return nil, configErr("custom miner needs a stats mapping")
	}
	if err := o.Custom.Validate(); err != nil {
		return nil, err
	}
	return &custom{c: o.client(), m: *o.Custom}, nil
}

func (*custom) Name() string { return "custom" }

func (c *custom) Launch(fs FlightSheet) (Launch, error) {
	if err := fs.Validate(); err != nil {
		return Launch{}, err
	}
	if len(c.m.Args) == 0 && len(c.m.PoolArgs) == 0 {
		return Launch{}, configErr("custom.args and custom.pool_args are both empty")
	}
	base := map[string]string{
		"{algo}": fs.Algorithm, "{api_host}": fs.apiHost(), "{api_port}": strconv.Itoa(fs.API.Port),
		"{api_addr}": fs.API.addr(), "{token}": fs.API.Token, "{devices}": fs.deviceList(","), "{worker}": fs.Worker,
	}
	subst := func(tmpl []string, p Pool) []string {
		out := make([]string, 0, len(tmpl))
		for _, a := range tmpl {
			for k, v := range base {
				a = strings.ReplaceAll(a, k, v)
			}
			a = strings.ReplaceAll(a, "{url}", p.URL)
			a = strings.ReplaceAll(a, "{user}", fs.login(p))
			a = strings.ReplaceAll(a, "{pass}", fs.password(p))
			out = append(out, a)
		}
		return out
	}
	args := subst(c.m.Args, fs.Pools[0])
	for _, p := range fs.Pools {
		args = append(args, subst(c.m.PoolArgs, p)...)
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

func (c *custom) Stats(ctx context.Context, ep Endpoint) (Stats, error) {
	u := c.m.URL
	if strings.HasPrefix(u, "/") {
		if err := ep.validate(); err != nil {
			return Stats{}, err
		}
		u = ep.url(u)
	}
	b, err := c.c.GetHTTP(ctx, u, ep.Token)
	if err != nil {
		return Stats{}, err
	}
	return ParseCustom(c.m, b)
}

// ParseCustom reads a reply with a user's mapping.
func ParseCustom(m CustomMapping, b []byte) (Stats, error) {
	return hottestOf(parseCustom(m, b))
}

func parseCustom(m CustomMapping, b []byte) (Stats, error) {
	const miner = "custom"
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return Stats{}, badReply(miner, err)
	}
	unit := m.Unit
	if m.UnitPath != "" {
		if v, ok := lookup(doc, m.UnitPath); ok {
			unit = fmt.Sprint(v)
		}
	}
	f, err := UnitFactor(unit)
	if err != nil {
		return Stats{}, badReply(miner, err)
	}
	str := func(path string) string {
		if v, ok := lookup(doc, path); ok && path != "" {
			if s, ok := v.(string); ok {
				return s
			}
			return fmt.Sprint(v)
		}
		return ""
	}
	number := func(path string) (num, error) {
		if path == "" {
			return num{}, nil
		}
		v, ok := lookup(doc, path)
		if !ok {
			return num{}, nil
		}
		n, err := toNum(v)
		if err != nil {
			return num{}, badReply(miner, fmt.Errorf("%s: %w", path, err))
		}
		return n, nil
	}
	st := Stats{Miner: miner, Algorithm: str(m.Algorithm), Pool: str(m.Pool), Version: str(m.Version)}
	for _, fld := range []struct {
		path string
		dst  *uint64
	}{{m.Accepted, &st.Accepted}, {m.Rejected, &st.Rejected}, {m.Stale, &st.Stale}} {
		n, err := number(fld.path)
		if err != nil {
			return Stats{}, err
		}
		*fld.dst = n.count()
	}
	up, err := number(m.Uptime)
	if err != nil {
		return Stats{}, err
	}
	st.Uptime = time.Duration(up.count()) * time.Second

	rates, _ := lookupArray(doc, m.GPURates)
	buses, _ := lookupArray(doc, m.GPUBusIDs)
	temps, _ := lookupArray(doc, m.GPUTemps)
	for i, rv := range rates {
		n, err := toNum(rv)
		if err != nil {
			return Stats{}, badReply(miner, fmt.Errorf("%s.%d: %w", m.GPURates, i, err))
		}
		r, err := n.rate(miner, "gpu hashrate")
		if err != nil {
			return Stats{}, err
		}
		g := GPUStats{Index: i, Hashrate: r * f}
		if i < len(buses) {
			if id, err := NormalizeBusID(fmt.Sprint(buses[i])); err == nil {
				g.BusID = id
			}
		}
		if i < len(temps) {
			if t, err := toNum(temps[i]); err == nil {
				g.TemperatureC = t.ptr()
			}
		}
		st.GPUs = append(st.GPUs, g)
	}
	total, err := number(m.Total)
	if err != nil {
		return Stats{}, err
	}
	if !total.OK {
		return st, noHashrate(miner)
	}
	r, err := total.rate(miner, "hashrate")
	if err != nil {
		return Stats{}, err
	}
	st.TotalHashrate = r * f
	return st, nil
}

// lookup walks a decoded JSON document along a dotted path.
func lookup(doc any, path string) (any, bool) {
	if path == "" {
		return nil, false
	}
	cur := doc
	for _, seg := range strings.Split(path, ".") {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[seg]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(v) {
				return nil, false
			}
			cur = v[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

func lookupArray(doc any, path string) ([]any, bool) {
	v, ok := lookup(doc, path)
	if !ok {
		return nil, false
	}
	a, ok := v.([]any)
	return a, ok
}

func toNum(v any) (num, error) {
	switch x := v.(type) {
	case nil:
		return num{}, nil
	case json.Number:
		var n num
		err := n.UnmarshalJSON([]byte(x.String()))
		return n, err
	case string:
		f, ok, err := parseNumString(x)
		return num{V: f, OK: ok}, err
	}
	return num{}, fmt.Errorf("%T where a number was expected", v)
}
