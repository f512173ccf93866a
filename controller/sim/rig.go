package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/market"
	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/minerapi/minersim"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// maxQueuedEvents bounds the events a rig keeps for its next report.
const maxQueuedEvents = 64

// job is what a simulated rig mines.
type job struct {
	Sheet   string `json:"sheet,omitempty"` // flight sheet name
	Coin    string `json:"coin"`
	Algo    string `json:"algorithm"`
	Miner   string `json:"miner"`
	Pool    string `json:"pool"`
	Stopped bool   `json:"stopped"`
}

type gpu struct {
	model     string
	fig       GPUModel
	busID     string
	tempC     float64
	lostUntil time.Time
}

// Rig is one simulated rig: its hardware, what it mines and the events
// it has not reported yet. It answers the controller's commands.
type Rig struct {
	Name string
	Type RigType

	prof     *Profile
	db       *bolt.DB
	stateKey []byte // bucket for the rig's own state
	rnd      *rand.Rand

	mu        sync.Mutex
	job       job
	gpus      []gpu
	started   time.Time // current miner run
	accepted  uint64
	crashed   bool // the next report shows the miner crashed
	events    []*quarryv1.Event
	lastTick  time.Time
	bootedAt  time.Time
	crashCues int

	// With miner APIs on, the rig's miner is a listener serving the
	// recorded reply of the miner its job names, and the rig reads it
	// through that miner's adapter as the agent does. apiMu orders
	// starting and stopping it; api and ad are read under mu.
	reader *apiReader
	sheets *sheetCache
	apiMu  sync.Mutex
	api    *minersim.Server
	ad     minerapi.Adapter
}

// apiReader is what the rigs share to read their miners' APIs: the
// agent's adapter registry and one client.
type apiReader struct {
	reg    *minerapi.Registry
	client *minerapi.Client
}

// statsTimeout bounds one read of a simulated miner's API, as the agent
// bounds a real one's.
const statsTimeout = 5 * time.Second

func newAPIReader() *apiReader {
	return &apiReader{reg: minerapi.Default(), client: minerapi.NewClient(minerapi.WithTimeout(statsTimeout))}
}

// newRig makes rig i; reader is nil when the rig's miner has no API.
func newRig(name string, i int, prof *Profile, db *bolt.DB, prefix string, seed uint64, reader *apiReader) (*Rig, error) {
	rt := prof.rigType(i)
	r := &Rig{Name: name, Type: rt, prof: prof, db: db, stateKey: []byte(prefix + "sim"),
		rnd: rand.New(rand.NewPCG(seed, uint64(i))), bootedAt: time.Now(), reader: reader}
	for k, model := range rt.cards() {
		r.gpus = append(r.gpus, gpu{model: model, fig: prof.GPUModels[model], busID: fmt.Sprintf("0000:%02x:00.0", k+1), tempC: prof.AmbientC})
	}
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(r.stateKey)
		if err != nil {
			return err
		}
		if v := b.Get([]byte("job")); v != nil {
			return json.Unmarshal(v, &r.job)
		}
		if in := prof.Initial; in != nil && r.supports(market.CanonicalAlgorithm(in.Algorithm)) {
			r.job = job{Coin: in.Coin, Algo: market.CanonicalAlgorithm(in.Algorithm), Miner: in.Miner, Pool: in.Pool}
		} else {
			r.job = job{Stopped: true}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rig %s state: %w", name, err)
	}
	r.started = time.Now()
	if err := r.startAPI(r.job); err != nil {
		return nil, fmt.Errorf("rig %s: %w", name, err)
	}
	return r, nil
}

