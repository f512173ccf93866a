package web

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/quarryfleet/quarry/controller/figures"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/telemetry"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Alert is something on the overview that wants attention. Alerts that
// concern no single rig (a customer past due, stale market data) have no
// Rig.
type Alert struct {
	Rig      string `json:"rig"`
	RigName  string `json:"rig_name"`
	Severity string `json:"severity"` // warning or critical
	Message  string `json:"message"`
	Rule     string `json:"rule,omitempty"`
	// SinceMs is when the alert fired; Deliveries is where its latest
	// message went. Both come from the notifier, when one is set.
	SinceMs    int64           `json:"since_ms,omitempty"`
	Deliveries []AlertDelivery `json:"deliveries,omitempty"`
}

// AlertDelivery is how an alert's latest message fared on one channel.
type AlertDelivery struct {
	Channel  string `json:"channel"`
	Kind     string `json:"kind"`  // firing or resolved
	State    string `json:"state"` // pending, failing, delivered or dropped
	Attempts int    `json:"attempts,omitempty"`
	Error    string `json:"error,omitempty"`
}

// AlgoRate is the fleet's hashrate on one algorithm.
type AlgoRate struct {
	Algorithm string  `json:"algorithm"`
	Hashrate  float64 `json:"hashrate"`
}

// RigRow is one line of the rig table.
type RigRow struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Online     bool     `json:"online"`
	Revoked    bool     `json:"revoked"`
	Hashrate   float64  `json:"hashrate"`
	Algorithms string   `json:"algorithms"`
	GPUs       int      `json:"gpus"`
	MaxTempC   *float64 `json:"max_temp_c,omitempty"`
	PowerW     *float64 `json:"power_w,omitempty"`
	ProfitUSD  *float64 `json:"profit_usd_per_day,omitempty"`
	LastSeenMs int64    `json:"last_seen_ms"`
	Alerts     int      `json:"alerts"`
}

// Overview is the fleet page.
type Overview struct {
	Total     int        `json:"total"`
	Online    int        `json:"online"`
	Offline   int        `json:"offline"`
	Hashrate  []AlgoRate `json:"hashrate"`
	PowerW    float64    `json:"power_w"`
	ProfitUSD *float64   `json:"profit_usd_per_day,omitempty"`
	Market    string     `json:"market,omitempty"` // where profit's market data comes from
	// Alerts are the first MaxOverviewAlerts of AlertCount, by rig name.
	Alerts     []Alert `json:"alerts"`
	AlertCount int     `json:"alert_count"`
	// Rigs is one page of the rig table: Limit rows from Offset, in the
	// order asked for; Total says how many rows there are.
	Rigs    []RigRow `json:"rigs"`
	Offset  int      `json:"offset"`
	Limit   int      `json:"limit"`
	Billing bool     `json:"billing"`

	// Matched is how many rigs pass the table's filter (q, selector,
	// status, algorithm); Total when there is none.
	Matched int `json:"matched"`
}

// GPUView is one GPU on the rig page.
type GPUView struct {
	Index      uint32    `json:"index"`
	Name       string    `json:"name"`
	Vendor     string    `json:"vendor,omitempty"`
	BusID      string    `json:"bus_id,omitempty"`
	Lost       bool      `json:"lost"`
	TempC      *float64  `json:"temp_c,omitempty"`
	MemTempC   *float64  `json:"mem_temp_c,omitempty"`
	FanPercent []float64 `json:"fan_percent,omitempty"`
	PowerW     *float64  `json:"power_w,omitempty"`
	PowerLimW  *float64  `json:"power_limit_w,omitempty"`
	CoreMHz    *uint32   `json:"core_mhz,omitempty"`
	MemMHz     *uint32   `json:"mem_mhz,omitempty"`
	UtilPct    *float64  `json:"util_percent,omitempty"`
	Hashrate   *float64  `json:"hashrate,omitempty"`
	Miner      string    `json:"miner,omitempty"`
	Algorithm  string    `json:"algorithm,omitempty"`
	Accepted   uint64    `json:"accepted"`
	Rejected   uint64    `json:"rejected"`
	GPULimits
}

