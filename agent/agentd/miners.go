package agentd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quarryfleet/quarry/agent/miner"
	"github.com/quarryfleet/quarry/agent/minerfetch"
	"github.com/quarryfleet/quarry/agent/watchdog"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/minerapi"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// MinerStateFile records the flight sheet the controller last applied, and
// whether the miner was stopped on purpose, so a restarted agent resumes.
const MinerStateFile = "miner-state.json"

// Bounds of what the miner commands accept.
const (
	defaultLogLines    = 100
	maxLogLines        = 5000
	maxBenchmarkPerRun = 30 * time.Minute
	statsTimeout       = 2 * time.Second
	// Apply checks; the API wait stays under quarryctl's wait so that the
	// operator sees the rig's verdict, not a client timeout.
	defaultApplySettle  = 5 * time.Second
	defaultApplyAPIWait = 45 * time.Second
	applyLogLines       = 15
	applyLogLineMax     = 300
)

// MinersConfig configures the miner supervisor and watchdog. Zero values
// take the defaults of packages miner and watchdog.
type MinersConfig struct {
	StopGrace     time.Duration `yaml:"stop_grace" help:"how long a miner has to exit after SIGTERM before SIGKILL (default 10s)"`
	BackoffMin    time.Duration `yaml:"backoff_min" help:"first delay before restarting a miner that died (default 2s)"`
	BackoffMax    time.Duration `yaml:"backoff_max" help:"longest delay before restarting a miner that died (default 2m)"`
	LogMaxBytes   int64         `yaml:"log_max_bytes" help:"size of each miner log file before rotation (default 1 MiB)"`
	RebootCommand []string      `yaml:"reboot_command" help:"command the REBOOT command and the watchdog's restart-storm rule run; empty turns reboots off"`
	// ApplySettle and ApplyAPIWait decide when an applied flight sheet
	// counts as working: the miner must stay up for ApplySettle and its
	// stats API must answer within ApplyAPIWait of the start.
	ApplySettle  time.Duration `yaml:"apply_settle" help:"how long a newly applied miner must stay up before the apply succeeds (default 5s)"`
	ApplyAPIWait time.Duration `yaml:"apply_api_wait" help:"how long an apply waits for the miner's stats API to answer (default 45s)"`
	// Watchdog tunes the rules that restart, move or stop the miner.
	Watchdog WatchdogSettings `yaml:"watchdog"`
	// Custom is the stats mapping and command line for flight sheets whose
	// miner is "custom"; without it such sheets are refused.
	Custom minerapi.CustomMapping `yaml:"custom"`
}

// WatchdogSettings are the watchdog.Config fields an operator sets; zero
// takes the watchdog's default, a negative duration turns its rule off.
type WatchdogSettings struct {
	PollInterval        time.Duration `yaml:"poll_interval"`
	StartupGrace        time.Duration `yaml:"startup_grace"`
	LowHashrateFraction float64       `yaml:"low_hashrate_fraction"`
	LowHashrateFor      time.Duration `yaml:"low_hashrate_for"`
	NoShareFor          time.Duration `yaml:"no_share_for"`
	StatsUnreachableFor time.Duration `yaml:"stats_unreachable_for"`
	MaxRestarts         int           `yaml:"max_restarts"`
	RestartWindow       time.Duration `yaml:"restart_window"`
	CriticalTempC       float64       `yaml:"critical_temp_c"`
	CoolDownC           float64       `yaml:"cool_down_c"`
	OnOverheat          string        `yaml:"on_overheat"`
}

func (c MinersConfig) watchdogConfig() watchdog.Config {
	w := c.Watchdog
	return watchdog.Config{
		PollInterval: w.PollInterval, StartupGrace: w.StartupGrace,
		LowHashrateFraction: w.LowHashrateFraction, LowHashrateFor: w.LowHashrateFor,
		NoShareFor: w.NoShareFor, StatsUnreachableFor: w.StatsUnreachableFor,
		MaxRestarts: w.MaxRestarts, RestartWindow: w.RestartWindow, RebootCommand: c.RebootCommand,
		CriticalTempC: w.CriticalTempC, CoolDownC: w.CoolDownC, OnOverheat: watchdog.OverheatAction(w.OnOverheat),
	}
}

