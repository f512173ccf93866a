package minerapi

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// jsonMiner is a miner whose stats are one JSON document fetched over HTTP
// (path) or over a raw TCP socket (request); parse reads it.
type jsonMiner struct {
	c       *Client
	name    string
	path    string
	request []byte
	launch  func(FlightSheet) (Launch, error)
	parse   func([]byte) (Stats, error)
}

func jsonMinerFactory(m jsonMiner) Factory {
	return func(o Options) (Adapter, error) {
		mm := m
		mm.c = o.client()
		return &mm, nil
	}
}

func (m *jsonMiner) Name() string { return m.name }

func (m *jsonMiner) Launch(fs FlightSheet) (Launch, error) {
	if err := fs.Validate(); err != nil {
		return Launch{}, err
	}
	return m.launch(fs)
}

func (m *jsonMiner) Stats(ctx context.Context, ep Endpoint) (Stats, error) {
	if err := ep.validate(); err != nil {
		return Stats{}, err
	}
	var b []byte
	var err error
	if m.request != nil {
		b, err = m.c.TCPRead(ctx, ep.addr(), m.request)
	} else {
		b, err = m.c.GetHTTP(ctx, ep.url(m.path), ep.Token)
	}
	if err != nil {
		return Stats{}, err
	}
	st, err := m.parse(b)
	st.Miner = m.name
	return st, err
}

// hottestOf fills HottestC from the devices of a parser's result.
func hottestOf(st Stats, err error) (Stats, error) { return withHottest(st), err }

// withHottest sets HottestC to the hottest device temperature.
func withHottest(st Stats) Stats {
	for _, g := range st.GPUs {
		if g.TemperatureC != nil {
			st.HottestC = hottest(numOf(st.HottestC), numOf(g.TemperatureC))
		}
	}
	return st
}

// --- SRBMiner-Multi -------------------------------------------------------