// GPULimits are a card's own limits, which overclock profiles must stay
// within, and the profile it runs; a limit is absent when the card does
// not report it.
type GPULimits struct {
	UUID       string   `json:"uuid,omitempty"`
	PowerMinW  *float64 `json:"power_limit_min_w,omitempty"`
	PowerMaxW  *float64 `json:"power_limit_max_w,omitempty"`
	PowerDefW  *float64 `json:"power_limit_default_w,omitempty"`
	CoreMaxMHz *uint32  `json:"core_max_mhz,omitempty"`
	MemMaxMHz  *uint32  `json:"mem_max_mhz,omitempty"`
	OCProfile  string   `json:"oc_profile,omitempty"`
}

// MinerView is one miner on the rig page.
type MinerView struct {
	Miner     string `json:"miner"`
	Version   string `json:"version,omitempty"`
	Algorithm string `json:"algorithm"`
	Coin      string `json:"coin"`
	Pool      string `json:"pool,omitempty"`
	// Hashrate is absent when unknown (state other than running).
	Hashrate *float64 `json:"hashrate,omitempty"`
	Accepted uint64   `json:"accepted"`
	Rejected uint64   `json:"rejected"`
	Stale    uint64   `json:"stale"`
	UptimeS  uint64   `json:"uptime_s"`
	State    string   `json:"state"`
	Error    string   `json:"error,omitempty"`
}

// EventView is one watchdog or agent event.
type EventView struct {
	TimeMs  int64             `json:"time_ms"`
	Kind    string            `json:"kind"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// HostView is the rig's host figures.
type HostView struct {
	CPUPercent float64 `json:"cpu_percent"`
	MemUsed    uint64  `json:"mem_used_bytes"`
	MemTotal   uint64  `json:"mem_total_bytes"`
	Load1      float64 `json:"load1"`
	UptimeS    uint64  `json:"uptime_s"`
}

// FigureView is what the controller has learned of the rig on one
// algorithm: the figures profit switching ranks it with.
type FigureView struct {
	Algorithm string   `json:"algorithm"`
	Hashrate  float64  `json:"hashrate"`
	PowerW    *float64 `json:"power_w,omitempty"` // absent while unknown
	Source    string   `json:"source"`            // benchmark or live
	Samples   uint64   `json:"samples"`
	UpdatedMs int64    `json:"updated_ms"`
}

// RigView is the rig page.
type RigView struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Hostname   string            `json:"hostname"`
	Version    string            `json:"version"`
	Online     bool              `json:"online"`
	Revoked    bool              `json:"revoked"`
	LastSeenMs int64             `json:"last_seen_ms"`
	Reports    uint64            `json:"reports"`
	Host       *HostView         `json:"host,omitempty"`
	GPUs       []GPUView         `json:"gpus"`
	Miners     []MinerView       `json:"miners"`
	Events     []EventView       `json:"events"`
	Alerts     []Alert           `json:"alerts"`
	Switches   []Switch          `json:"switches,omitempty"`
	Profit     *Profit           `json:"profit,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	// PowerW is the rig's draw as billing meters it; absent when no GPU
	// reports power.
	PowerW  *float64     `json:"power_w,omitempty"`
	Figures []FigureView `json:"figures,omitempty"`
}

// Point is one chart sample.
type Point struct {
	TimeMs int64 `json:"t"`
	// Hashrate sums the miners with a reading; absent (a gap in the
	// chart) when none had one.
	Hashrate *float64 `json:"hashrate,omitempty"`
	PowerW   *float64 `json:"power_w,omitempty"`
	MaxTempC *float64 `json:"max_temp_c,omitempty"`
}

func busKey(id string) string {
	if n, err := telemetry.NormalizeBusID(id); err == nil {
		return n
	}
	return id
}