// Validate names the bad miners setting.
func (c MinersConfig) Validate() error {
	var errs []error
	for name, d := range map[string]time.Duration{"stop_grace": c.StopGrace, "backoff_min": c.BackoffMin, "backoff_max": c.BackoffMax,
		"apply_settle": c.ApplySettle, "apply_api_wait": c.ApplyAPIWait} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("miners.%s: must not be negative, got %s", name, d))
		}
	}
	if c.LogMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("miners.log_max_bytes: must not be negative, got %d", c.LogMaxBytes))
	}
	if err := c.watchdogConfig().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("miners.watchdog: %w", err))
	}
	if c.Custom.URL != "" {
		if err := c.Custom.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("miners.custom: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Miners runs the rig's miner for the controller: it applies flight
// sheets through the supervisor, lets the watchdog drive it, reads the
// miner's stats API for every report, forwards supervisor and watchdog
// events, and answers the miner commands.
type Miners struct {
	a       *Agent
	cfg     MinersConfig
	log     *slog.Logger
	reg     *minerapi.Registry
	client  *minerapi.Client
	sup     *miner.Supervisor
	wd      *watchdog.Watchdog
	state   string // path of MinerStateFile
	stopRun context.CancelFunc
	runDone chan struct{}
	fetch   *minerfetch.Installer // nil without a rig certificate

	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	sheet   *flightsheet.FlightSheet // what the miner runs now (a benchmark's sheet during one)
	adapter minerapi.Adapter
	gpus    []watchdog.GPU
	power   *float64 // total GPU power of the latest report, when known
	powerAt time.Time
}

// minerState is MinerStateFile's content.
type minerState struct {
	Sheet   string `json:"sheet"` // flight sheet YAML
	Stopped bool   `json:"stopped"`
}

// StartMiners wires the miner supervisor and watchdog into a, registers
// the miner commands, ends a miner an earlier run left behind and resumes
// the flight sheet last applied. Call before a.Run; Close after it.
//
// power, if given and not nil, lowers a hot card's power limit when the
// watchdog's on_overheat is power_limit.
func StartMiners(ctx context.Context, a *Agent, log *slog.Logger, power ...watchdog.PowerLimiter) (*Miners, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Miners{
		a: a, cfg: a.cfg.Miners, log: log.With("part", "miner"), fetch: newInstaller(a, log),
		reg: minerapi.Default(), client: minerapi.NewClient(minerapi.WithTimeout(statsTimeout)),
		state: filepath.Join(a.cfg.DataDir, MinerStateFile),
	}
	wd, err := watchdog.New(m.cfg.watchdogConfig(), watchdog.Deps{
		Stats: statsSource{m}, GPUs: gpuSource{m}, Miner: supervisorRef{m},
		OnEvent: m.onWatchdogEvent, Logger: m.log, Power: firstPower(power),
	})
	if err != nil {
		return nil, fmt.Errorf("miners.watchdog: %w", err)
	}
	m.wd = wd
	m.sup, err = miner.New(ctx, miner.Config{
		DataDir: a.cfg.DataDir, MinersDir: a.cfg.MinersDir, LogMaxBytes: m.cfg.LogMaxBytes, StopGrace: m.cfg.StopGrace,
		BackoffMin: m.cfg.BackoffMin, BackoffMax: m.cfg.BackoffMax,
		Launcher: launcher{m}, OnEvent: m.onMinerEvent, OnLogLine: wd.ObserveLogLine, Logger: m.log,
	})
	if err != nil {
		return nil, err
	}
	a.Handle(quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, m.applyCommand)
	a.Handle(quarryv1.CommandKind_COMMAND_KIND_RESTART_MINER, m.restartCommand)
	a.Handle(quarryv1.CommandKind_COMMAND_KIND_STOP_MINER, m.stopCommand)
	a.Handle(quarryv1.CommandKind_COMMAND_KIND_BENCHMARK, m.benchmarkCommand)
	a.Handle(quarryv1.CommandKind_COMMAND_KIND_MINER_LOGS, m.logsCommand)
	a.Handle(quarryv1.CommandKind_COMMAND_KIND_REBOOT, m.rebootCommand)
	a.Handle(quarryv1.CommandKind_COMMAND_KIND_PAUSE, m.stopCommand)
	a.Handle(quarryv1.CommandKind_COMMAND_KIND_RESUME, m.resumeCommand)
	a.OnReport(m.fillReport)
	// A clean agent stop ends the miner while the link is still up, so
	// the miner_stopped event goes out in the agent's last report.
	a.OnStop(func(ctx context.Context) {
		if err := m.Close(ctx); err != nil {
			m.log.Error("stop miner", "err", err)
		}
	})

	m.resume(ctx)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.stopRun, m.runDone = cancel, make(chan struct{})
	go func() {
		defer close(m.runDone)
		_ = wd.Run(runCtx)
	}()
	return m, nil
}

// Close stops the watchdog and the miner (SIGTERM to its process group,
// SIGKILL after the grace period).
func (m *Miners) Close(ctx context.Context) error {
	m.closeOnce.Do(func() {
		m.stopRun()
		<-m.runDone
		defer m.closeInstaller()
		m.closeErr = m.sup.Close(ctx)
	})
	return m.closeErr
}

// Supervisor is the miner supervisor, for status and tests.
func (m *Miners) Supervisor() *miner.Supervisor { return m.sup }

// resume restarts the sheet last applied unless it was stopped. A sheet
// that no longer validates (binary replaced) is reported, not run.
func (m *Miners) resume(ctx context.Context) {
	b, err := os.ReadFile(m.state)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var st minerState
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		m.log.Error("miner state unreadable; not resuming", "file", m.state, "err", err)
		return
	}
	sheet, err := m.prepare(ctx, []byte(st.Sheet))
	if err != nil {
		m.log.Error("stored flight sheet refused; not resuming", "err", err)
		m.event("miner_resume_refused", "stored flight sheet refused: "+err.Error(), nil)
		return
	}
	m.setActive(sheet)
	if st.Stopped {
		m.log.Info("miner was stopped on purpose; not resuming", "sheet", sheet.Name)
		return
	}
	if err := m.sup.Start(ctx, sheet); err != nil {
		m.log.Error("resume miner", "sheet", sheet.Name, "err", err)
		return
	}
	m.log.Info("resumed miner", "sheet", sheet.Name)
}

// prepare parses and validates a flight sheet, checks its binary against
// the pinned sha256 and picks a free API port when the sheet names none.
func (m *Miners) prepare(ctx context.Context, payload []byte) (*flightsheet.FlightSheet, error) {
	if len(payload) == 0 {
		return nil, errors.New("empty flight sheet")
	}
	sheet, err := flightsheet.Parse(payload)
	if err != nil {
		return nil, err
	}
	if err := sheet.Validate(m.reg.Names()); err != nil {
		return nil, fmt.Errorf("flight sheet %q: %w", sheet.Name, err)
	}
	if sheet.Miner.FromCatalogue() {
		if err := m.installCatalogue(ctx, sheet); err != nil {
			return nil, fmt.Errorf("flight sheet %q: %w", sheet.Name, err)
		}
	}
	// Security policy: only a binary inside miners_dir (symlinks resolved)
	// that is no shell or interpreter and matches its pinned sha256 runs,
	// and a refusal changes nothing on the rig.
	bin, err := flightsheet.ResolveMinerPath(m.a.cfg.MinersDir, sheet.Miner.Path)
	if err != nil {
		return nil, fmt.Errorf("flight sheet %q: %w", sheet.Name, err)
	}
	got, err := miner.FileSHA256(bin)
	if err != nil {
		return nil, fmt.Errorf("flight sheet %q: miner binary: %w", sheet.Name, err)
	}
	if !strings.EqualFold(got, sheet.Miner.SHA256) {
		return nil, &miner.ChecksumError{Path: sheet.Miner.Path, Want: strings.ToLower(sheet.Miner.SHA256), Got: got}
	}
	if _, err := m.adapterFor(sheet.Miner.Name, sheet.Algorithm); err != nil {
		return nil, fmt.Errorf("flight sheet %q: %w", sheet.Name, err)
	}
	if sheet.Miner.API.Port == 0 {
		port, err := freePort(sheet.Miner.API.Host)
		if err != nil {
			return nil, fmt.Errorf("pick a miner API port: %w", err)
		}
		sheet.Miner.API.Port = port
	}
	return sheet, nil
}

func (m *Miners) adapterFor(name, algorithm string) (minerapi.Adapter, error) {
	// The algorithm picks ASIC firmware's units when it does not name its
	// model.
	opts := minerapi.Options{Client: m.client, Algorithm: algorithm}
	if name == "custom" {
		if m.cfg.Custom.URL == "" {
			return nil, errors.New(`miner "custom" needs the agent's miners.custom mapping, which is not set`)
		}
		c := m.cfg.Custom
		opts.Custom = &c
	}
	return m.reg.New(name, opts)
}

// freePort asks the kernel for a port nobody listens on now.
func freePort(host string) (int, error) {
	if host == "" {
		host = "127.0.0.1"
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (m *Miners) setActive(sheet *flightsheet.FlightSheet) {
	ad, err := m.adapterFor(sheet.Miner.Name, sheet.Algorithm)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sheet, m.adapter = sheet, ad
	if err != nil {
		m.adapter = nil
	}
}

func (m *Miners) active() (*flightsheet.FlightSheet, minerapi.Adapter) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sheet, m.adapter
}

func endpoint(s *flightsheet.FlightSheet) minerapi.Endpoint {
	return minerapi.Endpoint{Host: s.Miner.API.Host, Port: s.Miner.API.Port, Token: s.Miner.API.Token}
}

func (m *Miners) saveState(sheet *flightsheet.FlightSheet, stopped bool) error {
	y, err := catalogueForm(sheet).Marshal()
	if err != nil {
		return err
	}
	b, err := json.Marshal(minerState{Sheet: string(y), Stopped: stopped})
	if err != nil {
		return err
	}
	return writeAtomic(m.state, b)
}

// applyCommand runs COMMAND_KIND_APPLY_FLIGHT_SHEET: the payload is the
// flight sheet YAML. The running miner is replaced only by a sheet that
// validates and whose binary matches its sha256.
func (m *Miners) applyCommand(ctx context.Context, payload []byte) ([]byte, error) {
	sheet, err := m.prepare(ctx, payload)
	if err != nil {
		m.event("flight_sheet_refused", "flight sheet refused: "+err.Error(), nil)
		return nil, fmt.Errorf("refused, nothing changed: %w", err)
	}
	m.setActive(sheet)
	if err := m.saveState(sheet, false); err != nil {
		return nil, fmt.Errorf("flight sheet not recorded for the next start: %w", err)
	}
	if err := m.sup.Start(ctx, sheet); err != nil {
		return nil, fmt.Errorf("start miner: %w", err)
	}
	st, err := m.settle(ctx, sheet)
	if err != nil {
		// The miner's output goes in the command output, which only
		// operators read (like rig logs); the error, which viewers see,
		// says what happened without it.
		return m.lastOutput(), err
	}
	return fmt.Appendf(nil, "mining %s: %s %s on %s, pid %d, up %s, stats API answering on port %d",
		sheet.Name, sheet.Miner.Name, sheet.Algorithm, st.Pool, st.PID, time.Since(st.Since).Round(100*time.Millisecond), sheet.Miner.API.Port), nil
}

// settle waits until a just-started miner has stayed up for the settling
// time and its stats API has answered (any reply, warming included: the
// miner is alive and the agent can read it). A miner that exits, or never
// answers, fails the apply with how it ended and its last log lines; the
// sheet stays applied and the supervisor keeps restarting it with backoff.
func (m *Miners) settle(ctx context.Context, sheet *flightsheet.FlightSheet) (miner.Status, error) {
	settleFor, apiWait := m.cfg.ApplySettle, m.cfg.ApplyAPIWait
	if settleFor <= 0 {
		settleFor = defaultApplySettle
	}
	if apiWait <= 0 {
		apiWait = defaultApplyAPIWait
	}
	first := m.sup.Status()
	if first.State != miner.StateRunning {
		return first, m.applyFailed(sheet, first, "did not start")
	}
	start := first.Since // when this run began
	answered := false
	t := time.NewTicker(min(250*time.Millisecond, settleFor/4+time.Millisecond))
	defer t.Stop()
	for {
		st := m.sup.Status()
		if st.State != miner.StateRunning || st.PID != first.PID {
			how := st.LastExit // how the run that began at start ended
			if how == "" {
				how = "ended"
			}
			return st, m.applyFailed(sheet, st, fmt.Sprintf("%s within %s of its start", how, time.Since(start).Round(time.Millisecond)))
		}
		if !answered {
			answered = m.apiAnswers(ctx, sheet)
		}
		up := time.Since(start)
		switch {
		case answered && up >= settleFor:
			return st, nil
		case !answered && up >= apiWait:
			return st, m.applyFailed(sheet, st, fmt.Sprintf("is running (pid %d) but its stats API at %s did not answer within %s",
				st.PID, net.JoinHostPort(endpoint(sheet).Host, strconv.Itoa(sheet.Miner.API.Port)), apiWait))
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("miner started (pid %d) but the apply was cut short before it settled: %w", st.PID, ctx.Err())
		case <-t.C:
		}
	}
}

// apiAnswers reports whether the miner's stats API gave any reply.
func (m *Miners) apiAnswers(ctx context.Context, sheet *flightsheet.FlightSheet) bool {
	ad, err := m.adapterFor(sheet.Miner.Name, sheet.Algorithm)
	if err != nil {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	_, err = ad.Stats(cctx, endpoint(sheet))
	return err == nil || !errors.Is(err, minerapi.ErrUnreachable)
}

// applyFailed is the error of an apply whose miner did not settle: what
// happened, with the exit code or signal.
func (m *Miners) applyFailed(sheet *flightsheet.FlightSheet, st miner.Status, what string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "miner %s for flight sheet %q %s", sheet.Miner.Name, sheet.Name, what)
	if st.LastError != "" {
		fmt.Fprintf(&b, " (%s)", st.LastError)
	}
	b.WriteString("; the sheet stays applied and the agent keeps restarting the miner with backoff; its last output is in the command's output (rig logs)")
	return errors.New(b.String())
}

// lastOutput is the miner's last log lines, bounded, for a failed apply.
func (m *Miners) lastOutput() []byte {
	lines, _ := m.sup.Tail(applyLogLines)
	if len(lines) == 0 {
		return []byte("(the miner wrote no output)")
	}
	var b strings.Builder
	for _, l := range lines {
		if len(l) > applyLogLineMax {
			l = l[:applyLogLineMax] + "…"
		}
		b.WriteString(l + "\n")
	}
	return []byte(b.String())
}

func (m *Miners) restartCommand(ctx context.Context, _ []byte) ([]byte, error) {
	sheet, _ := m.active()
	if sheet == nil {
		return nil, errors.New("no flight sheet applied")
	}
	if err := m.saveState(sheet, false); err != nil {
		return nil, err
	}
	if err := m.sup.Restart(ctx, "requested by the controller"); err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "miner restarted, pid %d", m.sup.Status().PID), nil
}

func (m *Miners) stopCommand(ctx context.Context, _ []byte) ([]byte, error) {
	if sheet, _ := m.active(); sheet != nil {
		if err := m.saveState(sheet, true); err != nil {
			return nil, err
		}
	}
	if err := m.sup.Stop(ctx); err != nil {
		return nil, err
	}
	return []byte("miner stopped"), nil
}

// logsCommand runs COMMAND_KIND_MINER_LOGS: the payload is the number of
// lines wanted (decimal text; empty means 100); the output is those lines.
func (m *Miners) logsCommand(_ context.Context, payload []byte) ([]byte, error) {
	n := defaultLogLines
	if s := strings.TrimSpace(string(payload)); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("line count %q: want a positive whole number", s)
		}
		n = min(v, maxLogLines)
	}
	lines, err := m.sup.Tail(n)
	if err != nil {
		return nil, err
	}
	return []byte(strings.Join(lines, "\n")), nil
}

