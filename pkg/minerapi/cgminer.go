package minerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// cgminer speaks the cgminer TCP API (default port 4028) shared by cgminer,
// sgminer/TeamRedMiner, bmminer (Antminer) and BOSminer. The flavour only
// changes how the miner is launched and whether per-board detail comes from
// "devs" or from Antminer's "stats".
type cgminer struct {
	c  *Client
	fl cgFlavour
}

type cgFlavour struct {
	name string
	// launch builds the miner's arguments or config file.
	launch func(fs FlightSheet) (Launch, error)
	// statsForBoards asks "stats" instead of "devs" (Antminer bmminer has
	// no useful devs).
	statsForBoards bool
}

var (
	cgminerFlavour  = cgFlavour{name: "cgminer", launch: cgminerArgs}
	teamRedFlavour  = cgFlavour{name: "teamredminer", launch: teamRedArgs}
	bmminerFlavour  = cgFlavour{name: "bmminer", launch: cgminerConfigFile("bmminer.conf"), statsForBoards: true}
	bosminerFlavour = cgFlavour{name: "bosminer", launch: cgminerConfigFile("bosminer.conf")}
)

func cgminerFactory(fl cgFlavour) Factory {
	return func(o Options) (Adapter, error) { return &cgminer{c: o.client(), fl: fl}, nil }
}

func (m *cgminer) Name() string { return m.fl.name }

func (m *cgminer) Launch(fs FlightSheet) (Launch, error) {
	if err := fs.Validate(); err != nil {
		return Launch{}, err
	}
	return m.fl.launch(fs)
}