func rigHashrate(r *quarryv1.Rig) (total float64, algos []string) {
	seen := map[string]bool{}
	for _, m := range r.Miners {
		if m.HashrateKnown() {
			total += m.Hashrate
		}
		if m.Algorithm != "" && !seen[m.Algorithm] {
			seen[m.Algorithm] = true
			algos = append(algos, m.Algorithm)
		}
	}
	sort.Strings(algos)
	return total, algos
}

func maxTemp(gpus []*quarryv1.GPUStats) *float64 {
	var m *float64
	for _, g := range gpus {
		if g.TemperatureC != nil && (m == nil || *g.TemperatureC > *m) {
			v := *g.TemperatureC
			m = &v
		}
	}
	return m
}

// alerts are a rig's alerts: the notifier's firing ones when it is set,
// else the same rules evaluated now.
func (s *Server) alerts(r *quarryv1.Rig, firing map[string][]Alert) []Alert {
	if firing != nil {
		return firing[r.Id]
	}
	var out []Alert
	for _, a := range s.opts.Rules.RigAlerts(r, s.fleet.Now(), time.Time{}, nil) {
		out = append(out, Alert{Rig: a.RigID, RigName: a.RigName, Severity: a.Severity, Message: a.Message, Rule: a.Rule})
	}
	return out
}

// firingByRig is the notifier's firing alerts by rig ("" for those of no
// rig), or nil without a notifier.
func (s *Server) firingByRig() map[string][]Alert {
	p := s.alertProvider()
	if p == nil {
		return nil
	}
	out := map[string][]Alert{}
	for _, a := range p.FiringAlerts() {
		out[a.Rig] = append(out[a.Rig], a)
	}
	return out
}

// Overview pages: the totals, hashrate, power and profit cover the whole
// fleet, but the rig table is one sorted page and the alert list is
// bounded, so the answer stays small however many rigs there are.
const (
	DefaultOverviewRigs = 100
	MaxOverviewRigs     = 500
	MaxOverviewAlerts   = 100
)

// overviewQuery is which page of the rig table the client shows.
type overviewQuery struct {
	sort   string
	desc   bool
	offset int
	limit  int
	filter rigFilter
}

// rigFilter narrows the rig table; the tiles and alerts still cover the
// whole fleet. The zero value keeps every rig.
type rigFilter struct {
	text      string // lower-cased; part of the name, or the start of the id
	selector  *flightsheet.Selector
	status    string // online, offline or alerts
	algorithm string
}

func (f rigFilter) active() bool {
	return f.text != "" || f.selector != nil || f.status != "" || f.algorithm != ""
}

// Bounds on the filter's text fields: they come from the query string.
const maxFilterLen = 256

// keep reports whether r passes the filter; algos are the rig's miners'
// algorithms and alerts its alert count, both already computed.
func (f rigFilter) keep(r *quarryv1.Rig, algos []string, alerts int) bool {
	if f.text != "" && !strings.Contains(strings.ToLower(r.Name), f.text) && !strings.HasPrefix(r.Id, f.text) {
		return false
	}
	switch f.status {
	case "online":
		if !r.Online {
			return false
		}
	case "offline":
		if r.Online {
			return false
		}
	case "alerts":
		if alerts == 0 {
			return false
		}
	}
	if f.algorithm != "" && !slices.Contains(algos, f.algorithm) {
		return false
	}
	// Last: building the selector's view of a rig allocates.
	return f.selector == nil || f.selector.Matches(fleet.SelectorRig(r))
}