func (m *Miners) rebootCommand(ctx context.Context, _ []byte) ([]byte, error) {
	if len(m.cfg.RebootCommand) == 0 {
		return nil, errors.New("reboot is not enabled on this rig (set miners.reboot_command)")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, m.cfg.RebootCommand[0], m.cfg.RebootCommand[1:]...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("reboot command: %w", err)
	}
	return out, nil
}

// onMinerEvent tells the watchdog when runs begin and end and queues the
// event for the next report. It runs on the supervisor's goroutine.
func (m *Miners) onMinerEvent(e miner.Event) {
	switch e.Kind {
	case miner.EventStarted:
		expected := 0.0
		if s, _ := m.active(); s != nil {
			expected = float64(s.ExpectedHashrate)
		}
		m.wd.MinerStarted(expected)
	case miner.EventStopped:
		m.wd.MinerStopped()
	}
	m.queue(&quarryv1.Event{TimeUnixNano: e.Time.UnixNano(), Kind: string(e.Kind), Message: e.Message, Fields: e.Fields})
}

// onWatchdogEvent forwards a watchdog action; the watchdog has logged it.
func (m *Miners) onWatchdogEvent(e watchdog.Event) {
	m.queue(&quarryv1.Event{TimeUnixNano: e.Time.UnixNano(), Kind: e.Kind, Message: e.Message, Fields: e.Fields})
}