// startAPI starts (or keeps) the simulated API of the miner j names, or
// stops it when j mines nothing. A miner with no recorded reply has no
// API; the rig then reports its own figures directly.
func (r *Rig) startAPI(j job) error {
	if r.reader == nil {
		return nil
	}
	r.apiMu.Lock()
	defer r.apiMu.Unlock()
	r.mu.Lock()
	old := r.api
	r.mu.Unlock()
	want := !j.Stopped && j.Algo != "" && minersim.Supported(j.Miner)
	var srv *minersim.Server
	var ad minerapi.Adapter
	if want {
		var err error
		// The adapter is per job: the algorithm picks the units of some
		// miners' rate fields.
		ad, err = r.reader.reg.New(j.Miner, minerapi.Options{Client: r.reader.client, Algorithm: j.Algo})
		if err != nil {
			return fmt.Errorf("miner %s: %w", j.Miner, err)
		}
		if old != nil && old.Miner() == j.Miner {
			srv, old = old, nil
		} else if srv, err = minersim.Listen(j.Miner, "127.0.0.1:0"); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.api, r.ad = srv, ad
	r.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

// Close stops the rig's miner API.
func (r *Rig) Close() {
	r.apiMu.Lock()
	defer r.apiMu.Unlock()
	r.mu.Lock()
	srv := r.api
	r.api, r.ad = nil, nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// MinerAPI is where the rig's simulated miner serves its stats, and false
// when it serves none.
func (r *Rig) MinerAPI() (miner string, ep minerapi.Endpoint, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.api == nil {
		return "", minerapi.Endpoint{}, false
	}
	return r.api.Miner(), r.api.Endpoint(), true
}

func (r *Rig) supports(algo string) bool {
	for _, g := range r.gpus {
		if _, ok := g.fig.Algorithms[algo]; !ok {
			return false
		}
	}
	return true
}

func (r *Rig) saveJob(j job) error {
	v, err := json.Marshal(j)
	if err != nil {
		return err
	}
	// Batched: a fleet-wide switch saves every rig's job at once, and the
	// rigs share a few database files.
	return r.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(r.stateKey).Put([]byte("job"), v) })
}

// Job is what the rig mines now: coin and algorithm, or stopped.
func (r *Rig) Job() (coin, algo string, mining bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.job.Coin, r.job.Algo, !r.job.Stopped
}

// HandleCommand obeys the controller as the agent would: a flight sheet
// changes what the rig mines (refused, changing nothing, when the rig's
// cards have no figures for its algorithm), stop and pause stop mining,
// resume and restart start it again.
func (r *Rig) HandleCommand(_ context.Context, cmd *quarryv1.Command) ([]byte, error) {
	switch cmd.Kind {
	case quarryv1.CommandKind_COMMAND_KIND_PING:
		return []byte("pong from " + r.Name + " (simulated)"), nil
	case quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET:
		sheet, err := r.sheets.parse(cmd.Payload)
		if err != nil {
			r.event("flight_sheet_refused", "flight sheet refused: "+err.Error(), nil)
			return nil, fmt.Errorf("refused, nothing changed: %w", err)
		}
		algo := market.CanonicalAlgorithm(sheet.Algorithm)
		if !r.supports(algo) {
			err := fmt.Errorf("simulated %s cards have no figures for %s", r.Type.Name, sheet.Algorithm)
			r.event("flight_sheet_refused", "flight sheet refused: "+err.Error(), nil)
			return nil, fmt.Errorf("refused, nothing changed: %w", err)
		}
		if sheet.Miner.Name == "" || len(sheet.Pools) == 0 {
			return nil, errors.New("refused, nothing changed: flight sheet needs a miner and a pool")
		}
		j := job{Sheet: sheet.Name, Coin: sheet.Coin, Algo: algo, Miner: sheet.Miner.Name, Pool: sheet.Pools[0].URL}
		if err := r.saveJob(j); err != nil {
			return nil, fmt.Errorf("flight sheet not recorded: %w", err)
		}
		if err := r.startAPI(j); err != nil {
			return nil, fmt.Errorf("start miner: %w", err)
		}
		r.mu.Lock()
		r.job, r.started, r.crashed = j, time.Now(), false
		r.mu.Unlock()
		r.event("miner_started", fmt.Sprintf("%s started (simulated)", j.Miner), map[string]string{"sheet": j.Sheet})
		return fmt.Appendf(nil, "mining %s: %s %s on %s (simulated)", j.Sheet, j.Miner, j.Algo, j.Pool), nil
	case quarryv1.CommandKind_COMMAND_KIND_STOP_MINER, quarryv1.CommandKind_COMMAND_KIND_PAUSE:
		return r.setStopped(true, "miner_stopped", "miner stopped")
	case quarryv1.CommandKind_COMMAND_KIND_RESUME, quarryv1.CommandKind_COMMAND_KIND_RESTART_MINER:
		r.mu.Lock()
		noJob := r.job.Algo == ""
		r.mu.Unlock()
		if noJob {
			return nil, errors.New("no flight sheet applied")
		}
		return r.setStopped(false, "miner_started", "miner started")
	default:
		return nil, fmt.Errorf("the simulator does not support %s", cmd.Kind)
	}
}

func (r *Rig) setStopped(stopped bool, kind, msg string) ([]byte, error) {
	r.mu.Lock()
	j := r.job
	r.mu.Unlock()
	j.Stopped = stopped
	if err := r.saveJob(j); err != nil {
		return nil, err
	}
	if err := r.startAPI(j); err != nil {
		return nil, fmt.Errorf("start miner: %w", err)
	}
	r.mu.Lock()
	r.job, r.started, r.crashed = j, time.Now(), false
	r.mu.Unlock()
	r.event(kind, msg+" (simulated)", nil)
	return []byte(msg), nil
}

// Crash makes the miner crash now: the next report shows it crashed with
// the events the agent's supervisor and watchdog would send, and the one
// after shows it running again.
func (r *Rig) Crash() {
	r.mu.Lock()
	mining := !r.job.Stopped
	miner := r.job.Miner
	r.crashCues++
	r.mu.Unlock()
	if !mining {
		return
	}
	r.event("miner_exited", miner+" exited: signal: segmentation fault (simulated)", map[string]string{"exit": "SIGSEGV"})
	r.event("watchdog_restart_miner", "miner crashed; restarting it (simulated)", nil)
	r.mu.Lock()
	r.crashed, r.started = true, time.Now()
	r.mu.Unlock()
}

// LoseGPU marks one card lost for the profile's gpu_lost_for.
func (r *Rig) LoseGPU() {
	r.mu.Lock()
	k := r.rnd.IntN(len(r.gpus))
	g := &r.gpus[k]
	g.lostUntil = time.Now().Add(r.prof.GPULostFor)
	bus := g.busID
	r.mu.Unlock()
	r.event("watchdog_gpu_lost", "GPU "+bus+" is lost (simulated)", map[string]string{"bus_id": bus})
}

func (r *Rig) event(kind, msg string, fields map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) >= maxQueuedEvents {
		r.events = r.events[1:]
	}
	r.events = append(r.events, &quarryv1.Event{TimeUnixNano: time.Now().UnixNano(), Kind: kind, Message: msg, Fields: fields})
}

