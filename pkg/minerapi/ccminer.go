package minerapi

import (
	"bytes"
	"context"
	"strings"
	"time"
)

// ccminerAPI is the text API of ccminer and its forks (nevermore, z-enemy,
// …) and of cpuminer-opt: send a command ("summary", "threads", "pool",
// "hwinfo") on TCP, get "KEY=value;KEY=value|" records back and the
// socket closes.
type ccminerAPI struct {
	c      *Client
	name   string
	launch func(FlightSheet) (Launch, error)
	// detail is the per-device command: ccminer "threads" (rates) and
	// "hwinfo" (sensors); cpuminer-opt "threads".
	detail []string
}

func ccminerFactory(name string, launch func(FlightSheet) (Launch, error), detail ...string) Factory {
	return func(o Options) (Adapter, error) {
		return &ccminerAPI{c: o.client(), name: name, launch: launch, detail: detail}, nil
	}
}

func (m *ccminerAPI) Name() string { return m.name }

func (m *ccminerAPI) Launch(fs FlightSheet) (Launch, error) {
	if err := fs.Validate(); err != nil {
		return Launch{}, err
	}
	if err := fs.needAlgorithm(); err != nil {
		return Launch{}, err
	}
	return m.launch(fs)
}

// ccminerArgs: -a, one -o/-u/-p group per pool (ccminer fails over in
// order), -b for the API bind address, -d for CUDA devices.
func ccminerArgs(fs FlightSheet) (Launch, error) {
	args := []string{"-a", fs.Algorithm}
	for _, p := range fs.Pools {
		args = append(args, "-o", p.URL, "-u", fs.login(p), "-p", fs.password(p))
	}
	args = append(args, "-b", fs.API.addr())
	if len(fs.Devices) > 0 {
		args = append(args, "-d", fs.deviceList(","))
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

// cpuminerArgs: cpuminer-opt takes one pool (-o/-u/-p) and -b for the API.
// Devices do not apply to a CPU miner.
func cpuminerArgs(fs FlightSheet) (Launch, error) {
	p := fs.Pools[0]
	args := []string{"-a", fs.Algorithm, "-o", p.URL, "-u", fs.login(p), "-p", fs.password(p), "-b", fs.API.addr()}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

func (m *ccminerAPI) Stats(ctx context.Context, ep Endpoint) (Stats, error) {
	if err := ep.validate(); err != nil {
		return Stats{}, err
	}
	sum, err := m.c.TCPRead(ctx, ep.addr(), []byte("summary"))
	if err != nil {
		return Stats{}, err
	}
	r := CCMinerReplies{Summary: sum}
	// Per-device replies are optional; a summary alone is a reading.
	for _, cmd := range m.detail {
		b, err := m.c.TCPRead(ctx, ep.addr(), []byte(cmd))
		if err != nil {
			continue
		}
		switch cmd {
		case "threads":
			r.Threads = b
		case "hwinfo":
			r.HWInfo = b
		case "pool":
			r.Pool = b
		}
	}
	st, err := ParseCCMiner(r)
	st.Miner = m.name
	return st, err
}

// CCMinerReplies are the text replies of one ccminer-family reading; only
// Summary is required.
type CCMinerReplies struct {
	Summary, Threads, Pool, HWInfo []byte
}

// ccRecords splits "K=V;K=V|K=V|" into records. Keys keep their case
// (cpuminer-opt uses "kH/s", ccminer "KHS").
func ccRecords(b []byte) []map[string]string {
	b = bytes.TrimRight(b, "\x00 \r\n\t")
	var out []map[string]string
	for _, rec := range strings.Split(string(b), "|") {
		if strings.TrimSpace(rec) == "" {
			continue
		}
		m := map[string]string{}
		for _, kv := range strings.Split(rec, ";") {
			k, v, ok := strings.Cut(kv, "=")
			if ok {
				m[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
		if len(m) > 0 {
			out = append(out, m)
		}
	}
	return out
}

func ccNum(m map[string]string, key string) num {
	v, ok, err := parseNumString(m[key])
	if err != nil || !ok {
		return num{}
	}
	return num{V: v, OK: true}
}

// ccRate reads a record's rate in H/s from whichever key the miner uses:
// "HS" (cpuminer-opt, H/s), "KHS" (ccminer, kH/s) or "kH/s"/"H/s"
// (cpuminer-opt threads).
func ccRate(m map[string]string) num {
	for _, k := range []struct {
		key    string
		factor float64
	}{{"HS", 1}, {"H/s", 1}, {"KHS", 1e3}, {"kH/s", 1e3}} {
		if n := ccNum(m, k.key); n.OK {
			return num{V: n.V * k.factor, OK: true}
		}
	}
	return num{}
}

// ParseCCMiner reads the text replies of ccminer and cpuminer-opt. The rate
// is the miner's own rolling average, its only window.
func ParseCCMiner(r CCMinerReplies) (Stats, error) {
	const miner = "ccminer"
	recs := ccRecords(r.Summary)
	if len(recs) == 0 || (recs[0]["NAME"] == "" && recs[0]["KHS"] == "") {
		return Stats{}, badReplyf(miner, "summary is not a ccminer reply: %.80q", r.Summary)
	}
	s := recs[0]
	st := Stats{
		Miner:     miner,
		Version:   strings.TrimSpace(s["NAME"] + " " + s["VER"]),
		Algorithm: s["ALGO"],
		Uptime:    time.Duration(ccNum(s, "UPTIME").count()) * time.Second,
		Accepted:  ccNum(s, "ACC").count(),
		Rejected:  ccNum(s, "REJ").count(),
		Pool:      s["URL"],
	}
	if p := ccRecords(r.Pool); len(p) > 0 && p[0]["URL"] != "" {
		st.Pool = p[0]["URL"]
		st.Stale = ccNum(p[0], "STALE").count()
	}
	devices := map[int]int{} // device index -> position in st.GPUs
	device := func(rec map[string]string) (*GPUStats, bool) {
		idx := ccNum(rec, "GPU")
		if !idx.OK {
			idx = ccNum(rec, "CPU")
		}
		if !idx.OK || idx.V < 0 || idx.V > 1024 {
			return nil, false
		}
		i := int(idx.V)
		if pos, ok := devices[i]; ok {
			return &st.GPUs[pos], true
		}
		g := GPUStats{Index: i, Name: rec["CARD"]}
		if bus := ccNum(rec, "BUS"); bus.OK && bus.V >= 0 && bus.V <= 255 {
			// ccminer prints the PCI bus number in decimal.
			g.BusID = formatBusID(0, uint64(bus.V), 0, 0)
		}
		devices[i] = len(st.GPUs)
		st.GPUs = append(st.GPUs, g)
		return &st.GPUs[len(st.GPUs)-1], true
	}
	sensors := func(g *GPUStats, rec map[string]string) {
		if t := hottest(ccNum(rec, "TEMP")); t != nil {
			g.TemperatureC = t
		}
		if f := ccNum(rec, "FAN"); f.OK && f.V > 0 && f.V <= 100 {
			g.FanPercent = f.ptr()
		}
		if p := ccNum(rec, "POWER"); p.OK && p.V > 0 {
			w := p.V / 1000 // ccminer reports milliwatts
			g.PowerW = &w
		}
	}
	for _, rec := range ccRecords(r.Threads) {
		g, ok := device(rec)
		if !ok {
			continue
		}
		rate := ccRate(rec)
		if rate.OK && rate.V >= 0 {
			g.Hashrate = rate.V
		}
		sensors(g, rec)
	}
	for _, rec := range ccRecords(r.HWInfo) {
		if g, ok := device(rec); ok {
			sensors(g, rec)
		}
	}
	for _, g := range st.GPUs {
		if g.TemperatureC != nil {
			st.HottestC = hottest(numOf(st.HottestC), numOf(g.TemperatureC))
		}
	}
	total := ccRate(s)
	if !total.OK {
		return st, noHashrate(miner)
	}
	rate, err := total.rate(miner, "KHS")
	if err != nil {
		return Stats{}, err
	}
	st.TotalHashrate = rate
	return st, nil
}