func (m *Miners) event(kind, msg string, fields map[string]string) {
	m.queue(&quarryv1.Event{TimeUnixNano: time.Now().UnixNano(), Kind: kind, Message: msg, Fields: fields})
}

// queue keeps an event durably for the next report (see Agent.Event).
func (m *Miners) queue(e *quarryv1.Event) { m.a.Event(e) }

// fillReport adds the miner's stats to a report and keeps its GPU readings
// for the watchdog and benchmarks. (Events join the report in the buffer.)
func (m *Miners) fillReport(ctx context.Context, r *quarryv1.Report) {
	m.observeGPUs(r.Gpus)
	if ms := m.minerStats(ctx); ms != nil {
		r.Miners = append(r.Miners, ms)
	}
}

func (m *Miners) observeGPUs(gpus []*quarryv1.GPUStats) {
	out := make([]watchdog.GPU, 0, len(gpus))
	for _, g := range gpus {
		out = append(out, watchdog.GPU{BusID: g.BusId, TemperatureC: g.GetTemperatureC(), Lost: g.Lost})
	}
	// The same sum the controller meters and learns from.
	power, havePower := quarryv1.MeasuredPowerW(gpus, nil)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gpus = out
	m.power = nil
	if havePower {
		m.power, m.powerAt = &power, time.Now()
	}
}

