package minersim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/quarryfleet/quarry/pkg/minerapi/internal/recorded"
)

// render turns a reading into one reply of the miner's API.
type render func(Reading) ([]byte, error)

// spec is one miner's API: HTTP paths, or cgminer TCP commands, each with
// the recorded reply it is built from.
type spec struct {
	tcp    bool
	routes map[string]render
}

// specs are keyed by minerapi adapter name. cgminer and teamredminer
// share the TeamRedMiner capture, whose API is cgminer's.
var specs = map[string]spec{
	"xmrig": {routes: map[string]render{
		"/2/summary":  from(recorded.XmrigSummary, xmrigSummary),
		"/2/backends": fromArray(recorded.XmrigBackends, xmrigBackends),
	}},
	"trex":         {routes: map[string]render{"/summary": from(recorded.TrexSummary, trexSummary)}},
	"lolminer":     {routes: map[string]render{"/summary": from(recorded.LolminerNew, lolminerSummary)}},
	"gminer":       {routes: map[string]render{"/stat": from(recorded.GminerStat, gminerStat)}},
	"cgminer":      cgSpec,
	"teamredminer": cgSpec,
}

var cgSpec = spec{tcp: true, routes: map[string]render{
	"summary": from(recorded.CGMinerSummary, cgSummary),
	"devs":    from(recorded.CGMinerDevs, cgDevs),
	"pools":   from(recorded.CGMinerPools, cgPools),
}}

type obj = map[string]any

// from decodes the recorded reply afresh for each answer (so no answer
// sees another's substitutions), lets fill substitute the reading, and
// encodes it.
func from(name string, fill func(obj, Reading) error) render {
	return func(r Reading) ([]byte, error) {
		var doc obj
		if err := decode(name, &doc); err != nil {
			return nil, err
		}
		if err := fill(doc, r); err != nil {
			return nil, fmt.Errorf("recorded %s: %w", name, err)
		}
		return json.Marshal(doc)
	}
}

func fromArray(name string, fill func([]any, Reading) ([]any, error)) render {
	return func(r Reading) ([]byte, error) {
		var doc []any
		if err := decode(name, &doc); err != nil {
			return nil, err
		}
		out, err := fill(doc, r)
		if err != nil {
			return nil, fmt.Errorf("recorded %s: %w", name, err)
		}
		return json.Marshal(out)
	}
}

func decode(name string, v any) error {
	b, err := recorded.Get(name)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("recorded %s: %w", name, err)
	}
	return nil
}

// n is a JSON number written the way miners write them: integers without
// a fraction.
func n(v float64) json.Number {
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		return json.Number(strconv.FormatInt(int64(v), 10))
	}
	return json.Number(strconv.FormatFloat(v, 'f', -1, 64))
}

func nu(v uint64) json.Number { return json.Number(strconv.FormatUint(v, 10)) }

func secs(d time.Duration) json.Number { return nu(uint64(max(d, 0) / time.Second)) }

// child is the object under key, an error when the capture has none.
func child(o obj, key string) (obj, error) {
	c, ok := o[key].(obj)
	if !ok {
		return nil, fmt.Errorf("no object %q", key)
	}
	return c, nil
}

// firstOf is the first object of the array under key.
func firstOf(o obj, key string) (obj, []any, error) {
	arr, ok := o[key].([]any)
	if !ok || len(arr) == 0 {
		return nil, nil, fmt.Errorf("no array %q", key)
	}
	first, ok := arr[0].(obj)
	if !ok {
		return nil, nil, fmt.Errorf("%q[0] is not an object", key)
	}
	return first, arr, nil
}

// devices replaces the array of device objects under key by one per card,
// each a copy of the capture's first device with the card's figures
// filled in, so every field the real miner sends is there.
func devices(o obj, key string, gpus []GPU, fill func(d obj, i int, g GPU)) error {
	tmpl, _, err := firstOf(o, key)
	if err != nil {
		return err
	}
	out := make([]any, len(gpus))
	for i, g := range gpus {
		d := deepCopy(tmpl).(obj)
		fill(d, i, g)
		out[i] = d
	}
	o[key] = out
	return nil
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case obj:
		c := make(obj, len(x))
		for k, e := range x {
			c[k] = deepCopy(e)
		}
		return c
	case []any:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = deepCopy(e)
		}
		return c
	}
	return v
}

// bus splits a long PCI bus id into its numbers; a malformed one reads as
// bus index+1, which is what the simulator would have given it.
func bus(id string, i int) (domain, b, dev uint64) {
	var fn uint64
	if _, err := fmt.Sscanf(id, "%x:%x:%x.%x", &domain, &b, &dev, &fn); err != nil {
		return 0, uint64(i + 1), 0
	}
	return domain, b, dev
}