// overviewSorts are the rig table's sortable columns.
var overviewSorts = map[string]func(a, b *RigRow) int{
	"name":               func(a, b *RigRow) int { return strings.Compare(a.Name, b.Name) },
	"online":             func(a, b *RigRow) int { return cmpBool(a.Online, b.Online) },
	"hashrate":           func(a, b *RigRow) int { return cmp.Compare(a.Hashrate, b.Hashrate) },
	"algorithms":         func(a, b *RigRow) int { return strings.Compare(a.Algorithms, b.Algorithms) },
	"gpus":               func(a, b *RigRow) int { return cmp.Compare(a.GPUs, b.GPUs) },
	"max_temp_c":         func(a, b *RigRow) int { return cmpOpt(a.MaxTempC, b.MaxTempC) },
	"power_w":            func(a, b *RigRow) int { return cmpOpt(a.PowerW, b.PowerW) },
	"profit_usd_per_day": func(a, b *RigRow) int { return cmpOpt(a.ProfitUSD, b.ProfitUSD) },
	"last_seen_ms":       func(a, b *RigRow) int { return cmp.Compare(a.LastSeenMs, b.LastSeenMs) },
	"alerts":             func(a, b *RigRow) int { return cmp.Compare(a.Alerts, b.Alerts) },
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// cmpOpt orders an absent figure before every present one.
func cmpOpt(a, b *float64) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return cmp.Compare(*a, *b)
}