// Inventory is the rig's Hello inventory.
func (r *Rig) Inventory() *quarryv1.Inventory {
	inv := &quarryv1.Inventory{Os: "linux (simulated)", Kernel: "sim", CpuModel: "Simulated CPU", CpuCores: 4, MemoryTotalBytes: 8 << 30,
		Tags: map[string]string{"simulated": "true", "rig_type": r.Type.Name}}
	for k, g := range r.gpus {
		inv.Gpus = append(inv.Gpus, &quarryv1.GPUStats{Index: uint32(k), Vendor: "nvidia", Name: g.model, BusId: g.busID, Uuid: fmt.Sprintf("GPU-sim-%s-%d", r.Name, k)})
	}
	return inv
}

// Report advances the simulation to now and returns the rig's report.
// Random crashes and lost GPUs happen here at the profile's rates. With
// miner APIs on, the miner's part of the report is read from the rig's
// simulated miner through its adapter, as the agent reads a real one.
func (r *Rig) Report(ctx context.Context, now time.Time) *quarryv1.Report {
	r.mu.Lock()
	dt := now.Sub(r.lastTick)
	if r.lastTick.IsZero() {
		dt = 0
	}
	r.lastTick = now
	hours := dt.Hours()
	crash := r.prof.CrashesPerHour > 0 && r.rnd.Float64() < 1-math.Exp(-r.prof.CrashesPerHour*hours)
	lose := r.prof.GPULossesPerHour > 0 && r.rnd.Float64() < 1-math.Exp(-r.prof.GPULossesPerHour*hours)
	r.mu.Unlock()
	if crash {
		r.Crash()
	}
	if lose {
		r.LoseGPU()
	}
	rep, ms, reading, srv, ad := r.simulate(now, dt)
	if srv != nil && ms.State == "running" {
		srv.Set(reading)
		readAPI(ctx, ms, ad, srv.Endpoint())
	}
	return rep
}