// shareOf splits the accepted shares among the cards by hash rate.
func shareOf(r Reading, g GPU) uint64 {
	t := r.Total()
	if t <= 0 {
		return 0
	}
	return uint64(float64(r.Accepted) * g.Hashrate / t)
}

func repeat3(v float64) []any { return []any{n(v), n(v), n(v)} }

func xmrigSummary(doc obj, r Reading) error {
	t := r.Total()
	hr, err := child(doc, "hashrate")
	if err != nil {
		return err
	}
	hr["total"], hr["highest"] = repeat3(t), n(t)
	doc["uptime"] = secs(r.Uptime)
	if r.Algorithm != "" {
		doc["algo"] = r.Algorithm
	}
	conn, err := child(doc, "connection")
	if err != nil {
		return err
	}
	conn["pool"], conn["accepted"], conn["rejected"], conn["uptime"] = r.Pool, nu(r.Accepted), nu(0), secs(r.Uptime)
	if r.Algorithm != "" {
		conn["algo"] = r.Algorithm
	}
	res, err := child(doc, "results")
	if err != nil {
		return err
	}
	res["shares_good"], res["shares_total"] = nu(r.Accepted), nu(r.Accepted)
	return nil
}

// xmrigBackends keeps the capture's backends, with the CPU one idle and
// the CUDA one holding the simulated cards.
func xmrigBackends(doc []any, r Reading) ([]any, error) {
	found := false
	for _, e := range doc {
		b, ok := e.(obj)
		if !ok {
			continue
		}
		switch b["type"] {
		case "cpu":
			b["enabled"], b["hashrate"], b["threads"] = false, repeat3(0), []any{}
		case "cuda":
			found = true
			b["hashrate"] = repeat3(r.Total())
			if r.Algorithm != "" {
				b["algo"] = r.Algorithm
			}
			err := devices(b, "threads", r.GPUs, func(d obj, i int, g GPU) {
				_, bu, dev := bus(g.BusID, i)
				d["index"], d["name"], d["bus_id"] = nu(uint64(i)), g.Name, fmt.Sprintf("%02x:%02x.0", bu, dev)
				d["hashrate"] = repeat3(g.Hashrate)
				d["health"] = obj{"temperature": n(g.TemperatureC), "power": n(g.PowerW), "fan_speed": []any{n(g.FanPercent)},
					"clock": n(1500), "mem_clock": n(7000)}
			})
			if err != nil {
				return nil, fmt.Errorf("cuda backend: %w", err)
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("no cuda backend")
	}
	return doc, nil
}

func trexSummary(doc obj, r Reading) error {
	t := r.Total()
	for _, k := range []string{"hashrate", "hashrate_minute", "hashrate_hour", "hashrate_day"} {
		doc[k] = n(t)
	}
	doc["accepted_count"], doc["rejected_count"], doc["uptime"] = nu(r.Accepted), nu(0), secs(r.Uptime)
	doc["gpu_total"], doc["time"] = nu(uint64(len(r.GPUs))), time.Now().Unix()
	if r.Algorithm != "" {
		doc["algorithm"] = r.Algorithm
	}
	if pool, err := child(doc, "active_pool"); err == nil {
		pool["url"] = r.Pool
	}
	return devices(doc, "gpus", r.GPUs, func(d obj, i int, g GPU) {
		dom, bu, dev := bus(g.BusID, i)
		d["gpu_id"], d["device_id"], d["gpu_user_id"], d["name"] = i, i, i, g.Name
		d["pci_domain"], d["pci_bus"], d["pci_id"] = dom, bu, dev
		for _, k := range []string{"hashrate", "hashrate_minute", "hashrate_hour", "hashrate_day", "hashrate_instant"} {
			d[k] = n(g.Hashrate)
		}
		d["temperature"], d["power"], d["power_avr"], d["fan_speed"] = n(g.TemperatureC), n(g.PowerW), n(g.PowerW), n(g.FanPercent)
		if sh, ok := d["shares"].(obj); ok {
			sh["accepted_count"], sh["rejected_count"], sh["invalid_count"] = nu(shareOf(r, g)), nu(0), nu(0)
		}
	})
}

// lolminerSummary fills lolMiner 1.5x's reply, whose rates are in the
// unit its Performance_Unit names.
func lolminerSummary(doc obj, r Reading) error {
	const unit, factor = "Mh/s", 1e6
	sess, err := child(doc, "Session")
	if err != nil {
		return err
	}
	var power float64
	for _, g := range r.GPUs {
		power += g.PowerW
	}
	sess["Uptime"], sess["Active_GPUs"], sess["Total_Power"] = secs(r.Uptime), len(r.GPUs), n(power)
	doc["Num_Workers"] = len(r.GPUs)
	err = devices(doc, "Workers", r.GPUs, func(d obj, i int, g GPU) {
		_, bu, dev := bus(g.BusID, i)
		d["Index"], d["Name"], d["Power"], d["Core_Temp"], d["Fan_Speed"] = i, g.Name, n(g.PowerW), n(g.TemperatureC), n(g.FanPercent)
		// lolMiner prints the bus and device in decimal.
		d["PCIE_Address"] = fmt.Sprintf("%d:%d", bu, dev)
	})
	if err != nil {
		return err
	}
	algo, algos, err := firstOf(doc, "Algorithms")
	if err != nil {
		return err
	}
	doc["Algorithms"], doc["Num_Algorithms"] = algos[:1], 1
	if r.Algorithm != "" {
		algo["Algorithm"] = r.Algorithm
	}
	algo["Pool"], algo["Performance_Unit"], algo["Performance_Factor"] = r.Pool, unit, n(factor)
	algo["Total_Performance"], algo["Total_Accepted"] = n(r.Total()/factor), nu(r.Accepted)
	algo["Total_Rejected"], algo["Total_Stales"], algo["Total_Errors"] = 0, 0, 0
	perf, acc, zeros := make([]any, len(r.GPUs)), make([]any, len(r.GPUs)), make([]any, len(r.GPUs))
	for i, g := range r.GPUs {
		perf[i], acc[i], zeros[i] = n(g.Hashrate/factor), nu(shareOf(r, g)), 0
	}
	algo["Worker_Performance"], algo["Worker_Accepted"] = perf, acc
	algo["Worker_Rejected"], algo["Worker_Stales"], algo["Worker_Errors"] = zeros, zeros, zeros
	return nil
}

func gminerStat(doc obj, r Reading) error {
	doc["uptime"], doc["server"], doc["speed_unit"], doc["pool_speed"] = secs(r.Uptime), r.Pool, "H/s", n(r.Total())
	doc["total_accepted_shares"], doc["total_rejected_shares"], doc["total_stale_shares"] = nu(r.Accepted), 0, 0
	if r.Algorithm != "" {
		doc["algorithm"] = r.Algorithm
	}
	return devices(doc, "devices", r.GPUs, func(d obj, i int, g GPU) {
		dom, bu, dev := bus(g.BusID, i)
		d["gpu_id"], d["cuda_id"], d["name"] = i, i, g.Name
		d["bus_id"] = fmt.Sprintf("%04x:%02x:%02x.0", dom, bu, dev)
		d["speed"], d["accepted_shares"], d["rejected_shares"], d["stale_shares"] = n(g.Hashrate), nu(shareOf(r, g)), 0, 0
		d["fan"], d["temperature"], d["power_usage"] = n(g.FanPercent), n(g.TemperatureC), n(g.PowerW)
	})
}

// cgStatus refreshes the reply's STATUS time, which the adapter checks for
// staleness on some firmwares.
func cgStatus(doc obj, msg string) {
	if st, _, err := firstOf(doc, "STATUS"); err == nil {
		st["When"] = time.Now().Unix()
		if msg != "" {
			st["Msg"] = msg
		}
	}
}

// cgRates sets the rate fields of the cgminer API (MHS and KHS, average
// and 30 s window) to h H/s.
func cgRates(o obj, h float64) {
	o["MHS av"], o["MHS 30s"], o["KHS av"], o["KHS 30s"] = n(h/1e6), n(h/1e6), n(h/1e3), n(h/1e3)
}

func cgSummary(doc obj, r Reading) error {
	cgStatus(doc, "")
	s, _, err := firstOf(doc, "SUMMARY")
	if err != nil {
		return err
	}
	cgRates(s, r.Total())
	s["Elapsed"], s["Accepted"], s["Rejected"], s["Stale"], s["Hardware Errors"] = secs(r.Uptime), nu(r.Accepted), 0, 0, 0
	return nil
}

func cgDevs(doc obj, r Reading) error {
	cgStatus(doc, fmt.Sprintf("%d GPU(s)", len(r.GPUs)))
	return devices(doc, "DEVS", r.GPUs, func(d obj, i int, g GPU) {
		cgRates(d, g.Hashrate)
		d["GPU"], d["Temperature"], d["Fan Percent"] = i, n(g.TemperatureC), n(g.FanPercent)
		d["Accepted"], d["Rejected"], d["Hardware Errors"] = nu(shareOf(r, g)), 0, 0
	})
}

func cgPools(doc obj, r Reading) error {
	cgStatus(doc, "1 Pool(s)")
	p, _, err := firstOf(doc, "POOLS")
	if err != nil {
		return err
	}
	p["URL"], p["Accepted"], p["Rejected"], p["Stale"] = r.Pool, nu(r.Accepted), 0, 0
	doc["POOLS"] = []any{p}
	return nil
}