// parseOverviewQuery reads sort (a column), dir (asc or desc), offset and
// limit; anything else is refused with a message saying what is allowed.
func parseOverviewQuery(v url.Values) (overviewQuery, error) {
	q := overviewQuery{sort: "name", limit: DefaultOverviewRigs}
	if s := v.Get("sort"); s != "" {
		if _, ok := overviewSorts[s]; !ok {
			return q, fmt.Errorf("sort %q: want one of %s", s, strings.Join(slices.Sorted(maps.Keys(overviewSorts)), ", "))
		}
		q.sort = s
	}
	switch v.Get("dir") {
	case "", "asc":
	case "desc":
		q.desc = true
	default:
		return q, fmt.Errorf("dir %q: want asc or desc", v.Get("dir"))
	}
	for _, k := range []string{"q", "selector", "status", "algorithm"} {
		if len(v.Get(k)) > maxFilterLen {
			return q, fmt.Errorf("%s: at most %d characters", k, maxFilterLen)
		}
	}
	q.filter.text = strings.ToLower(strings.TrimSpace(v.Get("q")))
	if sel := strings.TrimSpace(v.Get("selector")); sel != "" {
		ps, err := flightsheet.ParseSelector(sel)
		if err != nil {
			return q, fmt.Errorf("selector: %w", err)
		}
		q.filter.selector = &ps
	}
	switch st := v.Get("status"); st {
	case "", "online", "offline", "alerts":
		q.filter.status = st
	default:
		return q, fmt.Errorf("status %q: want online, offline or alerts", st)
	}
	q.filter.algorithm = strings.TrimSpace(v.Get("algorithm"))
	for _, p := range []struct {
		name     string
		dst      *int
		min, max int
	}{{"offset", &q.offset, 0, math.MaxInt32}, {"limit", &q.limit, 1, MaxOverviewRigs}} {
		s := v.Get(p.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < p.min || n > p.max {
			return q, fmt.Errorf("%s %q: want a whole number from %d to %d", p.name, s, p.min, p.max)
		}
		*p.dst = n
	}
	return q, nil
}

func (s *Server) buildOverview(q overviewQuery) Overview {
	profit, _, billing := s.providers()
	ov := Overview{Hashrate: []AlgoRate{}, Alerts: []Alert{}, Rigs: []RigRow{}, Billing: billing != nil, Offset: q.offset, Limit: q.limit}
	byAlgo := map[string]float64{}
	var rows []RigRow
	var alerts []Alert
	firing := s.firingByRig()
	if firing != nil {
		alerts = append(alerts, firing[""]...)
	}
	var filtered []string // rigs left out of the table, still in the totals
	// Rows are computed from views under the fleet's lock, so no rig is
	// copied; the profit provider is asked afterwards, outside it.
	s.fleet.EachRig(func(r *quarryv1.Rig) {
		if r.Revoked {
			return
		}
		ov.Total++
		if r.Online {
			ov.Online++
		} else {
			ov.Offline++
		}
		hr, algos := rigHashrate(r)
		row := RigRow{ID: r.Id, Name: r.Name, Online: r.Online, Hashrate: hr, Algorithms: strings.Join(algos, ", "), GPUs: len(r.Gpus), MaxTempC: maxTemp(r.Gpus), LastSeenMs: r.LastSeenUnixNano / 1e6}
		if r.Online {
			for _, m := range r.Miners {
				if m.HashrateKnown() {
					byAlgo[m.Algorithm] += m.Hashrate
				}
			}
			if w, ok := r.MeasuredPowerW(); ok {
				row.PowerW = &w
				ov.PowerW += w
			}
		}
		al := s.alerts(r, firing)
		row.Alerts = len(al)
		alerts = append(alerts, al...)
		if q.filter.active() && !q.filter.keep(r, algos, len(al)) {
			if profit != nil {
				filtered = append(filtered, r.Id)
			}
			return
		}
		rows = append(rows, row)
	})
	ov.Matched = len(rows)
	if profit != nil {
		var profitSum float64
		var anyProfit bool
		for i := range rows {
			if p, ok := profit.RigProfit(rows[i].ID); ok {
				v := p.USDPerDay
				rows[i].ProfitUSD = &v
				profitSum += v
				anyProfit = true
			}
		}
		for _, id := range filtered {
			if p, ok := profit.RigProfit(id); ok {
				profitSum += p.USDPerDay
				anyProfit = true
			}
		}
		if anyProfit {
			ov.ProfitUSD = &profitSum
		}
	}
	// Sorting pointers keeps the comparisons free of copies and
	// allocations, which at 100,000 rows is most of the work.
	order := make([]*RigRow, len(rows))
	for i := range rows {
		order[i] = &rows[i]
	}
	by := overviewSorts[q.sort]
	slices.SortFunc(order, func(a, b *RigRow) int {
		c := by(a, b)
		if q.desc {
			c = -c
		}
		if c == 0 {
			if c = strings.Compare(a.Name, b.Name); c == 0 {
				c = strings.Compare(a.ID, b.ID)
			}
		}
		return c
	})
	if q.offset < len(order) {
		for _, r := range order[q.offset:min(len(order), q.offset+q.limit)] {
			ov.Rigs = append(ov.Rigs, *r)
		}
	}
	// Alerts in rig-name order, each rig's in the order found, up to the
	// bound; AlertCount says how many there are in all.
	slices.SortStableFunc(alerts, func(a, b Alert) int {
		if c := strings.Compare(a.RigName, b.RigName); c != 0 {
			return c
		}
		return strings.Compare(a.Rig, b.Rig)
	})
	ov.AlertCount = len(alerts)
	if len(alerts) > 0 {
		ov.Alerts = alerts[:min(len(alerts), MaxOverviewAlerts)]
	}
	for a, h := range byAlgo {
		if a == "" {
			a = "unknown"
		}
		ov.Hashrate = append(ov.Hashrate, AlgoRate{Algorithm: a, Hashrate: h})
	}
	sort.Slice(ov.Hashrate, func(i, j int) bool { return ov.Hashrate[i].Algorithm < ov.Hashrate[j].Algorithm })
	if mm, ok := profit.(MarketModer); ok {
		ov.Market = mm.MarketMode()
	}
	return ov
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	q, err := parseOverviewQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, s.buildOverview(q))
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (*quarryv1.Rig, bool) {
	id, err := s.fleet.Resolve(r.PathValue("rig"))
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, fleet.ErrUnknownRig) {
			code = http.StatusNotFound
		} else if strings.Contains(err.Error(), "ambiguous") {
			code = http.StatusConflict
		}
		writeError(w, code, err.Error())
		return nil, false
	}
	rig, err := s.fleet.Rig(id)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return nil, false
	}
	return rig, true
}

