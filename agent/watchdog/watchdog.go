package watchdog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quarryfleet/quarry/pkg/minerapi"
)

// Clock tells the time; tests pass a fake one to move minutes in a line.
type Clock interface{ Now() time.Time }

// StatsSource reads the miner's stats API.
type StatsSource interface {
	Stats(ctx context.Context) (minerapi.Stats, error)
}

// GPUSource reads GPU telemetry.
type GPUSource interface {
	GPUs(ctx context.Context) ([]GPU, error)
}

// Miner is the part of the miner supervisor the watchdog drives. Restart on
// a stopped miner starts it again.
type Miner interface {
	Restart(ctx context.Context, reason string) error
	NextPool(ctx context.Context, reason string) error
	Stop(ctx context.Context) error
}

// PowerLimiter lowers a GPU's power limit by one step of its own choosing.
type PowerLimiter interface {
	LowerPowerLimit(ctx context.Context, busID string) error
}

// GPU is one device in a telemetry snapshot: only what the rules need.
type GPU struct {
	BusID        string  // "0000:01:00.0"
	TemperatureC float64 // core temperature
	Lost         bool    // the driver reports the device gone ("GPU has fallen off the bus")
}

// ActionKind names what the watchdog does.
type ActionKind string

// Action kinds. ActionReport has no effect beyond its event.
const (
	ActionRestartMiner    ActionKind = "restart_miner"
	ActionNextPool        ActionKind = "next_pool"
	ActionStopMiner       ActionKind = "stop_miner"
	ActionLowerPowerLimit ActionKind = "lower_power_limit"
	ActionReboot          ActionKind = "reboot"
	ActionReport          ActionKind = "report"
)

// Action is one decision. Topic says what a report is about.
type Action struct {
	Kind   ActionKind
	Reason string
	BusID  string // for GPU actions
	Topic  string // for reports: "gpu_lost", "stats_unreachable", ...
}

// Event is what the agent forwards to the controller: every action taken
// and every state change seen.
type Event struct {
	Time    time.Time
	Kind    string // "watchdog_" + action kind or report topic
	Message string
	Fields  map[string]string
}

