package minerapi

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// claymore speaks the Claymore remote-management protocol: one JSON-RPC
// request {"method":"miner_getstat1"} on a TCP socket, answered with an
// array of ";"-joined strings. Claymore's Dual Miner defined it; Phoenix
// Miner and TT-Miner serve the same reply, so one parser reads all three and
// the flavour only changes the command line.
type claymore struct {
	c         *Client
	name      string
	algorithm string
	launch    func(FlightSheet) (Launch, error)
}

func claymoreFactory(name string, launch func(FlightSheet) (Launch, error)) Factory {
	return func(o Options) (Adapter, error) {
		return &claymore{c: o.client(), name: name, algorithm: o.Algorithm, launch: launch}, nil
	}
}

func (m *claymore) Name() string { return m.name }

func (m *claymore) Launch(fs FlightSheet) (Launch, error) {
	if err := fs.Validate(); err != nil {
		return Launch{}, err
	}
	return m.launch(fs)
}

// claymoreArgs: -epool/-ewal/-epsw for the first pool, the remaining pools
// only in epools.txt (not generated: a single pool is launched), -mport for
// the API; a negative port makes it read-only, which is all Quarry needs.
func claymoreArgs(fs FlightSheet) (Launch, error) {
	p := fs.Pools[0]
	args := []string{"-epool", p.URL, "-ewal", fs.login(p), "-epsw", fs.password(p),
		"-mport", "-" + strconv.Itoa(fs.API.Port), "-r", "0"}
	if len(fs.Devices) > 0 {
		args = append(args, "-di", claymoreDevices(fs.Devices))
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

// phoenixArgs: -pool/-wal/-pass, -pool2/-wal2/-pass2 for the failover pool,
// -cdmport for the API with -cdm 1 (read-only).
func phoenixArgs(fs FlightSheet) (Launch, error) {
	var args []string
	for i, p := range fs.Pools {
		if i > 1 {
			break // Phoenix takes a main and one failover pool on the command line
		}
		sfx := ""
		if i == 1 {
			sfx = "2"
		}
		args = append(args, "-pool"+sfx, p.URL, "-wal"+sfx, fs.login(p), "-pass"+sfx, fs.password(p))
	}
	args = append(args, "-cdm", "1", "-cdmport", strconv.Itoa(fs.API.Port))
	if len(fs.Devices) > 0 {
		args = append(args, "-gpus", claymoreDevices(fs.Devices))
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

// ttminerArgs: -a, one -P user:pass@host:port per pool (failover in order),
// --api-bind for the API.
func ttminerArgs(fs FlightSheet) (Launch, error) {
	if err := fs.needAlgorithm(); err != nil {
		return Launch{}, err
	}
	args := []string{"-a", fs.Algorithm}
	for _, p := range fs.Pools {
		hp, err := hostPort(p.URL)
		if err != nil {
			return Launch{}, err
		}
		scheme := "stratum+tcp://"
		if isTLS(p.URL) {
			scheme = "stratum+ssl://"
		}
		args = append(args, "-P", scheme+fs.login(p)+":"+fs.password(p)+"@"+hp)
	}
	args = append(args, "--api-bind", fs.API.addr())
	if len(fs.Devices) > 0 {
		args = append(args, "-d", fs.deviceList(" "))
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

// claymoreDevices writes device indexes the Claymore way: one character
// each, 0-9 then a-z for 10-35.
func claymoreDevices(ds []int) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(strconv.FormatInt(int64(d), 36))
	}
	return b.String()
}

func (m *claymore) Stats(ctx context.Context, ep Endpoint) (Stats, error) {
	if err := ep.validate(); err != nil {
		return Stats{}, err
	}
	b, err := m.c.TCPRead(ctx, ep.addr(), []byte(`{"id":0,"jsonrpc":"2.0","method":"miner_getstat1"}`+"\n"))
	if err != nil {
		return Stats{}, err
	}
	st, err := ParseClaymore(b, m.algorithm)
	st.Miner = m.name
	return st, err
}

// claymoreKiloAlgos are the algorithms whose rates the protocol carries in
// kH/s (the Ethash family); every other algorithm is in H/s or Sol/s.
var claymoreKiloAlgos = []string{"ethash", "etchash", "ubqhash", "progpow", "neoscrypt", "daggerhashimoto"}

// ParseClaymore reads a miner_getstat1 reply. result[0] is the version
// ("PM 3.0c - ETH", "TT-Miner/2.2.5"), [1] uptime in minutes, [2]
// "rate;accepted;rejected", [3] per-GPU rates (or "off"), [6]
// "temp;fan" pairs per GPU, [7] the pool, [8] "invalid;switches;...".
// Ethash-family rates are in kH/s: a version ending in "- ETH" or an
// Ethash-family algorithm says so (TT-Miner 2.2.5 on eight Ethash GPUs
// reports 29482 per GPU, which is kH/s).
func ParseClaymore(b []byte, algorithm string) (Stats, error) {
	const miner = "claymore"
	var r struct {
		Result []string        `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := decodeTolerant(b, &r); err != nil {
		return Stats{}, badReply(miner, err)
	}
	if len(r.Result) < 4 {
		if len(r.Error) > 0 && string(r.Error) != "null" {
			return Stats{}, badReplyf(miner, "miner says %.200s", r.Error)
		}
		return Stats{}, badReplyf(miner, "result has %d fields, want at least 4", len(r.Result))
	}
	field := func(i int) []string {
		if i >= len(r.Result) {
			return nil
		}
		return strings.Split(r.Result[i], ";")
	}
	factor := 1.0
	ver := strings.TrimSpace(r.Result[0])
	a := strings.ToLower(algorithm)
	if strings.HasSuffix(ver, "- ETH") {
		factor = 1e3
	}
	for _, k := range claymoreKiloAlgos {
		if strings.HasPrefix(a, k) {
			factor = 1e3
		}
	}
	main := field(2)
	st := Stats{
		Miner: miner, Version: ver, Algorithm: algorithm,
		Uptime:   time.Duration(claymoreNum(r.Result[1]).count()) * time.Minute,
		Accepted: claymoreNum(sat(main, 1)).count(),
		Rejected: claymoreNum(sat(main, 2)).count(),
	}
	if pools := field(7); len(pools) > 0 {
		st.Pool = strings.TrimSpace(pools[0])
	}
	tf := field(6)
	for i, s := range field(3) {
		g := GPUStats{Index: i}
		if n := claymoreNum(s); n.OK {
			rate, err := n.rate(miner, "GPU rate")
			if err != nil {
				return Stats{}, err
			}
			g.Hashrate = rate * factor
		}
		g.TemperatureC = hottest(claymoreNum(sat(tf, 2*i)))
		if f := claymoreNum(sat(tf, 2*i+1)); f.OK && f.V >= 0 && f.V <= 100 {
			g.FanPercent = f.ptr()
		}
		st.GPUs = append(st.GPUs, g)
		if g.TemperatureC != nil {
			st.HottestC = hottest(numOf(st.HottestC), numOf(g.TemperatureC))
		}
	}
	total := claymoreNum(sat(main, 0))
	if !total.OK {
		return st, noHashrate(miner)
	}
	rate, err := total.rate(miner, "total rate")
	if err != nil {
		return Stats{}, err
	}
	st.TotalHashrate = rate * factor
	return st, nil
}

// claymoreNum reads one ";"-separated figure; "off" and blanks are absent.
func claymoreNum(s string) num {
	v, ok, err := parseNumString(s)
	if err != nil || !ok {
		return num{}
	}
	return num{V: v, OK: true}
}

func sat(v []string, i int) string {
	if i >= 0 && i < len(v) {
		return v[i]
	}
	return ""
}