func (s *Server) buildRig(r *quarryv1.Rig) RigView {
	profit, switches, _ := s.providers()
	v := RigView{ID: r.Id, Name: r.Name, Hostname: r.Hostname, Version: r.Version, Online: r.Online, Revoked: r.Revoked,
		LastSeenMs: r.LastSeenUnixNano / 1e6, Reports: r.Reports, GPUs: []GPUView{}, Miners: []MinerView{}, Events: []EventView{}, Alerts: s.alerts(r, s.firingByRig()), Tags: r.Tags}
	if v.Alerts == nil {
		v.Alerts = []Alert{}
	}
	if h := r.Host; h != nil {
		v.Host = &HostView{CPUPercent: h.CpuPercent, MemUsed: h.MemoryUsedBytes, MemTotal: h.MemoryTotalBytes, Load1: h.Load1, UptimeS: h.UptimeSeconds}
	}
	type share struct {
		miner, algo string
		hr          float64
		acc, rej    uint64
	}
	perBus := map[string]share{}
	for _, m := range r.Miners {
		mv := MinerView{Miner: m.Miner, Version: m.Version, Algorithm: m.Algorithm, Coin: m.Coin, Pool: m.Pool,
			Accepted: m.Accepted, Rejected: m.Rejected, Stale: m.Stale, UptimeS: m.UptimeSeconds, State: m.State, Error: m.Error}
		if m.HashrateKnown() {
			hr := m.Hashrate
			mv.Hashrate = &hr
		}
		v.Miners = append(v.Miners, mv)
		if !m.HashrateKnown() {
			continue
		}
		for _, g := range m.Gpus {
			k := busKey(g.BusId)
			sh := perBus[k]
			sh.miner, sh.algo = m.Miner, m.Algorithm
			sh.hr += g.Hashrate
			sh.acc += g.Accepted
			sh.rej += g.Rejected
			perBus[k] = sh
		}
	}
	for _, g := range r.Gpus {
		gv := GPUView{Index: g.Index, Name: g.Name, Vendor: g.Vendor, BusID: g.BusId, Lost: g.Lost, TempC: g.TemperatureC, MemTempC: g.MemoryTemperatureC,
			FanPercent: g.FanPercent, PowerW: g.PowerW, PowerLimW: g.PowerLimitW, CoreMHz: g.SmClockMhz, MemMHz: g.MemoryClockMhz, UtilPct: g.UtilizationPercent,
			GPULimits: GPULimits{UUID: g.Uuid, PowerMinW: g.PowerLimitMinW, PowerMaxW: g.PowerLimitMaxW, PowerDefW: g.PowerLimitDefaultW,
				CoreMaxMHz: g.SmClockMaxMhz, MemMaxMHz: g.MemoryClockMaxMhz, OCProfile: g.AppliedProfile}}
		if sh, ok := perBus[busKey(g.BusId)]; ok && g.BusId != "" {
			hr := sh.hr
			gv.Hashrate, gv.Miner, gv.Algorithm, gv.Accepted, gv.Rejected = &hr, sh.miner, sh.algo, sh.acc, sh.rej
		}
		v.GPUs = append(v.GPUs, gv)
	}
	for i := len(r.Events) - 1; i >= 0; i-- { // newest first
		e := r.Events[i]
		v.Events = append(v.Events, EventView{TimeMs: e.TimeUnixNano / 1e6, Kind: e.Kind, Message: e.Message, Fields: e.Fields})
	}
	if switches != nil {
		v.Switches = switches.RigSwitches(r.Id, 50)
	}
	if profit != nil {
		if p, ok := profit.RigProfit(r.Id); ok {
			v.Profit = &p
		}
	}
	if w, ok := r.MeasuredPowerW(); ok {
		v.PowerW = &w
	}
	if fp := s.figureProvider(); fp != nil {
		v.Figures = figureViews(fp.Figures(r.Id))
	}
	return v
}

func figureViews(m map[string]figures.Figure) []FigureView {
	out := make([]FigureView, 0, len(m))
	for algo, f := range m {
		fv := FigureView{Algorithm: algo, Hashrate: f.HashrateHs, Source: f.Source, Samples: f.Samples, UpdatedMs: f.Updated.UnixMilli()}
		if f.PowerW > 0 {
			w := f.PowerW
			fv.PowerW = &w
		}
		out = append(out, fv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Algorithm < out[j].Algorithm })
	return out
}