// Deps are the watchdog's collaborators. Stats, GPUs and Power may be nil
// (that rule family is then idle); Miner is required.
type Deps struct {
	Stats   StatsSource
	GPUs    GPUSource
	Miner   Miner
	Power   PowerLimiter
	Clock   Clock        // default: the real clock
	OnEvent func(Event)  // must not block
	Logger  *slog.Logger // default: slog.Default()
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Watchdog applies the rules. Feed it MinerStarted/MinerStopped and log
// lines; Check (or Run) does the rest.
type Watchdog struct {
	cfg   Config
	deps  Deps
	login *regexp.Regexp // nil: login rule off

	mu sync.Mutex
	// current miner run
	running   bool
	runStart  time.Time
	expected  float64
	lowSince  time.Time
	haveShare bool
	accepted  uint64
	shareAt   time.Time
	// stats API
	unreachable      bool
	unreachableSince time.Time
	badReply         bool
	// machineHot: the miner's own hottest sensor (ASIC boards and chips,
	// which NVML does not see) is at or above the critical temperature.
	machineHot bool
	// pool login
	loginLine   string
	loginSwitch time.Time
	// restart storm
	started  bool
	restarts []time.Time
	rebootAt time.Time
	// GPUs
	hot            map[string]time.Time // bus id -> last power-limit step (or first seen hot)
	stoppedForHeat bool
	lost           map[string]bool
	known          map[string]bool // every bus id ever seen
	gpuErr         bool
}

// New checks cfg and builds a watchdog.
func New(cfg Config, deps Deps) (*Watchdog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Miner == nil {
		return nil, errors.New("watchdog: Deps.Miner is required")
	}
	cfg = cfg.withDefaults()
	if cfg.OnOverheat == OverheatPowerLimit && deps.Power == nil {
		return nil, errors.New("watchdog: OnOverheat power_limit needs Deps.Power")
	}
	if deps.Clock == nil {
		deps.Clock = realClock{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Watchdog{
		cfg:   cfg,
		deps:  deps,
		login: compilePatterns(cfg.LoginFailurePatterns),
		hot:   map[string]time.Time{},
		lost:  map[string]bool{},
		known: map[string]bool{},
	}, nil
}

// MinerStarted tells the watchdog a miner run began (the supervisor's
// started event) with the flight sheet's expected hashrate in H/s (0 for
// unknown). Every start after the first counts toward the restart storm.
func (w *Watchdog) MinerStarted(expectedHashrate float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.deps.Clock.Now()
	if w.started {
		w.restarts = append(w.restarts, now)
	}
	w.started = true
	w.expected = expectedHashrate
	w.resetRun(now)
}

// MinerStopped tells the watchdog the miner was stopped on purpose; its
// stats are not judged until it starts again.
func (w *Watchdog) MinerStopped() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running = false
}

func (w *Watchdog) resetRun(now time.Time) {
	w.running = true
	w.runStart = now
	w.lowSince = time.Time{}
	w.haveShare = false
	w.shareAt = now
	w.unreachable = false
	w.loginLine = ""
}

// ObserveLogLine looks for a refused pool login in one miner log line. It
// only records it, so it is cheap enough for the supervisor's log hook.
func (w *Watchdog) ObserveLogLine(line string) {
	if w.login == nil || !w.login.MatchString(line) {
		return
	}
	w.mu.Lock()
	w.loginLine = line
	w.mu.Unlock()
}

// Run calls Check every PollInterval until ctx ends.
func (w *Watchdog) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.PollInterval)
	defer t.Stop()
	for {
		w.Check(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Check takes one reading of stats and GPUs, decides, carries out the
// actions and returns them.
func (w *Watchdog) Check(ctx context.Context) []Action {
	var (
		stats    minerapi.Stats
		statsErr error
		gpus     []GPU
		gpuErr   error
	)
	if w.deps.Stats != nil {
		stats, statsErr = w.deps.Stats.Stats(ctx)
	}
	if w.deps.GPUs != nil {
		gpus, gpuErr = w.deps.GPUs.GPUs(ctx)
	}
	w.mu.Lock()
	now := w.deps.Clock.Now()
	var acts []Action
	if w.deps.GPUs != nil {
		acts = append(acts, w.evalGPUs(now, gpus, gpuErr)...)
	}
	if w.deps.Stats != nil && w.running {
		acts = append(acts, w.evalStats(now, stats, statsErr)...)
	}
	acts = append(acts, w.evalLogin(now)...)
	acts = append(acts, w.evalRestarts(now)...)
	acts = reconcile(acts)
	for _, a := range acts {
		switch a.Kind {
		case ActionRestartMiner, ActionNextPool:
			// The miner's start will call MinerStarted too; resetting here
			// keeps one bad reading from firing again if it does not.
			w.resetRun(now)
		case ActionStopMiner:
			w.running = false
		}
	}
	w.mu.Unlock()

	for _, a := range acts {
		w.execute(ctx, now, a)
	}
	return acts
}

// reconcile drops actions made moot by a stronger one in the same check:
// stopping beats moving pools, which beats a plain restart.
func reconcile(acts []Action) []Action {
	has := func(k ActionKind) bool {
		return slices.ContainsFunc(acts, func(a Action) bool { return a.Kind == k })
	}
	stop, next := has(ActionStopMiner), has(ActionNextPool)
	var out []Action
	seen := map[ActionKind]bool{}
	for _, a := range acts {
		switch a.Kind {
		case ActionRestartMiner:
			if stop || next || seen[a.Kind] {
				continue
			}
		case ActionNextPool:
			if stop || seen[a.Kind] {
				continue
			}
		}
		seen[a.Kind] = true
		out = append(out, a)
	}
	return out
}

// evalMachineHeat protects machines whose temperatures only the miner
// reports (ASIC chips and boards): its hottest real sensor at or above the
// critical temperature stops the miner when the watchdog stops on
// overheat. Nothing here can lower such a machine's power, and a stopped
// miner reports no temperature, so it stays stopped until restarted.
func (w *Watchdog) evalMachineHeat(st minerapi.Stats) []Action {
	if len(w.known) > 0 {
		return nil // NVML or sysfs sees the cards; the GPU rule covers them
	}
	if st.HottestC == nil || *st.HottestC < w.cfg.CriticalTempC {
		if st.HottestC != nil && *st.HottestC < w.cfg.CriticalTempC-w.cfg.CoolDownC {
			w.machineHot = false
		}
		return nil
	}
	if w.machineHot {
		return nil
	}
	w.machineHot = true
	reason := fmt.Sprintf("miner reports its hottest sensor at %.0f °C, critical is %.0f °C", *st.HottestC, w.cfg.CriticalTempC)
	if w.cfg.OnOverheat == OverheatStop && w.running {
		return []Action{{Kind: ActionStopMiner, Reason: reason + "; restart it once the machine has cooled"}}
	}
	return []Action{{Kind: ActionReport, Topic: "miner_overheat", Reason: reason}}
}

func (w *Watchdog) evalStats(now time.Time, st minerapi.Stats, err error) []Action {
	var acts []Action
	inGrace := now.Sub(w.runStart) < w.cfg.StartupGrace
	// A reply without a reading is a miner warming up (building its DAG,
	// filling xmrig's 10 s window): its API answers, so it is not
	// unreachable. Past the startup grace it still counts as no hashrate
	// for the low-hashrate rule, so a miner stuck warming is restarted.
	warming := err != nil && errors.Is(err, minerapi.ErrNoHashrate)
	if err != nil && !warming && errors.Is(err, minerapi.ErrBadReply) {
		// The miner answered, so restarting it for an unreachable API
		// would be wrong; its reading is unknown, not low.
		w.lowSince = time.Time{}
		if !w.badReply {
			w.badReply = true
			acts = append(acts, Action{Kind: ActionReport, Topic: "stats_bad_reply", Reason: "miner stats API answered with a reply that cannot be read: " + err.Error()})
		}
		return acts
	}
	w.badReply = false
	if err != nil && !warming {
		if !w.unreachable {
			w.unreachable, w.unreachableSince = true, now
			// Not zero hashrate: we just cannot see it.
			w.lowSince = time.Time{}
			acts = append(acts, Action{Kind: ActionReport, Topic: "stats_unreachable", Reason: "miner stats API not answering: " + err.Error()})
		}
		if d := now.Sub(w.unreachableSince); w.cfg.StatsUnreachableFor > 0 && !inGrace && d >= w.cfg.StatsUnreachableFor {
			acts = append(acts, Action{Kind: ActionRestartMiner, Reason: fmt.Sprintf("stats API unreachable for %v", d.Round(time.Second))})
		}
		return acts
	}
	if w.unreachable {
		w.unreachable = false
		acts = append(acts, Action{Kind: ActionReport, Topic: "stats_reachable", Reason: "miner stats API answering again"})
	}
	acts = append(acts, w.evalMachineHeat(st)...)

	h := st.TotalHashrate
	if h == 0 {
		for _, g := range st.GPUs {
			h += g.Hashrate
		}
	}
	if warming {
		h = 0 // whatever partial figure came with it is no reading
	}
	if floor := w.cfg.LowHashrateFraction * w.expected; w.expected > 0 && w.cfg.LowHashrateFor > 0 && !inGrace {
		if h < floor {
			if w.lowSince.IsZero() {
				w.lowSince = now
			}
			if d := now.Sub(w.lowSince); d >= w.cfg.LowHashrateFor {
				acts = append(acts, Action{Kind: ActionRestartMiner, Reason: fmt.Sprintf(
					"hashrate %.4g H/s below %.0f%% of expected %.4g H/s for %v", h, w.cfg.LowHashrateFraction*100, w.expected, d.Round(time.Second))})
				if warming {
					acts[len(acts)-1].Reason = fmt.Sprintf("no hashrate reading (still warming up) %v after the startup grace", d.Round(time.Second))
				}
			}
		} else {
			w.lowSince = time.Time{}
		}
	}

	switch {
	case !w.haveShare || st.Accepted < w.accepted:
		// First reading of this run, or the miner's counters restarted.
		w.haveShare, w.accepted = true, st.Accepted
	case st.Accepted > w.accepted:
		w.accepted, w.shareAt = st.Accepted, now
	}
	if d := now.Sub(w.shareAt); w.cfg.NoShareFor > 0 && d >= w.cfg.NoShareFor {
		acts = append(acts, Action{Kind: ActionNextPool, Reason: fmt.Sprintf("no accepted share for %v", d.Round(time.Second))})
	}
	return acts
}

func (w *Watchdog) evalLogin(now time.Time) []Action {
	if w.loginLine == "" || !w.running {
		return nil
	}
	if !w.loginSwitch.IsZero() && now.Sub(w.loginSwitch) < w.cfg.LoginFailureCooldown {
		return nil
	}
	line := w.loginLine
	w.loginLine = ""
	w.loginSwitch = now
	return []Action{{Kind: ActionNextPool, Reason: "pool refused the login: " + strings.TrimSpace(line)}}
}

func (w *Watchdog) evalRestarts(now time.Time) []Action {
	cutoff := now.Add(-w.cfg.RestartWindow)
	w.restarts = slices.DeleteFunc(w.restarts, func(t time.Time) bool { return t.Before(cutoff) })
	if len(w.restarts) < w.cfg.MaxRestarts {
		return nil
	}
	n := len(w.restarts)
	w.restarts = nil
	reason := fmt.Sprintf("miner restarted %d times within %v", n, w.cfg.RestartWindow)
	if len(w.cfg.RebootCommand) == 0 {
		return []Action{{Kind: ActionReport, Topic: "restart_storm", Reason: reason + "; no reboot command configured"}}
	}
	if !w.rebootAt.IsZero() && now.Sub(w.rebootAt) < w.cfg.RestartWindow {
		return []Action{{Kind: ActionReport, Topic: "restart_storm", Reason: reason + "; already rebooted within the window"}}
	}
	w.rebootAt = now
	return []Action{{Kind: ActionReboot, Reason: reason}}
}

func (w *Watchdog) evalGPUs(now time.Time, gpus []GPU, err error) []Action {
	var acts []Action
	if err != nil {
		if !w.gpuErr {
			w.gpuErr = true
			acts = append(acts, Action{Kind: ActionReport, Topic: "telemetry_unavailable", Reason: "GPU telemetry failed: " + err.Error()})
		}
		return acts
	}
	w.gpuErr = false
	seen := map[string]bool{}
	allCool := true
	for _, g := range gpus {
		seen[g.BusID] = true
		if g.Lost {
			if !w.lost[g.BusID] {
				w.lost[g.BusID] = true
				acts = append(acts, Action{Kind: ActionReport, Topic: "gpu_lost", BusID: g.BusID, Reason: "GPU " + g.BusID + " is lost"})
			}
			continue
		}
		if w.lost[g.BusID] {
			delete(w.lost, g.BusID)
			acts = append(acts, Action{Kind: ActionReport, Topic: "gpu_recovered", BusID: g.BusID, Reason: "GPU " + g.BusID + " is back"})
		}
		if g.TemperatureC >= w.cfg.CriticalTempC-w.cfg.CoolDownC {
			allCool = false
		}
		if g.TemperatureC < w.cfg.CriticalTempC {
			if g.TemperatureC < w.cfg.CriticalTempC-w.cfg.CoolDownC {
				delete(w.hot, g.BusID)
			}
			continue
		}
		reason := fmt.Sprintf("GPU %s at %.0f °C, critical is %.0f °C", g.BusID, g.TemperatureC, w.cfg.CriticalTempC)
		last, wasHot := w.hot[g.BusID]
		switch w.cfg.OnOverheat {
		case OverheatStop:
			w.hot[g.BusID] = now
			if w.running {
				w.stoppedForHeat = true
				acts = append(acts, Action{Kind: ActionStopMiner, BusID: g.BusID, Reason: reason})
			}
		case OverheatPowerLimit:
			if !wasHot || now.Sub(last) >= w.cfg.PowerLimitEvery {
				w.hot[g.BusID] = now
				acts = append(acts, Action{Kind: ActionLowerPowerLimit, BusID: g.BusID, Reason: reason})
			}
		}
	}
	// A device that drops out of the snapshot altogether is lost as well:
	// drivers often stop listing a GPU that fell off the bus.
	for _, id := range slices.Sorted(maps.Keys(w.known)) {
		if !seen[id] && !w.lost[id] {
			w.lost[id] = true
			acts = append(acts, Action{Kind: ActionReport, Topic: "gpu_lost", BusID: id, Reason: "GPU " + id + " is missing from telemetry"})
		}
	}
	for id := range seen {
		w.known[id] = true
	}
	if w.stoppedForHeat && allCool && len(w.hot) == 0 {
		w.stoppedForHeat = false
		acts = append(acts, Action{Kind: ActionRestartMiner, Reason: fmt.Sprintf("all GPUs below %.0f °C again", w.cfg.CriticalTempC-w.cfg.CoolDownC)})
	}
	return acts
}

func (w *Watchdog) execute(ctx context.Context, now time.Time, a Action) {
	fields := map[string]string{"reason": a.Reason}
	if a.BusID != "" {
		fields["bus_id"] = a.BusID
	}
	kind := "watchdog_" + string(a.Kind)
	var err error
	switch a.Kind {
	case ActionRestartMiner:
		err = w.deps.Miner.Restart(ctx, a.Reason)
	case ActionNextPool:
		err = w.deps.Miner.NextPool(ctx, a.Reason)
	case ActionStopMiner:
		err = w.deps.Miner.Stop(ctx)
	case ActionLowerPowerLimit:
		err = w.deps.Power.LowerPowerLimit(ctx, a.BusID)
	case ActionReboot:
		var out string
		out, err = w.reboot(ctx)
		if out != "" {
			fields["output"] = out
		}
	case ActionReport:
		kind = "watchdog_" + a.Topic
	}
	if err != nil {
		fields["error"] = err.Error()
		w.deps.Logger.Error(a.Reason, "event", kind, "err", err)
	} else {
		w.deps.Logger.Warn(a.Reason, "event", kind)
	}
	if w.deps.OnEvent != nil {
		w.deps.OnEvent(Event{Time: now, Kind: kind, Message: a.Reason, Fields: fields})
	}
}

// reboot runs the configured command; its output (bounded) goes in the
// event so a failed reboot can be diagnosed remotely.
func (w *Watchdog) reboot(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.RebootTimeout)
	defer cancel()
	argv := w.cfg.RebootCommand
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if len(s) > 2048 {
		s = s[len(s)-2048:]
	}
	if err != nil {
		return s, fmt.Errorf("reboot command %s: %w", strconv.Quote(strings.Join(argv, " ")), err)
	}
	return s, nil
}