// simulate advances the hardware and returns the report with the
// miner's figures as the simulation has them, and, when the miner serves
// an API, the reading to serve and where.
func (r *Rig) simulate(now time.Time, dt time.Duration) (*quarryv1.Report, *quarryv1.MinerStats, minersim.Reading, *minersim.Server, minerapi.Adapter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j := r.job
	mining := !j.Stopped && j.Algo != ""
	crashed := r.crashed
	r.crashed = false
	rep := &quarryv1.Report{Host: &quarryv1.HostStats{
		CpuPercent: 3 + 2*r.rnd.Float64(), MemoryUsedBytes: 1200 << 20, MemoryTotalBytes: 8 << 30,
		Load1: 0.3, Load5: 0.3, Load15: 0.3, UptimeSeconds: uint64(now.Sub(r.bootedAt).Seconds()),
	}}
	var total float64
	ms := &quarryv1.MinerStats{Miner: j.Miner, Version: "sim", Algorithm: j.Algo, Coin: j.Coin, Pool: j.Pool}
	reading := minersim.Reading{Algorithm: j.Algo, Pool: j.Pool}
	alpha := 1 - math.Exp(-dt.Seconds()/r.prof.ThermalTau.Seconds())
	for k := range r.gpus {
		g := &r.gpus[k]
		gs := &quarryv1.GPUStats{Index: uint32(k), Vendor: "nvidia", Name: g.model, BusId: g.busID, Uuid: fmt.Sprintf("GPU-sim-%s-%d", r.Name, k)}
		if now.Before(g.lostUntil) {
			gs.Lost = true
			g.tempC = r.prof.AmbientC
			rep.Gpus = append(rep.Gpus, gs)
			continue
		}
		power, hr, util := g.fig.IdlePowerW, 0.0, 0.0
		if mining && !crashed {
			f := g.fig.Algorithms[j.Algo]
			power = f.PowerW * r.noise()
			hr = float64(f.Hashrate) * r.noise()
			util = 100
		}
		target := r.prof.AmbientC + r.prof.ThermalCPerW*power
		if dt == 0 {
			g.tempC = target
		} else {
			g.tempC += (target - g.tempC) * alpha
		}
		temp := math.Round(g.tempC*10) / 10
		fan := math.Round(min(100, max(30, 30+(temp-40)*2.5)))
		gs.TemperatureC, gs.PowerW, gs.UtilizationPercent = &temp, ptr(math.Round(power*10)/10), &util
		gs.FanPercent = []float64{fan}
		if g.fig.PowerLimitW > 0 {
			gs.PowerLimitW = ptr(g.fig.PowerLimitW)
		}
		if g.fig.MemoryBytes > 0 {
			gs.MemoryTotalBytes = &g.fig.MemoryBytes
		}
		gs.SmClockMhz, gs.MemoryClockMhz = ptr(uint32(1500)), ptr(uint32(7000))
		rep.Gpus = append(rep.Gpus, gs)
		if hr > 0 {
			total += hr
			ms.Gpus = append(ms.Gpus, &quarryv1.MinerGPU{BusId: g.busID, Hashrate: hr})
			reading.GPUs = append(reading.GPUs, minersim.GPU{Name: g.model, BusID: g.busID, Hashrate: hr,
				TemperatureC: temp, PowerW: *gs.PowerW, FanPercent: fan})
		}
	}
	switch {
	case j.Algo == "":
	case j.Stopped:
		ms.State = "stopped"
		rep.Miners = append(rep.Miners, ms)
	case crashed:
		ms.State, ms.Error = "crashed", "exited: signal: segmentation fault"
		rep.Miners = append(rep.Miners, ms)
	default:
		// About one share a minute per 100 MH/s-equivalent card is
		// plenty for a display; what matters is that it grows.
		r.accepted += uint64(max(1, dt.Seconds()/10))
		ms.State, ms.Hashrate, ms.Accepted = "running", total, r.accepted
		ms.UptimeSeconds = uint64(now.Sub(r.started).Seconds())
		reading.Accepted, reading.Uptime = r.accepted, now.Sub(r.started)
		rep.Miners = append(rep.Miners, ms)
	}
	rep.Events, r.events = r.events, nil
	return rep, ms, reading, r.api, r.ad
}