// srbminerArgs: SRBMiner-Multi takes failover pools as lists: --pool
// host:port and --wallet separated by ",", --password separated by "!"
// (a "," may be part of a password), --tls true/false per pool; ";"
// separates algorithms in all of them. It serves its JSON API on
// --api-port once --api-enable is given (it has no option for the listen
// address).
func srbminerArgs(fs FlightSheet) (Launch, error) {
	if err := fs.needAlgorithm(); err != nil {
		return Launch{}, err
	}
	if strings.ContainsAny(fs.Algorithm, ";,") {
		return Launch{}, configErr("srbminer: algorithm %q: name one algorithm", fs.Algorithm)
	}
	var hosts, users, passes, tls []string
	for i, p := range fs.Pools {
		hp, err := hostPort(p.URL)
		if err != nil {
			return Launch{}, err
		}
		if strings.ContainsAny(hp+fs.login(p), ",;!#") {
			return Launch{}, configErr("srbminer: pools[%d] url and user must not contain , ; ! or # (SRBMiner uses them to separate pools and algorithms)", i)
		}
		if strings.ContainsAny(fs.password(p), ";!#") {
			return Launch{}, configErr("srbminer: pools[%d].password must not contain ; ! or # (SRBMiner uses them to separate pools and algorithms)", i)
		}
		hosts, users, passes = append(hosts, hp), append(users, fs.login(p)), append(passes, fs.password(p))
		tls = append(tls, strconv.FormatBool(isTLS(p.URL)))
	}
	args := []string{"--algorithm", fs.Algorithm, "--pool", strings.Join(hosts, ","), "--wallet", strings.Join(users, ","),
		"--password", strings.Join(passes, "!"), "--tls", strings.Join(tls, ","),
		"--api-enable", "--api-port", strconv.Itoa(fs.API.Port)}
	if len(fs.Devices) > 0 {
		args = append(args, "--gpu-id", fs.deviceList(","))
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

// srbGPUDevice is one gpu_devices entry: 0.1.x numbers it device_id, later
// versions id with a "gpuN" device name.
type srbGPUDevice struct {
	DeviceID num    `json:"device_id"`
	ID       num    `json:"id"`
	Device   string `json:"device"`
	Model    string `json:"model"`
	BusID    num    `json:"bus_id"`
	Temp     num    `json:"temperature"`
	FanPct   num    `json:"fan_speed_percent"`
	Power    num    `json:"asic_power"`
}

// srbAlgorithm is one entry of the algorithms list SRBMiner-Multi has served
// since 0.5: its rate table (per "cpu"/"gpu" with "threadN"/"gpuN" and
// "total"), shares and pool.
type srbAlgorithm struct {
	Name string `json:"name"`
	Pool struct {
		Pool string `json:"pool"`
	} `json:"pool"`
	Shares struct {
		Accepted num `json:"accepted"`
		Rejected num `json:"rejected"`
	} `json:"shares"`
	Hashrate struct {
		CPU map[string]num `json:"cpu"`
		GPU map[string]num `json:"gpu"`
	} `json:"hashrate"`
	GPUAccepted map[string]num `json:"gpu_accepted_shares"`
	GPURejected map[string]num `json:"gpu_rejected_shares"`
}

// ParseSRBMiner reads SRBMiner-Multi's API document (GET /). Two formats
// exist: 0.1.x (hashrate_total_*, gpu_hashrate, gpu_devices) and, since
// 0.5, algorithms[] (one rate table, shares and pool per algorithm, the
// first being the one read). In both the total is the one the per-device
// table carries, so total and devices come from one window; the 1min/5min
// figures beside it are other windows and are not mixed in.
func ParseSRBMiner(b []byte) (Stats, error) {
	const miner = "srbminer"
	var s struct {
		Algorithm  string         `json:"algorithm"`
		Version    string         `json:"miner_version"`
		MiningTime num            `json:"mining_time"`
		TotalNow   num            `json:"hashrate_total_now"`
		GPUDevices []srbGPUDevice `json:"gpu_devices"`
		// 0.1.x
		GPUHashrate []map[string]num `json:"gpu_hashrate"`
		Shares      struct {
			Accepted num `json:"accepted"`
			Rejected num `json:"rejected"`
		} `json:"shares"`
		Pool struct {
			Pool string `json:"pool"`
		} `json:"pool"`
		// 0.5 and later
		Algorithms []srbAlgorithm `json:"algorithms"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return Stats{}, badReply(miner, err)
	}
	if len(s.Algorithms) > 0 {
		return parseSRBAlgorithms(miner, s.Version, s.MiningTime, s.Algorithms[0], s.GPUDevices)
	}
	if s.Version == "" && s.GPUHashrate == nil && !s.TotalNow.OK {
		return Stats{}, badReplyf(miner, "reply has none of miner_version, algorithms, gpu_hashrate, hashrate_total_now")
	}
	st := Stats{
		Miner: miner, Version: s.Version, Algorithm: s.Algorithm, Pool: s.Pool.Pool,
		Uptime:   time.Duration(s.MiningTime.count()) * time.Second,
		Accepted: s.Shares.Accepted.count(), Rejected: s.Shares.Rejected.count(),
	}
	total := s.TotalNow
	if len(s.GPUHashrate) > 0 {
		rates := s.GPUHashrate[0]
		if t := rates["total"]; t.OK {
			total = t
		}
		for _, i := range indexedKeys(rates, "GPU") {
			r, err := rates["GPU"+strconv.Itoa(i)].rate(miner, "gpu_hashrate")
			if err != nil {
				return Stats{}, err
			}
			g := GPUStats{Index: i, Hashrate: r}
			for _, d := range s.GPUDevices {
				if d.DeviceID.OK && int(d.DeviceID.V) == i {
					srbDevice(&g, d)
				}
			}
			st.GPUs = append(st.GPUs, g)
		}
	}
	st = withHottest(st)
	if !total.OK {
		return st, noHashrate(miner)
	}
	r, err := total.rate(miner, "total")
	if err != nil {
		return Stats{}, err
	}
	st.TotalHashrate = r
	return st, nil
}

// parseSRBAlgorithms reads the algorithms[] format. The total is the GPU
// table's total plus the CPU table's (a rig can hash one algorithm on both);
// each GPU's rate and shares are keyed "gpuN", matched to gpu_devices by
// device name. CPU threads are not devices of the reading.
func parseSRBAlgorithms(miner, version string, miningTime num, a srbAlgorithm, devs []srbGPUDevice) (Stats, error) {
	st := Stats{
		Miner: miner, Version: version, Algorithm: a.Name, Pool: a.Pool.Pool,
		Uptime:   time.Duration(miningTime.count()) * time.Second,
		Accepted: a.Shares.Accepted.count(), Rejected: a.Shares.Rejected.count(),
	}
	var total, sum num
	for _, part := range []map[string]num{a.Hashrate.CPU, a.Hashrate.GPU} {
		if t := part["total"]; t.OK {
			r, err := t.rate(miner, "hashrate total")
			if err != nil {
				return Stats{}, err
			}
			total = num{V: total.V + r, OK: true}
		}
	}
	for _, i := range indexedKeys(a.Hashrate.GPU, "gpu") {
		key := "gpu" + strconv.Itoa(i)
		rate := a.Hashrate.GPU[key]
		r, err := rate.rate(miner, "hashrate "+key)
		if err != nil {
			return Stats{}, err
		}
		if rate.OK {
			sum = num{V: sum.V + r, OK: true}
		}
		g := GPUStats{Index: i, Hashrate: r, Accepted: a.GPUAccepted[key].count(), Rejected: a.GPURejected[key].count()}
		for _, d := range devs {
			if d.Device == key || (d.Device == "" && d.ID.OK && int(d.ID.V) == i) {
				srbDevice(&g, d)
			}
		}
		st.GPUs = append(st.GPUs, g)
	}
	st = withHottest(st)
	if !total.OK {
		// Without a "total" the devices are the whole table.
		total = sum
	}
	if !total.OK {
		return st, noHashrate(miner)
	}
	st.TotalHashrate = total.V
	return st, nil
}

// srbDevice copies what gpu_devices knows of a GPU. fan_speed_rpm (0.x) is
// in RPM, not a percentage, so only fan_speed_percent fills FanPercent.
func srbDevice(g *GPUStats, d srbGPUDevice) {
	g.Name, g.TemperatureC = d.Model, hottest(d.Temp)
	if d.BusID.OK && d.BusID.V >= 0 && d.BusID.V <= 255 {
		g.BusID = formatBusID(0, uint64(d.BusID.V), 0, 0)
	}
	if d.FanPct.OK && d.FanPct.V >= 0 && d.FanPct.V <= 100 {
		g.FanPercent = d.FanPct.ptr()
	}
	if d.Power.OK && d.Power.V > 0 {
		g.PowerW = d.Power.ptr()
	}
}

// indexedKeys returns, sorted, the N of the keys prefixN in m.
func indexedKeys(m map[string]num, prefix string) []int {
	var idx []int
	for k := range m {
		if n, ok := strings.CutPrefix(k, prefix); ok {
			if i, err := strconv.Atoi(n); err == nil && i >= 0 && i < 1024 && strconv.Itoa(i) == n {
				idx = append(idx, i)
			}
		}
	}
	sort.Ints(idx)
	return idx
}

// --- NBMiner --------------------------------------------------------------

// nbminerArgs: -a, -o/-u for the main pool and -o1/-u1, -o2/-u2 for
// backups, --api for the API address, -d for devices. NBMiner has no
// password option, so a sheet that needs one is refused rather than
// launched without it.
func nbminerArgs(fs FlightSheet) (Launch, error) {
	if err := fs.needAlgorithm(); err != nil {
		return Launch{}, err
	}
	if len(fs.Pools) > 3 {
		return Launch{}, configErr("nbminer takes at most 3 pools, the sheet has %d", len(fs.Pools))
	}
	args := []string{"-a", fs.Algorithm}
	for i, p := range fs.Pools {
		if pw := fs.password(p); pw != "x" {
			return Launch{}, configErr("nbminer has no pool password option; pools[%d].password must be empty or x", i)
		}
		sfx := ""
		if i > 0 {
			sfx = strconv.Itoa(i)
		}
		args = append(args, "-o"+sfx, p.URL, "-u"+sfx, fs.login(p))
	}
	args = append(args, "--api", fs.API.addr())
	if len(fs.Devices) > 0 {
		args = append(args, "-d", fs.deviceList(","))
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

// ParseNBMiner reads NBMiner's GET /api/v1/status. Rates are in H/s in the
// *_raw fields; with dual mining the second algorithm's figures are in
// hashrate2 and are not part of Stats.
func ParseNBMiner(b []byte) (Stats, error) {
	const miner = "nbminer"
	var s struct {
		Version   string `json:"version"`
		StartTime num    `json:"start_time"`
		Miner     *struct {
			Devices []struct {
				ID          num    `json:"id"`
				Info        string `json:"info"`
				Hashrate    num    `json:"hashrate_raw"`
				HashrateAlt num    `json:"hashrate"`
				Fan         num    `json:"fan"`
				Power       num    `json:"power"`
				Temp        num    `json:"temperature"`
				PCI         string `json:"pci_bus_id"`
			} `json:"devices"`
			Total    num `json:"total_hashrate_raw"`
			TotalAlt num `json:"total_hashrate"`
		} `json:"miner"`
		Stratum struct {
			URL      string `json:"url"`
			Accepted num    `json:"accepted_shares"`
			Rejected num    `json:"rejected_shares"`
			Algo     string `json:"algorithm"`
		} `json:"stratum"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return Stats{}, badReply(miner, err)
	}
	if s.Miner == nil {
		return Stats{}, badReplyf(miner, "reply has no miner object")
	}
	st := Stats{
		Miner: miner, Version: s.Version, Pool: s.Stratum.URL, Algorithm: s.Stratum.Algo,
		Accepted: s.Stratum.Accepted.count(), Rejected: s.Stratum.Rejected.count(),
	}
	for i, d := range s.Miner.Devices {
		rate := d.Hashrate
		if !rate.OK {
			rate = d.HashrateAlt
		}
		r, err := rate.rate(miner, "hashrate")
		if err != nil {
			return Stats{}, err
		}
		idx := i
		if d.ID.OK {
			idx = int(d.ID.count())
		}
		g := GPUStats{Index: idx, Name: d.Info, Hashrate: r, TemperatureC: hottest(d.Temp), PowerW: d.Power.ptr()}
		if d.Fan.OK && d.Fan.V >= 0 && d.Fan.V <= 100 {
			g.FanPercent = d.Fan.ptr()
		}
		if bus, err := NormalizeBusID(d.PCI); err == nil {
			g.BusID = bus
		}
		st.GPUs = append(st.GPUs, g)
	}
	st = withHottest(st)
	total := s.Miner.Total
	if !total.OK {
		total = s.Miner.TotalAlt
	}
	if !total.OK {
		return st, noHashrate(miner)
	}
	r, err := total.rate(miner, "total_hashrate")
	if err != nil {
		return Stats{}, err
	}
	st.TotalHashrate = r
	return st, nil
}

// --- nanominer ------------------------------------------------------------

// NanominerConfigName is the file nanominer's Launch asks to be written.
const NanominerConfigName = "config.ini"

// nanominerArgs writes nanominer's config.ini: webPort (the /stats API) at
// the top, then one section for the algorithm with wallet, rigName, pool1…
// and devices. nanominer appends the rig name itself, so the worker goes
// to rigName rather than onto the wallet.
func nanominerArgs(fs FlightSheet) (Launch, error) {
	if err := fs.needAlgorithm(); err != nil {
		return Launch{}, err
	}
	clean := func(field, v string) error {
		if strings.ContainsAny(v, "\r\n[]=;") {
			return configErr("nanominer: %s %q contains a character config.ini cannot hold", field, v)
		}
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "webPort=%d\n\n", fs.API.Port)
	if err := clean("algorithm", fs.Algorithm); err != nil {
		return Launch{}, err
	}
	fmt.Fprintf(&b, "[%s]\n", fs.Algorithm)
	if err := clean("wallet", fs.Pools[0].User); err != nil {
		return Launch{}, err
	}
	fmt.Fprintf(&b, "wallet=%s\n", fs.Pools[0].User)
	if fs.Worker != "" {
		fmt.Fprintf(&b, "rigName=%s\n", fs.Worker)
	}
	for i, p := range fs.Pools {
		hp, err := hostPort(p.URL)
		if err != nil {
			return Launch{}, err
		}
		fmt.Fprintf(&b, "pool%d=%s\n", i+1, hp)
	}
	if len(fs.Devices) > 0 {
		fmt.Fprintf(&b, "devices=%s\n", fs.deviceList(","))
	}
	return Launch{Args: append([]string{NanominerConfigName}, fs.ExtraArgs...), ConfigName: NanominerConfigName, Config: []byte(b.String())}, nil
}

// ParseNanominer reads nanominer's GET /stats: Algorithms[0] is one object
// keyed by the algorithm name, holding "GPU n" and "Total" figures (rates as
// strings in H/s); Devices lists "GPU n" with name, PCI address and
// temperature.
func ParseNanominer(b []byte) (Stats, error) {
	const miner = "nanominer"
	var s struct {
		Algorithms []map[string]map[string]json.RawMessage `json:"Algorithms"`
		Devices    []map[string]struct {
			Name        string `json:"Name"`
			Pci         string `json:"Pci"`
			Temperature num    `json:"Temperature"`
			Power       num    `json:"Power"`
			Fan         num    `json:"Fan"`
		} `json:"Devices"`
		WorkTime num `json:"WorkTime"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return Stats{}, badReply(miner, err)
	}
	if len(s.Algorithms) == 0 {
		return Stats{}, badReplyf(miner, "reply has no Algorithms")
	}
	type figures struct {
		Accepted num `json:"Accepted"`
		Denied   num `json:"Denied"`
		Hashrate num `json:"Hashrate"`
	}
	st := Stats{Miner: miner, Uptime: time.Duration(s.WorkTime.count()) * time.Second}
	// The first algorithm is the primary one.
	names := make([]string, 0, len(s.Algorithms[0]))
	for name := range s.Algorithms[0] {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return Stats{}, badReplyf(miner, "Algorithms[0] is empty")
	}
	st.Algorithm = names[0]
	algo := s.Algorithms[0][names[0]]
	_ = json.Unmarshal(algo["CurrentPool"], &st.Pool)
	var total figures
	if raw, ok := algo["Total"]; ok {
		if err := json.Unmarshal(raw, &total); err != nil {
			return Stats{}, badReply(miner, fmt.Errorf("field Total: %w", err))
		}
	}
	st.Accepted, st.Rejected = total.Accepted.count(), total.Denied.count()
	devs := map[string]int{}
	for _, d := range s.Devices {
		for k, v := range d {
			i, ok := gpuKey(k)
			if !ok {
				continue
			}
			g := GPUStats{Index: i, Name: v.Name, TemperatureC: hottest(v.Temperature), PowerW: v.Power.ptr()}
			if bus, err := NormalizeBusID(v.Pci); err == nil {
				g.BusID = bus
			}
			devs[k] = len(st.GPUs)
			st.GPUs = append(st.GPUs, g)
		}
	}
	for k, raw := range algo {
		i, ok := gpuKey(k)
		if !ok {
			continue
		}
		var f figures
		if err := json.Unmarshal(raw, &f); err != nil {
			return Stats{}, badReply(miner, fmt.Errorf("%s: %w", k, err))
		}
		r, err := f.Hashrate.rate(miner, k)
		if err != nil {
			return Stats{}, err
		}
		pos, ok := devs[k]
		if !ok {
			pos = len(st.GPUs)
			devs[k] = pos
			st.GPUs = append(st.GPUs, GPUStats{Index: i})
		}
		st.GPUs[pos].Hashrate, st.GPUs[pos].Accepted, st.GPUs[pos].Rejected = r, f.Accepted.count(), f.Denied.count()
	}
	sort.Slice(st.GPUs, func(a, b int) bool { return st.GPUs[a].Index < st.GPUs[b].Index })
	st = withHottest(st)
	if !total.Hashrate.OK {
		return st, noHashrate(miner)
	}
	r, err := total.Hashrate.rate(miner, "Total")
	if err != nil {
		return Stats{}, err
	}
	st.TotalHashrate = r
	return st, nil
}

// gpuKey reads nanominer's "GPU 3".
func gpuKey(k string) (int, bool) {
	n, ok := strings.CutPrefix(k, "GPU ")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(n)
	return i, err == nil && i >= 0 && i < 1024
}

// --- miniZ ----------------------------------------------------------------

// minizArgs: miniZ takes one --url=user@host:port per pool (failover in
// order), --pass, --par for the algorithm, --telemetry for the API address
// and --cuda-devices.
func minizArgs(fs FlightSheet) (Launch, error) {
	if err := fs.needAlgorithm(); err != nil {
		return Launch{}, err
	}
	args := []string{"--par=" + fs.Algorithm}
	for _, p := range fs.Pools {
		hp, err := hostPort(p.URL)
		if err != nil {
			return Launch{}, err
		}
		u := fs.login(p) + "@" + hp
		if isTLS(p.URL) {
			u = "ssl://" + u
		}
		args = append(args, "--url="+u, "--pass="+fs.password(p))
	}
	args = append(args, "--telemetry="+fs.API.addr())
	if len(fs.Devices) > 0 {
		args = append(args, "--cuda-devices")
		for _, d := range fs.Devices {
			args = append(args, strconv.Itoa(d))
		}
	}
	return Launch{Args: append(args, fs.ExtraArgs...)}, nil
}

// ParseMiniZ reads miniZ's getstat reply: result[] per GPU with speed_sps
// (solutions or hashes per second), shares, temperature, fan and power.
// The total is the sum of the GPUs, which is how miniZ prints it too.
func ParseMiniZ(b []byte) (Stats, error) {
	const miner = "miniz"
	var s struct {
		Server string `json:"current_server"`
		Start  num    `json:"start_time"`
		Result []struct {
			GPUID    num    `json:"gpuid"`
			BusID    string `json:"busid"`
			Name     string `json:"name"`
			Temp     num    `json:"temperature"`
			Fan      num    `json:"gpu_fan_speed"`
			Power    num    `json:"gpu_power_usage"`
			Speed    num    `json:"speed_sps"`
			Accepted num    `json:"accepted_shares"`
			Rejected num    `json:"rejected_shares"`
		} `json:"result"`
		Error json.RawMessage `json:"error"`
	}
	if err := decodeTolerant(b, &s); err != nil {
		return Stats{}, badReply(miner, err)
	}
	if s.Result == nil {
		return Stats{}, badReplyf(miner, "reply has no result (error %.100s)", s.Error)
	}
	st := Stats{Miner: miner, Pool: s.Server}
	var total num
	for i, r := range s.Result {
		rate, err := r.Speed.rate(miner, "speed_sps")
		if err != nil {
			return Stats{}, err
		}
		idx := i
		if r.GPUID.OK {
			idx = int(r.GPUID.count())
		}
		g := GPUStats{Index: idx, Name: r.Name, Hashrate: rate, Accepted: r.Accepted.count(), Rejected: r.Rejected.count(),
			TemperatureC: hottest(r.Temp)}
		// miniZ reports 0 for a fan or power it cannot read.
		if r.Fan.OK && r.Fan.V > 0 && r.Fan.V <= 100 {
			g.FanPercent = r.Fan.ptr()
		}
		if r.Power.OK && r.Power.V > 0 {
			g.PowerW = r.Power.ptr()
		}
		if bus, err := NormalizeBusID(r.BusID); err == nil {
			g.BusID = bus
		}
		st.GPUs = append(st.GPUs, g)
		st.Accepted += g.Accepted
		st.Rejected += g.Rejected
		if r.Speed.OK {
			total.V += rate
			total.OK = true
		}
	}
	st = withHottest(st)
	if !total.OK {
		return st, noHashrate(miner)
	}
	st.TotalHashrate = total.V
	return st, nil
}