func (s *Server) rig(w http.ResponseWriter, r *http.Request) {
	rig, ok := s.lookup(w, r)
	if !ok {
		return
	}
	writeJSON(w, s.buildRig(rig))
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	rig, ok := s.lookup(w, r)
	if !ok {
		return
	}
	n := s.opts.HistoryPoints
	if q := r.URL.Query().Get("n"); q != "" {
		v, err := strconv.Atoi(q)
		if err != nil || v < 1 {
			writeError(w, http.StatusBadRequest, "n must be a positive number of points")
			return
		}
		n = min(v, s.opts.HistoryPoints)
	}
	reps, err := s.fleet.History(rig.Id, n)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	pts := make([]Point, 0, len(reps))
	for _, rep := range reps {
		p := Point{TimeMs: rep.TimeUnixNano / 1e6}
		for _, m := range rep.Miners {
			if m.HashrateKnown() {
				h := m.Hashrate
				if p.Hashrate != nil {
					h += *p.Hashrate
				}
				p.Hashrate = &h
			}
		}
		if w, ok := rep.MeasuredPowerW(); ok {
			p.PowerW = &w
		}
		p.MaxTempC = maxTemp(rep.Gpus)
		pts = append(pts, p)
	}
	writeJSON(w, map[string]any{"points": pts})
}

func (s *Server) billingStatus(w http.ResponseWriter, r *http.Request) {
	_, _, billing := s.providers()
	if billing == nil {
		writeJSON(w, map[string]any{"available": false, "customers": []BillingLine{}})
		return
	}
	lines, err := billing.BillingStatus(r.Context())
	if err != nil {
		writeError(w, http.StatusBadGateway, "billing: "+err.Error())
		return
	}
	if lines == nil {
		lines = []BillingLine{}
	}
	writeJSON(w, map[string]any{"available": true, "customers": lines})
}

// actions are the commands the dashboard offers, by URL name.
var actions = map[string]quarryv1.CommandKind{
	"restart-miner": quarryv1.CommandKind_COMMAND_KIND_RESTART_MINER,
	"ping":          quarryv1.CommandKind_COMMAND_KIND_PING,
	"pause":         quarryv1.CommandKind_COMMAND_KIND_PAUSE,
	"resume":        quarryv1.CommandKind_COMMAND_KIND_RESUME,
}

func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	kind, ok := actions[r.PathValue("action")]
	if !ok {
		writeError(w, http.StatusNotFound, "unknown action "+strconv.Quote(r.PathValue("action"))+"; one of restart-miner, ping, pause, resume")
		return
	}
	rig, ok := s.lookup(w, r)
	if !ok {
		return
	}
	sess := sessionFrom(r.Context())
	rec, err := s.fleet.QueueCommand(rig.Id, kind, nil, 0)
	result, detail := "ok", "web"
	if err != nil {
		result = "error: " + err.Error()
	} else {
		detail += " " + rec.Command.Id
	}
	s.audit(sess.Who, sess.Role, "command "+kind.String(), rig.Id, result, detail)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSONStatus(w, http.StatusAccepted, map[string]string{"command_id": rec.Command.Id, "status": strings.TrimPrefix(rec.Status.String(), "COMMAND_STATUS_")})
}

func (s *Server) command(w http.ResponseWriter, r *http.Request) {
	rec, err := s.fleet.Command(r.PathValue("id"))
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, fleet.ErrUnknownCommand) {
			code = http.StatusNotFound
		}
		writeError(w, code, err.Error())
		return
	}
	writeJSON(w, map[string]string{
		"command_id": rec.Command.Id,
		"rig":        rec.RigId,
		"kind":       rec.Command.Kind.String(),
		"status":     strings.TrimPrefix(rec.Status.String(), "COMMAND_STATUS_"),
		"error":      rec.Error,
		"output":     string(rec.Output),
	})
}
