package minerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	c         *Client
	fl        cgFlavour
	algorithm string // from Options; picks units when no model is named
}

type cgFlavour struct {
	name string
	// launch builds the miner's arguments or config file.
	launch func(fs FlightSheet) (Launch, error)
	// statsForBoards skips "devs" (Antminer bmminer has no useful devs;
	// its boards are in "stats").
	statsForBoards bool
	// temps asks BOSminer's "temps", the only place it reports board
	// temperatures.
	temps bool
}

var (
	cgminerFlavour  = cgFlavour{name: "cgminer", launch: cgminerArgs}
	teamRedFlavour  = cgFlavour{name: "teamredminer", launch: teamRedArgs}
	bmminerFlavour  = cgFlavour{name: "bmminer", launch: cgminerConfigFile("bmminer.conf"), statsForBoards: true}
	bosminerFlavour = cgFlavour{name: "bosminer", launch: cgminerConfigFile("bosminer.conf"), temps: true}
	// Whatsminer's btminer is the machine's own firmware process: Quarry
	// reads its API but does not start it.
	whatsminerFlavour = cgFlavour{name: "whatsminer", launch: func(FlightSheet) (Launch, error) {
		return Launch{}, configErr("whatsminer: btminer is started by the machine's firmware; set pools on the machine, Quarry only reads its API")
	}}
)

func cgminerFactory(fl cgFlavour) Factory {
	return func(o Options) (Adapter, error) {
		return &cgminer{c: o.client(), fl: fl, algorithm: o.Algorithm}, nil
	}
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
	sum, sumErr := m.c.CGMinerCommand(ctx, addr, "summary")
	if sumErr != nil && !errors.Is(sumErr, ErrBadReply) {
		return Stats{}, sumErr
	}
	r := CGReplies{Summary: sum, Algorithm: m.algorithm}
	// The other replies make the reading richer but the summary alone is a
	// valid reading; a failure here leaves their fields empty instead of
	// failing the reading.
	optional := func(cmd string) []byte {
		b, err := m.c.CGMinerCommand(ctx, addr, cmd)
		if err != nil {
			return nil
		}
		return b
	}
	r.Pools = optional("pools")
	// "stats" carries Antminer and Innosilicon boards and the model that
	// picks the units; "version" names the model where stats does not.
	r.Stats = optional("stats")
	if !bytes.Contains(r.Stats, []byte(`"Type"`)) {
		r.Version = optional("version")
	}
	if !m.fl.statsForBoards {
		r.Devs = optional("devs")
	}
	if m.fl.temps {
		r.Temps = optional("temps")
	}
	if sumErr == nil {
		if _, err := decodeCG(m.fl.name, "summary", sum); err != nil {
			sumErr = err
		}
	}
	if sumErr != nil {
		// Some firmwares (Innosilicon, Antminer builds with a broken
		// summary) carry the whole reading in "stats"; without it the
		// summary's error stands.
		if r.Stats == nil {
			return Stats{}, sumErr
		}
		r.Summary = nil
	}
	st, err := ParseCGMinerReplies(r)
	st.Miner = m.fl.name
	if err != nil && sumErr != nil {
		return Stats{}, fmt.Errorf("%w (and stats: %v)", sumErr, err)
	}
	return st, err
}

type cgStatus struct {
	Status      string `json:"STATUS"`
	Code        num    `json:"Code"`
	Msg         string `json:"Msg"`
	Description string `json:"Description"`
}

type cgEnvelope struct {
	Status  []cgStatus
	Summary []map[string]json.RawMessage
	Devs    []map[string]json.RawMessage
	Pools   []map[string]json.RawMessage
	Stats   []map[string]json.RawMessage
	Version []map[string]json.RawMessage
	Temps   []map[string]json.RawMessage
}