func cgminerArgs(fs FlightSheet) (Launch, error) {
	var args []string
	if fs.Algorithm != "" {
		args = append(args, "--algo", fs.Algorithm)
	}
	for _, p := range fs.Pools {
		args = append(args, "-o", p.URL, "-u", fs.login(p), "-p", fs.password(p))
	}
	args = append(args, "--api-listen", "--api-port", strconv.Itoa(fs.API.Port), "--api-allow", "W:127.0.0.1")
	if fs.API.Host != "" && fs.API.Host != "127.0.0.1" && fs.API.Host != "localhost" {
		args = append(args, "--api-network")
	}
	for _, d := range fs.Devices {
		args = append(args, "-d", strconv.Itoa(d))
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

func teamRedArgs(fs FlightSheet) (Launch, error) {
	if err := fs.needAlgorithm(); err != nil {
		return Launch{}, err
	}
	args := []string{"-a", fs.Algorithm}
	for _, p := range fs.Pools {
		args = append(args, "-o", p.URL, "-u", fs.login(p), "-p", fs.password(p))
	}
	args = append(args, "--api_listen="+fs.API.addr(), "--no_ntime_roll")
	if len(fs.Devices) > 0 {
		args = append(args, "-d", fs.deviceList(","))
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

// cgminerConfigFile writes the cgminer-format JSON config that ASIC
// firmwares read at start.
func cgminerConfigFile(name string) func(FlightSheet) (Launch, error) {
	return func(fs FlightSheet) (Launch, error) {
		type pool struct {
			URL  string `json:"url"`
			User string `json:"user"`
			Pass string `json:"pass"`
		}
		cfg := struct {
			Pools      []pool `json:"pools"`
			APIListen  bool   `json:"api-listen"`
			APINetwork bool   `json:"api-network"`
			APIPort    string `json:"api-port"`
			APIAllow   string `json:"api-allow"`
		}{APIListen: true, APIPort: strconv.Itoa(fs.API.Port), APIAllow: "W:127.0.0.1"}
		cfg.APINetwork = fs.API.Host != "" && fs.API.Host != "127.0.0.1" && fs.API.Host != "localhost"
		for _, p := range fs.Pools {
			cfg.Pools = append(cfg.Pools, pool{URL: p.URL, User: fs.login(p), Pass: fs.password(p)})
		}
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return Launch{}, configErr("%s config: %v", name, err)
		}
		return Launch{Args: append([]string{"--config", name}, fs.ExtraArgs...), ConfigName: name, Config: b}, nil
	}
}

func (m *cgminer) Stats(ctx context.Context, ep Endpoint) (Stats, error) {
	if err := ep.validate(); err != nil {
		return Stats{}, err
	}
	addr := ep.addr()
	sum, err := m.c.CGMinerCommand(ctx, addr, "summary")
	if err != nil {
		return Stats{}, err
	}
	// Pools and per-board detail make the reading richer but the summary
	// alone is a valid reading; a failure here is logged by the caller
	// through the missing fields, not turned into a failed reading.
	pools, perr := m.c.CGMinerCommand(ctx, addr, "pools")
	if perr != nil {
		pools = nil
	}
	var devs, stats []byte
	if m.fl.statsForBoards {
		stats, err = m.c.CGMinerCommand(ctx, addr, "stats")
	} else {
		devs, err = m.c.CGMinerCommand(ctx, addr, "devs")
	}
	if err != nil {
		devs, stats = nil, nil
	}
	st, err := ParseCGMiner(sum, devs, pools, stats)
	st.Miner = m.fl.name
	return st, err
}

type cgStatus struct {
	Status      string `json:"STATUS"`
	Code        num    `json:"Code"`
	Msg         string `json:"Msg"`
	Description string `json:"Description"`
}

type cgEnvelope struct {
	Status  []cgStatus                   `json:"STATUS"`
	Summary []map[string]json.RawMessage `json:"SUMMARY"`
	Devs    []map[string]json.RawMessage `json:"DEVS"`
	Pools   []map[string]json.RawMessage `json:"POOLS"`
	Stats   []map[string]json.RawMessage `json:"STATS"`
}

// decodeCG parses one cgminer reply, repairing the Antminer "}{" bug and
// refusing replies whose STATUS is an error.
func decodeCG(miner, what string, b []byte) (cgEnvelope, error) {
	var env cgEnvelope
	b = bytes.TrimRight(b, "\x00 \r\n\t")
	if err := json.Unmarshal(b, &env); err != nil {
		// Antminer firmware leaves out the comma between the two STATS
		// objects. Patch only on failure so valid replies are untouched.
		fixed := bytes.ReplaceAll(b, []byte("}{"), []byte("},{"))
		if err2 := json.Unmarshal(fixed, &env); err2 != nil {
			return env, badReply(miner, fmt.Errorf("%s: %w", what, err))
		}
	}
	if len(env.Status) == 0 {
		return env, badReplyf(miner, "%s: reply has no STATUS", what)
	}
	switch s := env.Status[0]; s.Status {
	case "E", "F":
		return env, badReplyf(miner, "%s: miner says %s %q (code %v)", what, s.Status, s.Msg, s.Code.V)
	}
	return env, nil
}

var cgRateKey = regexp.MustCompile(`^([KMGT])HS (5s|30s|1m|5m|15m|av)$`)

// cgRate finds the freshest hashrate in a cgminer object, whatever its unit:
// cgminer uses "MHS 5s", TeamRedMiner "KHS 30s"/"MHS 30s", bmminer
// "GHS 5s" as a string.
func cgRate(miner string, obj map[string]json.RawMessage) (num, error) {
	rank := map[string]int{"5s": 0, "30s": 1, "1m": 2, "5m": 3, "15m": 4, "av": 5}
	mult := map[string]float64{"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	best, bestRank := num{}, 99
	for _, k := range keys {
		m := cgRateKey.FindStringSubmatch(k)
		if m == nil || rank[m[2]] >= bestRank {
			continue
		}
		var n num
		if err := json.Unmarshal(obj[k], &n); err != nil {
			return num{}, badReply(miner, fmt.Errorf("%q: %w", k, err))
		}
		if !n.OK {
			continue
		}
		if n.V < 0 {
			return num{}, badReplyf(miner, "negative %q %g", k, n.V)
		}
		best, bestRank = num{V: n.V * mult[m[1]], OK: true}, rank[m[2]]
	}
	return best, nil
}

func cgNum(obj map[string]json.RawMessage, key string) num {
	var n num
	if raw, ok := obj[key]; ok {
		if json.Unmarshal(raw, &n) != nil {
			return num{}
		}
	}
	return n
}

func cgString(obj map[string]json.RawMessage, key string) string {
	var s string
	if raw, ok := obj[key]; ok {
		_ = json.Unmarshal(raw, &s)
	}
	return s
}

func cgBool(obj map[string]json.RawMessage, key string) bool {
	var b bool
	if raw, ok := obj[key]; ok {
		if json.Unmarshal(raw, &b) != nil {
			var s string
			_ = json.Unmarshal(raw, &s)
			b = s == "Y" || s == "true"
		}
	}
	return b
}

// ParseCGMiner reads the replies to "summary" and, when not nil, "devs",
// "pools" and Antminer "stats".
func ParseCGMiner(summary, devs, pools, stats []byte) (Stats, error) {
	const miner = "cgminer"
	env, err := decodeCG(miner, "summary", summary)
	if err != nil {
		return Stats{}, err
	}
	if len(env.Summary) == 0 {
		return Stats{}, badReplyf(miner, "summary: reply has no SUMMARY")
	}
	sum := env.Summary[0]
	st := Stats{
		Miner:    miner,
		Version:  env.Status[0].Description,
		Uptime:   time.Duration(cgNum(sum, "Elapsed").count()) * time.Second,
		Accepted: cgNum(sum, "Accepted").count(),
		Rejected: cgNum(sum, "Rejected").count(),
		Stale:    cgNum(sum, "Stale").count(),
	}
	total, err := cgRate(miner, sum)
	if err != nil {
		return Stats{}, err
	}
	if pools != nil {
		if penv, err := decodeCG(miner, "pools", pools); err == nil {
			st.Pool = cgActivePool(penv.Pools)
		}
	}
	if devs != nil {
		if denv, err := decodeCG(miner, "devs", devs); err == nil {
			for i, d := range denv.Devs {
				r, err := cgRate(miner, d)
				if err != nil {
					return Stats{}, err
				}
				idx := cgNum(d, "GPU")
				if !idx.OK {
					idx = cgNum(d, "ASC")
				}
				if !idx.OK {
					idx = num{V: float64(i), OK: true}
				}
				fan := cgNum(d, "Fan Percent")
				st.GPUs = append(st.GPUs, GPUStats{
					Index: int(idx.count()), Hashrate: r.V,
					Accepted: cgNum(d, "Accepted").count(), Rejected: cgNum(d, "Rejected").count(),
					TemperatureC: cgNum(d, "Temperature").ptr(), FanPercent: fan.ptr(),
				})
			}
		}
	}
	if stats != nil {
		if senv, err := decodeCG(miner, "stats", stats); err == nil {
			boards, ver := antminerBoards(senv.Stats)
			st.GPUs = append(st.GPUs, boards...)
			if ver != "" {
				st.Version = ver
			}
		}
	}
	if !total.OK {
		return st, noHashrate(miner)
	}
	st.TotalHashrate = total.V
	return st, nil
}

// cgActivePool picks the pool the miner is mining on: the one with an
// active stratum connection, else the alive pool with the best priority.
func cgActivePool(pools []map[string]json.RawMessage) string {
	best, bestPrio := "", -1.0
	for _, p := range pools {
		if cgBool(p, "Stratum Active") {
			return cgString(p, "URL")
		}
		if cgString(p, "Status") != "Alive" {
			continue
		}
		if pr := cgNum(p, "Priority"); best == "" || pr.V < bestPrio {
			best, bestPrio = cgString(p, "URL"), pr.V
		}
	}
	return best
}

// antminerBoards reads hash boards from Antminer "stats": chain_rateN in
// GH/s (string) and the chip temperature temp2_N. Board numbering varies by
// model, so every N that carries a rate is taken.
func antminerBoards(objs []map[string]json.RawMessage) ([]GPUStats, string) {
	var boards []GPUStats
	ver := ""
	for _, o := range objs {
		if t := cgString(o, "Type"); t != "" {
			ver = t
			if m := cgString(o, "Miner"); m != "" {
				ver += " " + m
			}
		}
		for n := 1; n <= 16; n++ {
			rate := cgNum(o, "chain_rate"+strconv.Itoa(n))
			if !rate.OK || rate.V < 0 {
				continue
			}
			g := GPUStats{Index: len(boards), Name: "chain " + strconv.Itoa(n), Hashrate: rate.V * 1e9}
			if t := cgNum(o, "temp2_"+strconv.Itoa(n)); t.OK && t.V > 0 {
				g.TemperatureC = t.ptr()
			}
			boards = append(boards, g)
		}
	}
	return boards, strings.TrimSpace(ver)
}