// readAPI replaces the simulation's miner figures with what the miner's
// API says through its adapter, mapping the outcome to a state the way
// the agent does: an API that does not answer is "api-unreachable", never
// a zero hash rate.
func readAPI(ctx context.Context, ms *quarryv1.MinerStats, ad minerapi.Adapter, ep minerapi.Endpoint) {
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	st, err := ad.Stats(ctx, ep)
	ms.Hashrate, ms.Gpus, ms.Accepted, ms.UptimeSeconds, ms.Version = 0, nil, 0, 0, ""
	switch {
	case err == nil:
		ms.State = "running"
	case errors.Is(err, minerapi.ErrNoHashrate):
		ms.State, ms.Error = quarryv1.MinerWarming, "warming up: "+err.Error()
	case errors.Is(err, minerapi.ErrBadReply):
		ms.State, ms.Error = quarryv1.MinerBadReply, err.Error()
		return
	default:
		ms.State, ms.Error = "api-unreachable", err.Error()
		return
	}
	ms.Version, ms.Accepted, ms.Rejected, ms.Stale = st.Version, st.Accepted, st.Rejected, st.Stale
	ms.UptimeSeconds = uint64(max(st.Uptime, 0) / time.Second)
	if st.Pool != "" {
		ms.Pool = st.Pool
	}
	if err == nil {
		ms.Hashrate = st.TotalHashrate
		for _, g := range st.GPUs {
			ms.Gpus = append(ms.Gpus, &quarryv1.MinerGPU{BusId: g.BusID, Hashrate: g.Hashrate, Accepted: g.Accepted, Rejected: g.Rejected})
		}
	}
}

// noise is a reading's multiplicative noise, clamped so a reading is never
// negative.
func (r *Rig) noise() float64 {
	return max(0.5, 1+r.prof.Noise*r.rnd.NormFloat64())
}

func ptr[T any](v T) *T { return &v }

// sheetCache parses each distinct flight sheet once for the whole
// simulated fleet: a fleet-wide switch sends every rig the same document,
// and one process parsing it ten thousand times would measure the
// simulator rather than the controller. Rigs only read the result.
type sheetCache struct {
	mu     sync.Mutex
	parsed map[string]*flightsheet.FlightSheet
}

// maxCachedSheets bounds the cache; a fleet mines a handful of sheets.
const maxCachedSheets = 32

func (c *sheetCache) parse(payload []byte) (*flightsheet.FlightSheet, error) {
	if c == nil {
		return flightsheet.Parse(payload)
	}
	c.mu.Lock()
	fs, ok := c.parsed[string(payload)]
	c.mu.Unlock()
	if ok {
		return fs, nil
	}
	fs, err := flightsheet.Parse(payload)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.parsed == nil || len(c.parsed) >= maxCachedSheets {
		c.parsed = map[string]*flightsheet.FlightSheet{}
	}
	c.parsed[string(payload)] = fs
	return fs, nil
}