// minerStats reads the miner's stats API. A miner whose API does not
// answer is reported as "api-unreachable" with the error, never as a zero
// hashrate.
func (m *Miners) minerStats(ctx context.Context) *quarryv1.MinerStats {
	sheet, ad := m.active()
	if sheet == nil {
		return nil
	}
	status := m.sup.Status()
	ms := &quarryv1.MinerStats{Miner: sheet.Miner.Name, Algorithm: sheet.Algorithm, Coin: sheet.Coin, Pool: status.Pool}
	switch status.State {
	case miner.StateIdle:
		ms.State = "stopped"
		return ms
	case miner.StateBackoff:
		ms.State, ms.Error = "crashed", status.LastExit
		if status.LastError != "" {
			ms.Error = status.LastError
		}
		return ms
	case miner.StateFailed:
		ms.State, ms.Error = "failed", status.LastError
		return ms
	}
	if ad == nil {
		ms.State, ms.Error = "api-unreachable", "no stats adapter for miner "+sheet.Miner.Name
		return ms
	}
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	st, err := ad.Stats(ctx, endpoint(sheet))
	switch {
	case err == nil:
		ms.State = "running"
	case errors.Is(err, minerapi.ErrNoHashrate):
		// The miner answers but has no reading yet: warming up (a DAG
		// build, xmrig's first 10 s window), not unreachable.
		ms.State, ms.Error = quarryv1.MinerWarming, "warming up: "+err.Error()
	case errors.Is(err, minerapi.ErrBadReply):
		// It answered, so it is not unreachable; what it said is unread.
		ms.State, ms.Error = quarryv1.MinerBadReply, err.Error()
		return ms
	default:
		ms.State, ms.Error = "api-unreachable", err.Error()
		return ms
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
	return ms
}

// statsSource reads the active miner's stats API for the watchdog.
type statsSource struct{ m *Miners }

func (s statsSource) Stats(ctx context.Context) (minerapi.Stats, error) {
	sheet, ad := s.m.active()
	if sheet == nil || ad == nil {
		return minerapi.Stats{}, fmt.Errorf("%w: no miner configured", minerapi.ErrUnreachable)
	}
	return ad.Stats(ctx, endpoint(sheet))
}

// gpuSource hands the watchdog the GPUs of the latest report.
type gpuSource struct{ m *Miners }

func (g gpuSource) GPUs(context.Context) ([]watchdog.GPU, error) {
	g.m.mu.Lock()
	defer g.m.mu.Unlock()
	return append([]watchdog.GPU(nil), g.m.gpus...), nil
}

// supervisorRef lets the watchdog be built before the supervisor it drives.
type supervisorRef struct{ m *Miners }

func (r supervisorRef) Restart(ctx context.Context, reason string) error {
	return r.m.sup.Restart(ctx, reason)
}
func (r supervisorRef) NextPool(ctx context.Context, reason string) error {
	return r.m.sup.NextPool(ctx, reason)
}
func (r supervisorRef) Stop(ctx context.Context) error { return r.m.sup.Stop(ctx) }

// launcher builds each sheet's command line with the adapter its miner
// names.
type launcher struct{ m *Miners }

func (l launcher) Launch(fs *flightsheet.FlightSheet) (miner.Launch, error) {
	ad, err := l.m.adapterFor(fs.Miner.Name, fs.Algorithm)
	if err != nil {
		return miner.Launch{}, err
	}
	return miner.ForAdapter(ad).Launch(fs)
}

func firstPower(p []watchdog.PowerLimiter) watchdog.PowerLimiter {
	if len(p) > 0 {
		return p[0]
	}
	return nil
}