// decodeCG parses one cgminer-family reply with the tolerant decoder and
// refuses replies whose STATUS is an error. Innosilicon firmware numbers
// its sections ("STATS0", "STATS1", "POOL0"); they are gathered in order
// into the plain section.
func decodeCG(miner, what string, b []byte) (cgEnvelope, error) {
	var env cgEnvelope
	var raw map[string]json.RawMessage
	if err := decodeTolerant(b, &raw); err != nil {
		return env, badReply(miner, fmt.Errorf("%s: %w", what, err))
	}
	sections := map[string]*[]map[string]json.RawMessage{
		"SUMMARY": &env.Summary, "DEVS": &env.Devs, "POOLS": &env.Pools, "POOL": &env.Pools, "STATS": &env.Stats,
		"VERSION": &env.Version, "TEMPS": &env.Temps,
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return numberedLess(keys[i], keys[j]) })
	for _, k := range keys {
		if k == "STATUS" {
			if err := json.Unmarshal(raw[k], &env.Status); err != nil {
				// btminer answers errors flat: {"STATUS":"E","Msg":...}.
				var one cgStatus
				if json.Unmarshal(raw[k], &one.Status) != nil {
					return env, badReplyf(miner, "%s: STATUS is neither a list nor a string", what)
				}
				_ = json.Unmarshal(raw["Msg"], &one.Msg)
				_ = json.Unmarshal(raw["Code"], &one.Code)
				env.Status = []cgStatus{one}
			}
			continue
		}
		dst, ok := sections[strings.TrimRight(k, "0123456789")]
		if !ok {
			continue
		}
		var objs []map[string]json.RawMessage
		if err := json.Unmarshal(raw[k], &objs); err != nil {
			return env, badReply(miner, fmt.Errorf("%s: %s: %w", what, k, err))
		}
		*dst = append(*dst, objs...)
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

// numberedLess orders "STATS2" before "STATS10".
func numberedLess(a, b string) bool {
	pa, pb := strings.TrimRight(a, "0123456789"), strings.TrimRight(b, "0123456789")
	if pa != pb || len(a) == len(b) {
		return a < b
	}
	return len(a) < len(b)
}

// cgWindows ranks the averaging windows cgminer-family miners name their
// rate fields with, shortest first. A reading uses the shortest one a
// miner reports (see README, "Averaging window").
var cgWindows = map[string]int{"5s": 0, "10s": 1, "20s": 2, "30s": 3, "1m": 4, "5m": 5, "15m": 6, "30m": 7, "24h": 8, "av": 9}

var cgRateKey = regexp.MustCompile(`^([KMGT])HS ([0-9]+[smh]|av)$`)

// cgRate finds the rate of the shortest window in a cgminer object, in H/s
// by units: cgminer uses "MHS 5s", "MHS 20s" (scrypt builds), TeamRedMiner
// "KHS 30s"/"MHS 30s", bmminer "GHS 5s" as a string. window is the field's
// window, "" when the object has none.
func cgRate(miner string, obj map[string]json.RawMessage, u cgUnits) (n num, window string, err error) {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	bestRank := len(cgWindows)
	for _, k := range keys {
		m := cgRateKey.FindStringSubmatch(k)
		if m == nil {
			continue
		}
		rank, ok := cgWindows[m[2]]
		if !ok || rank >= bestRank {
			continue
		}
		var v num
		if err := json.Unmarshal(obj[k], &v); err != nil {
			return num{}, "", badReply(miner, fmt.Errorf("%q: %w", k, err))
		}
		if !v.OK {
			continue
		}
		if v.V < 0 {
			return num{}, "", badReplyf(miner, "negative %q %g", k, v.V)
		}
		n, window, bestRank = num{V: v.V * u.factor(m[1]), OK: true}, m[2], rank
	}
	return n, window, nil
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

// CGReplies are the replies one cgminer-family reading is made of. Summary
// is required; the others may be nil.
type CGReplies struct {
	Summary []byte
	Devs    []byte // cgminer, TeamRedMiner: per-device detail
	Pools   []byte
	Stats   []byte // Antminer and Innosilicon: per-board detail and model
	Version []byte // model, when stats does not name it
	Temps   []byte // BOSminer: board and chip temperatures
	// Algorithm is what the flight sheet mines; it picks the units when the
	// replies name no model the unit table knows.
	Algorithm string
}

// ParseCGMiner reads the replies to "summary" and, when not nil, "devs",
// "pools" and Antminer "stats".
func ParseCGMiner(summary, devs, pools, stats []byte) (Stats, error) {
	return ParseCGMinerReplies(CGReplies{Summary: summary, Devs: devs, Pools: pools, Stats: stats})
}

// ParseCGMinerReplies reads one cgminer-family reading. Rates are scaled by
// the unit table for the machine's model, or its algorithm (cgunits.go).
func ParseCGMinerReplies(r CGReplies) (Stats, error) {
	const miner = "cgminer"
	var env cgEnvelope
	if r.Summary != nil || r.Stats == nil {
		var err error
		if env, err = decodeCG(miner, "summary", r.Summary); err != nil {
			return Stats{}, err
		}
		if len(env.Summary) == 0 {
			return Stats{}, badReplyf(miner, "summary: reply has no SUMMARY")
		}
	}
	// Optional replies that cannot be read leave their fields empty; the
	// summary alone is a reading.
	var senv, venv, denv, penv, tenv cgEnvelope
	if r.Stats != nil {
		senv, _ = decodeCG(miner, "stats", r.Stats)
	}
	if r.Version != nil {
		venv, _ = decodeCG(miner, "version", r.Version)
	}
	if r.Devs != nil {
		denv, _ = decodeCG(miner, "devs", r.Devs)
	}
	if r.Pools != nil {
		penv, _ = decodeCG(miner, "pools", r.Pools)
	}
	if r.Temps != nil {
		tenv, _ = decodeCG(miner, "temps", r.Temps)
	}
	model, firmware := cgModel(senv.Stats, venv.Version)
	units := unitsFor(model, r.Algorithm)

	var sum map[string]json.RawMessage
	var version string
	switch {
	case len(env.Summary) > 0:
		sum, version = env.Summary[0], env.Status[0].Description
	case len(senv.Stats) > 0:
		// Without a summary, Antminer's stats object carries the same
		// "GHS 5s" and "Elapsed"; Innosilicon's only per-board rates.
		sum, version = cgStatsSummary(senv.Stats), senv.Status[0].Description
	default:
		return Stats{}, badReplyf(miner, "stats: reply has no STATS")
	}
	st := Stats{
		Miner:    miner,
		Version:  version,
		Model:    model,
		Uptime:   time.Duration(cgNum(sum, "Elapsed").count()) * time.Second,
		Accepted: cgNum(sum, "Accepted").count(),
		Rejected: cgNum(sum, "Rejected").count(),
		Stale:    cgNum(sum, "Stale").count(),
	}
	if firmware != "" {
		st.Version = firmware
	}
	total, _, err := cgRate(miner, sum, units)
	if err != nil {
		return Stats{}, err
	}
	st.Pool = cgActivePool(penv.Pools)
	for i, d := range denv.Devs {
		rate, _, err := cgRate(miner, d, units)
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
		st.GPUs = append(st.GPUs, GPUStats{
			Index: int(idx.count()), Hashrate: rate.V,
			Accepted: cgNum(d, "Accepted").count(), Rejected: cgNum(d, "Rejected").count(),
			TemperatureC: hottest(cgNum(d, "Temperature")), FanPercent: cgNum(d, "Fan Percent").ptr(),
		})
	}
	if boards := asicBoards(senv.Stats, units); len(boards) > 0 {
		st.GPUs = boards
		if !total.OK && len(env.Summary) == 0 {
			for _, b := range boards {
				total.V += b.Hashrate
			}
			total.OK = true
		}
	}
	st.HottestC = applyTemps(st.GPUs, tenv.Temps)
	// Whatsminer's btminer puts the machine's board and chip maxima in the
	// summary itself.
	st.HottestC = hottest(numOf(st.HottestC), cgNum(sum, "Temperature"), cgNum(sum, "Chip Temp Max"))
	if !total.OK {
		return st, noHashrate(miner)
	}
	st.TotalHashrate = total.V
	return st, nil
}

// cgStatsSummary picks the stats object that carries the machine's rate
// and uptime (Antminer: the one after the version object). Innosilicon has
// none; its total is the sum of its boards.
func cgStatsSummary(objs []map[string]json.RawMessage) map[string]json.RawMessage {
	for _, o := range objs {
		if _, ok := o["Elapsed"]; ok {
			return o
		}
	}
	return map[string]json.RawMessage{}
}

// cgModel finds the machine model ("Antminer L3+") and firmware version in
// the stats or version reply.
func cgModel(stats, version []map[string]json.RawMessage) (model, firmware string) {
	for _, o := range append(append([]map[string]json.RawMessage{}, stats...), version...) {
		t := strings.TrimSpace(cgString(o, "Type"))
		if t == "" {
			continue
		}
		fw := t
		if m := cgString(o, "Miner"); m != "" {
			fw += " " + m
		}
		return t, strings.TrimSpace(fw)
	}
	return "", ""
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

// Temperatures outside this range are how firmwares mark a missing or
// failed sensor (0, -64, 255), not readings.
const minRealTempC, maxRealTempC = 0, 150

// hottest returns the highest real reading among ns, or nil when there is
// none: overheat protection must see the hottest sensor of a board, and a
// board without a working sensor has no temperature rather than 0 °C.
func hottest(ns ...num) *float64 {
	var best *float64
	for _, n := range ns {
		if !n.OK || n.V <= minRealTempC || n.V >= maxRealTempC {
			continue
		}
		if best == nil || n.V > *best {
			v := n.V
			best = &v
		}
	}
	return best
}

// dashTemps reads Antminer's per-sensor strings such as temp_chip1
// "48-80-49-70" (one figure per sensor on the board).
func dashTemps(s string) []num {
	var out []num
	for _, f := range strings.Split(s, "-") {
		if v, err := strconv.ParseFloat(strings.TrimSpace(f), 64); err == nil {
			out = append(out, num{V: v, OK: true})
		}
	}
	return out
}

// asicBoards reads hash boards from a "stats" reply: Antminer's numbered
// fields (chain_rateN, chain_acnN, tempN, temp2_N, temp3_N, temp_chipN,
// temp_pcbN) or Innosilicon's one object per board ("Num chips",
// "MHS av", "Temp"). A slot with no chips is an empty slot, not a board.
func asicBoards(objs []map[string]json.RawMessage, u cgUnits) []GPUStats {
	var boards []GPUStats
	for _, o := range objs {
		if chips, ok := o["Num chips"]; ok {
			var n num
			_ = json.Unmarshal(chips, &n)
			if n.V <= 0 {
				continue
			}
			rate, _, _ := cgRate("cgminer", o, u)
			boards = append(boards, GPUStats{
				Index: len(boards), Name: "board " + strconv.Itoa(int(cgNum(o, "STATS").count())), Hashrate: rate.V,
				TemperatureC: hottest(cgNum(o, "Temp"), cgNum(o, "Temp max")),
			})
			continue
		}
		for n := 1; n <= 16; n++ {
			i := strconv.Itoa(n)
			rate := cgNum(o, "chain_rate"+i)
			acn, hasACN := o["chain_acn"+i]
			var chips num
			if hasACN {
				_ = json.Unmarshal(acn, &chips)
			}
			switch {
			case hasACN && chips.V <= 0:
				continue // empty slot
			case !hasACN && (!rate.OK || rate.V < 0):
				continue
			}
			temps := []num{cgNum(o, "temp"+i), cgNum(o, "temp2_"+i), cgNum(o, "temp3_"+i)}
			temps = append(temps, dashTemps(cgString(o, "temp_chip"+i))...)
			temps = append(temps, dashTemps(cgString(o, "temp_pcb"+i))...)
			g := GPUStats{Index: len(boards), Name: "chain " + i, TemperatureC: hottest(temps...)}
			if rate.OK && rate.V >= 0 {
				g.Hashrate = rate.V * u.g
			}
			boards = append(boards, g)
		}
	}
	return boards
}

// applyTemps sets board temperatures from BOSminer's "temps" reply, whose
// entries follow the boards in order; Board and Chip of 0 mean no sensor.
// It returns the hottest reading among the boards and the temps reply, which
// counts even when the replies name no boards (BOSminer without "devs").
func applyTemps(boards []GPUStats, temps []map[string]json.RawMessage) *float64 {
	var all []num
	for i, t := range temps {
		h := hottest(cgNum(t, "Board"), cgNum(t, "Chip"))
		if h == nil {
			continue
		}
		all = append(all, num{V: *h, OK: true})
		if i < len(boards) {
			if cur := boards[i].TemperatureC; cur == nil || *h > *cur {
				boards[i].TemperatureC = h
			}
		}
	}
	for _, b := range boards {
		if b.TemperatureC != nil {
			all = append(all, num{V: *b.TemperatureC, OK: true})
		}
	}
	return hottest(all...)
}
