// Package miner runs one mining program for the agent: it checks the binary
// against the flight sheet's sha256, starts it in its own process group,
// keeps its output in bounded rotating logs, restarts it with capped
// exponential backoff when it dies, moves to the next pool on request, and
// makes sure no miner outlives the agent unnoticed (a pidfile lets the next
// agent run end a leftover process group).
package miner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
)

// Launch is how to start a miner for a flight sheet: its arguments (without
// the program path) and, for miners configured by file, a file to write into
// the miner's working directory first.
type Launch struct {
	Args       []string
	ConfigName string // plain file name, e.g. "xmrig.json"; empty for none
	Config     []byte
}

// Launcher turns a flight sheet into a Launch. Miner adapters implement it
// (see ForAdapter).
type Launcher interface {
	Launch(fs *flightsheet.FlightSheet) (Launch, error)
}

// ArgsFunc is a Launcher that only builds arguments.
type ArgsFunc func(fs *flightsheet.FlightSheet) ([]string, error)

// Launch calls f.
func (f ArgsFunc) Launch(fs *flightsheet.FlightSheet) (Launch, error) {
	args, err := f(fs)
	return Launch{Args: args}, err
}

// EventKind names what happened to the miner.
type EventKind string

// Event kinds. They are stable strings: the controller stores and shows them.
const (
	EventStarted          EventKind = "miner_started"
	EventExited           EventKind = "miner_exited" // died on its own
	EventBackoff          EventKind = "miner_backoff"
	EventStopped          EventKind = "miner_stopped"
	EventKilled           EventKind = "miner_killed" // ignored SIGTERM, got SIGKILL
	EventRestarting       EventKind = "miner_restarting"
	EventPoolSwitched     EventKind = "miner_pool_switched"
	EventStartFailed      EventKind = "miner_start_failed"
	EventChecksumMismatch EventKind = "miner_checksum_mismatch"
	EventBinaryRefused    EventKind = "miner_binary_refused" // outside miners_dir, or a shell
	EventLeftoverKilled   EventKind = "miner_leftover_killed"
)

// Event is one thing the supervisor did or saw, for the agent to forward.
type Event struct {
	Time    time.Time
	Kind    EventKind
	Message string
	Fields  map[string]string
}

// ChecksumError is returned when the miner binary is not the one the flight
// sheet pins. The supervisor will not run it.
type ChecksumError struct {
	Path, Want, Got string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("miner binary %s has sha256 %s, flight sheet pins %s: refusing to run it", e.Path, e.Got, e.Want)
}

// Config configures a Supervisor. Zero durations and sizes take the
// defaults given on each field.
type Config struct {
	// DataDir is the agent's data directory; the pidfile lives there.
	DataDir string
	// MinersDir holds the only binaries the supervisor runs (see
	// flightsheet.ResolveMinerPath). Default flightsheet.DefaultMinersDir.
	MinersDir string
	// LogDir holds miner.log and its rotations. Default DataDir/logs.
	LogDir string
	// LogMaxBytes bounds each log file. Default 1 MiB.
	LogMaxBytes int64
	// LogFiles is how many log files are kept, current included. Default 3.
	LogFiles int
	// StopGrace is how long the miner has to exit after SIGTERM before the
	// group gets SIGKILL. Default 10s: miners reset GPU clocks on exit.
	StopGrace time.Duration
	// BackoffMin and BackoffMax bound the delay before restarting a miner
	// that died: it doubles from min on each consecutive failure up to
	// max. Defaults 2s and 2m.
	BackoffMin, BackoffMax time.Duration
	// StableAfter is how long a miner must run for its next crash to count
	// as the first again (backoff reset). Default 5m.
	StableAfter time.Duration
	// Launcher builds the command line. Required.
	Launcher Launcher
	// WorkDir is the miner's working directory, where its config file is
	// written. Default DataDir/miner.
	WorkDir string
	// Env is added to the agent's environment for the miner.
	Env []string
	// OnEvent receives every event, synchronously; it must not block.
	OnEvent func(Event)
	// OnLogLine receives each line the miner prints; it must not block.
	OnLogLine func(string)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.DataDir == "" {
		return errors.New("miner supervisor: DataDir is required")
	}
	if c.Launcher == nil {
		return errors.New("miner supervisor: Launcher is required")
	}
	if c.LogDir == "" {
		c.LogDir = filepath.Join(c.DataDir, "logs")
	}
	if c.MinersDir == "" {
		c.MinersDir = flightsheet.DefaultMinersDir
	}
	if c.WorkDir == "" {
		c.WorkDir = filepath.Join(c.DataDir, "miner")
	}
	if c.LogMaxBytes == 0 {
		c.LogMaxBytes = 1 << 20
	}
	if c.LogFiles == 0 {
		c.LogFiles = 3
	}
	if c.StopGrace == 0 {
		c.StopGrace = 10 * time.Second
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = 2 * time.Second
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 2 * time.Minute
	}
	if c.StableAfter == 0 {
		c.StableAfter = 5 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.LogMaxBytes < 0:
		return fmt.Errorf("miner supervisor: LogMaxBytes %d is negative", c.LogMaxBytes)
	case c.LogFiles < 0:
		return fmt.Errorf("miner supervisor: LogFiles %d is negative", c.LogFiles)
	case c.StopGrace < 0, c.BackoffMin < 0, c.BackoffMax < 0, c.StableAfter < 0:
		return errors.New("miner supervisor: durations must not be negative")
	case c.BackoffMax < c.BackoffMin:
		return fmt.Errorf("miner supervisor: BackoffMax %v is below BackoffMin %v", c.BackoffMax, c.BackoffMin)
	}
	return nil
}

// State is where the supervised miner is in its life.
type State string

// States.
const (
	StateIdle    State = "idle"    // never started, or stopped
	StateRunning State = "running" // process is up
	StateBackoff State = "backoff" // died; waiting to restart
	StateFailed  State = "failed"  // cannot start (checksum); waits for a new sheet or restart
)

// Status is a snapshot for reports and quarryctl.
type Status struct {
	State     State
	Sheet     string // flight sheet name
	PID       int
	Since     time.Time // when the current state began
	Pool      string    // URL of the pool in use
	PoolIndex int       // index into the sheet's pool list
	Restarts  int       // restarts since the sheet was applied
	LastExit  string    // how the previous run ended
	LastError string
}

// Supervisor runs one miner. Its methods are safe for concurrent use.
type Supervisor struct {
	cfg     Config
	pidPath string
	log     *RotatingLog

	ctl sync.Mutex // serialises Start/Stop/Restart/NextPool

	mu       sync.Mutex
	sheet    *flightsheet.FlightSheet // as applied, pools in original order
	status   Status
	reqs     chan request
	loopDone chan struct{} // nil when no loop runs
}

type reqKind int

const (
	reqStop reqKind = iota
	reqRestart
	reqNextPool
	reqApply
)

type request struct {
	kind   reqKind
	sheet  *flightsheet.FlightSheet
	reason string
	reply  chan error // buffered 1
}

// New prepares a supervisor and ends any miner left running by an earlier
// agent process that used the same DataDir.
func New(ctx context.Context, cfg Config) (*Supervisor, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.DataDir, cfg.LogDir, cfg.WorkDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("miner supervisor: %w", err)
		}
	}
	s := &Supervisor{
		cfg:     cfg,
		pidPath: filepath.Join(cfg.DataDir, "miner.pid"),
		status:  Status{State: StateIdle, Since: time.Now()},
	}
	if err := s.cleanupLeftover(ctx); err != nil {
		return nil, err
	}
	l, err := OpenRotatingLog(LogPath(cfg.LogDir), cfg.LogMaxBytes, cfg.LogFiles, cfg.OnLogLine)
	if err != nil {
		return nil, err
	}
	s.log = l
	return s, nil
}

func (s *Supervisor) cleanupLeftover(ctx context.Context) error {
	rec, err := readPidRecord(s.pidPath)
	if err != nil {
		// A corrupt pidfile cannot be acted on; keeping it would block
		// every future start, so report it and move on.
		s.cfg.Logger.Warn("ignoring unreadable miner pidfile", "err", err)
		_ = os.Remove(s.pidPath)
		return nil
	}
	if rec == nil {
		return nil
	}
	killed, err := killLeftover(ctx, rec, s.cfg.StopGrace)
	if err != nil {
		return fmt.Errorf("end leftover miner group %d: %w", rec.PGID, err)
	}
	if killed {
		s.emit(EventLeftoverKilled, "ended a miner left running by an earlier agent run", map[string]string{
			"pid": strconv.Itoa(rec.PID), "pgid": strconv.Itoa(rec.PGID), "path": rec.Path,
		})
	}
	if err := os.Remove(s.pidPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pidfile: %w", err)
	}
	return nil
}

// Start runs the miner described by sheet, replacing whatever runs now. It
// returns once the process has started, or with the reason it could not
// (a *ChecksumError among them). After a failure other than a checksum
// mismatch the supervisor keeps retrying with backoff.
func (s *Supervisor) Start(ctx context.Context, sheet *flightsheet.FlightSheet) error {
	if sheet == nil {
		return errors.New("miner supervisor: nil flight sheet")
	}
	if len(sheet.Pools) == 0 {
		return errors.New("miner supervisor: flight sheet has no pools")
	}
	cp := cloneSheet(sheet)
	s.ctl.Lock()
	defer s.ctl.Unlock()
	if s.running() {
		return s.send(ctx, request{kind: reqApply, sheet: cp})
	}
	return s.startLoop(ctx, cp)
}

// Restart stops and starts the miner again. On a stopped supervisor it
// starts the last applied flight sheet.
func (s *Supervisor) Restart(ctx context.Context, reason string) error {
	s.ctl.Lock()
	defer s.ctl.Unlock()
	if s.running() {
		return s.send(ctx, request{kind: reqRestart, reason: reason})
	}
	s.mu.Lock()
	sheet := s.sheet
	s.mu.Unlock()
	if sheet == nil {
		return errors.New("miner supervisor: no flight sheet applied")
	}
	s.emit(EventRestarting, "starting stopped miner: "+reason, map[string]string{"reason": reason})
	return s.startLoop(ctx, cloneSheet(sheet))
}

// NextPool restarts the miner with the next pool of the flight sheet first,
// wrapping around after the last.
func (s *Supervisor) NextPool(ctx context.Context, reason string) error {
	s.ctl.Lock()
	defer s.ctl.Unlock()
	if !s.running() {
		return errors.New("miner supervisor: miner is not running")
	}
	return s.send(ctx, request{kind: reqNextPool, reason: reason})
}

// Stop ends the miner (SIGTERM to its group, SIGKILL after the grace
// period) and stops supervising it. Stopping a stopped supervisor is a
// no-op.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.ctl.Lock()
	defer s.ctl.Unlock()
	if !s.running() {
		return nil
	}
	s.mu.Lock()
	done := s.loopDone
	s.mu.Unlock()
	err := s.send(ctx, request{kind: reqStop, reason: "stop requested"})
	// The loop answers just before it returns; wait for that so a Start or
	// Restart right after Stop does not find it still winding down.
	select {
	case <-done:
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	}
	return err
}

// Close stops the miner and closes the log.
func (s *Supervisor) Close(ctx context.Context) error {
	err := s.Stop(ctx)
	return errors.Join(err, s.log.Close())
}

// Tail returns up to n of the miner's last output lines, oldest first.
func (s *Supervisor) Tail(n int) ([]string, error) { return s.log.Tail(n) }

// LogFiles lists the miner log files, newest first.
func (s *Supervisor) LogFiles() []string { return s.log.Files() }

// Status returns a snapshot of the supervisor's state.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Supervisor) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loopDone == nil {
		return false
	}
	select {
	case <-s.loopDone:
		return false
	default:
		return true
	}
}

func (s *Supervisor) startLoop(ctx context.Context, sheet *flightsheet.FlightSheet) error {
	first := make(chan error, 1)
	done := make(chan struct{})
	reqs := make(chan request)
	s.applied(sheet)
	s.mu.Lock()
	s.loopDone, s.reqs = done, reqs
	s.mu.Unlock()
	go s.loop(sheet, reqs, first, done)
	select {
	case err := <-first:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// send hands a request to the loop and waits for its answer.
func (s *Supervisor) send(ctx context.Context, r request) error {
	r.reply = make(chan error, 1)
	s.mu.Lock()
	reqs, done := s.reqs, s.loopDone
	s.mu.Unlock()
	select {
	case reqs <- r:
	case <-done:
		return errors.New("miner supervisor: supervision ended")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// proc is one started miner process.
type proc struct {
	cmd     *exec.Cmd
	pgid    int
	started time.Time
	exited  chan struct{}
	waitErr error
	out     *os.File      // read end of the output pipe
	copied  chan struct{} // closed when output copying ends
}

// finish waits for the last output to reach the log. A process that left
// the group (setsid) could hold the pipe forever, so the wait is bounded.
func (p *proc) finish() {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-p.copied:
	case <-t.C:
	}
	p.out.Close()
	<-p.copied
}

// loop owns the miner process. Everything that changes it runs here, so
// there is no race between a crash restart and a requested one.
func (s *Supervisor) loop(sheet *flightsheet.FlightSheet, reqs <-chan request, reply chan error, done chan struct{}) {
	defer close(done)
	var (
		failures int
		delay    time.Duration // <0: wait for a request only
		reason   string        // why the next start happens, for the event
	)
	for {
		if delay != 0 {
			r, ok := s.wait(reqs, delay)
			if ok {
				switch r.kind {
				case reqStop:
					s.setState(StateIdle, 0, "")
					s.emit(EventStopped, "miner stopped", map[string]string{"reason": r.reason})
					r.reply <- nil
					return
				case reqApply:
					sheet, failures = r.sheet, 0
					s.applied(sheet)
				case reqNextPool:
					sheet = s.rotatePool(sheet, r.reason)
				}
				reply, reason = r.reply, r.reason
			}
			delay = 0
		}
		p, err := s.spawn(sheet, reason)
		if err != nil {
			var ce *ChecksumError
			if errors.As(err, &ce) || errors.Is(err, flightsheet.ErrMinerPath) {
				s.setState(StateFailed, 0, err.Error())
				delay = -1
			} else {
				failures++
				delay = s.backoff(failures)
				s.setState(StateBackoff, 0, err.Error())
				s.emit(EventBackoff, "retrying miner start in "+delay.String(), map[string]string{
					"delay": delay.String(), "failures": strconv.Itoa(failures),
				})
			}
		}
		// Answer only now, so the caller sees the state this start left.
		if reply != nil {
			reply <- err
			reply = nil
		}
		if err != nil {
			continue
		}

		select {
		case <-p.exited:
			ran := time.Since(p.started)
			if ran >= s.cfg.StableAfter {
				failures = 0
			}
			failures++
			delay = s.backoff(failures)
			how := describeExit(p)
			// The leader is gone but a child it forked may not be.
			_ = killGroup(context.Background(), p.pgid)
			p.finish()
			s.removePidfile()
			s.mu.Lock()
			s.status.LastExit = how
			s.status.Restarts++
			s.mu.Unlock()
			s.setState(StateBackoff, 0, "")
			s.emit(EventExited, "miner "+how+" after "+ran.Round(time.Millisecond).String(), map[string]string{
				"pid": strconv.Itoa(p.pgid), "exit": how, "ran": ran.String(), "restart_in": delay.String(),
			})
			s.emit(EventBackoff, "restarting miner in "+delay.String(), map[string]string{
				"delay": delay.String(), "failures": strconv.Itoa(failures),
			})
			reason = "crashed: " + how
		case r := <-reqs:
			err := s.terminate(p)
			switch r.kind {
			case reqStop:
				s.setState(StateIdle, 0, "")
				s.emit(EventStopped, "miner stopped", map[string]string{"reason": r.reason, "pid": strconv.Itoa(p.pgid)})
				r.reply <- err
				return
			case reqRestart:
				s.emit(EventRestarting, "restarting miner: "+r.reason, map[string]string{"reason": r.reason})
				s.mu.Lock()
				s.status.Restarts++
				s.mu.Unlock()
			case reqNextPool:
				sheet = s.rotatePool(sheet, r.reason)
			case reqApply:
				sheet, failures = r.sheet, 0
				s.applied(sheet)
			}
			if err != nil {
				s.cfg.Logger.Warn("miner did not stop cleanly", "err", err)
			}
			reply, reason = r.reply, r.reason
		}
	}
}

// applied records a newly applied sheet: counters and pool position start
// over.
func (s *Supervisor) applied(sheet *flightsheet.FlightSheet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sheet = cloneSheet(sheet)
	s.status.Restarts = 0
	s.status.PoolIndex = 0
}

// wait sleeps for d (forever when d < 0) unless a request arrives first.
func (s *Supervisor) wait(reqs <-chan request, d time.Duration) (request, bool) {
	if d < 0 {
		return <-reqs, true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-reqs:
		return r, true
	case <-t.C:
		return request{}, false
	}
}

func (s *Supervisor) backoff(failures int) time.Duration {
	d := s.cfg.BackoffMin
	for i := 1; i < failures && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	return min(d, s.cfg.BackoffMax)
}

// rotatePool moves the first pool to the end, so the miner's first choice
// becomes the next pool of the sheet.
func (s *Supervisor) rotatePool(sheet *flightsheet.FlightSheet, reason string) *flightsheet.FlightSheet {
	next := cloneSheet(sheet)
	if len(next.Pools) > 1 {
		next.Pools = append(next.Pools[1:], next.Pools[0])
	}
	s.mu.Lock()
	s.status.PoolIndex = (s.status.PoolIndex + 1) % max(len(sheet.Pools), 1)
	idx := s.status.PoolIndex
	s.mu.Unlock()
	s.emit(EventPoolSwitched, fmt.Sprintf("switching from %s to %s: %s", sheet.Pools[0].URL, next.Pools[0].URL, reason), map[string]string{
		"from": sheet.Pools[0].URL, "to": next.Pools[0].URL, "reason": reason, "pool_index": strconv.Itoa(idx),
	})
	return next
}

func (s *Supervisor) spawn(sheet *flightsheet.FlightSheet, reason string) (*proc, error) {
	// Security policy: only a binary inside MinersDir, and never a shell,
	// runs; it is hashed and run by its resolved path.
	path, err := flightsheet.ResolveMinerPath(s.cfg.MinersDir, sheet.Miner.Path)
	if err != nil {
		kind := EventStartFailed
		if errors.Is(err, flightsheet.ErrMinerPath) {
			kind = EventBinaryRefused
		}
		s.emit(kind, err.Error(), map[string]string{"path": sheet.Miner.Path, "miners_dir": s.cfg.MinersDir})
		return nil, err
	}
	if err := verifyChecksum(path, sheet.Miner.SHA256); err != nil {
		var ce *ChecksumError
		if errors.As(err, &ce) {
			s.emit(EventChecksumMismatch, err.Error(), map[string]string{"path": path, "want": ce.Want, "got": ce.Got})
		} else {
			s.emit(EventStartFailed, err.Error(), map[string]string{"path": path})
		}
		return nil, err
	}
	launch, err := s.cfg.Launcher.Launch(sheet)
	if err == nil {
		err = s.writeConfig(launch)
	}
	if err != nil {
		err = fmt.Errorf("build miner command line: %w", err)
		s.emit(EventStartFailed, err.Error(), map[string]string{"path": path})
		return nil, err
	}
	cmd := exec.Command(path, launch.Args...)
	cmd.Dir = s.cfg.WorkDir
	cmd.Env = append(os.Environ(), s.cfg.Env...)
	// Our own pipe rather than exec's: exec's Wait would also wait for
	// every forked child holding the pipe, delaying crash detection.
	pr, pw, err := os.Pipe()
	if err != nil {
		err = fmt.Errorf("miner output pipe: %w", err)
		s.emit(EventStartFailed, err.Error(), map[string]string{"path": path})
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	// Its own group, so one signal reaches every process the miner forks
	// and none of the agent's.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Fprintf(s.log, "--- quarry: starting %s %s (pool %s) ---\n", sheet.Miner.Name, sheet.Miner.Version, sheet.Pools[0].URL)
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		err = fmt.Errorf("start miner %s: %w", path, err)
		s.emit(EventStartFailed, err.Error(), map[string]string{"path": path})
		return nil, err
	}
	p := &proc{cmd: cmd, pgid: cmd.Process.Pid, started: time.Now(), exited: make(chan struct{}), out: pr, copied: make(chan struct{})}
	go func() {
		_, _ = io.Copy(s.log, pr)
		close(p.copied)
	}()
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	ticks, err := procStartTicks(p.pgid)
	if err != nil {
		s.cfg.Logger.Warn("cannot read miner start time; pid reuse check disabled", "pid", p.pgid, "err", err)
	}
	if err := writePidRecord(s.pidPath, pidRecord{PID: p.pgid, PGID: p.pgid, StartTicks: ticks, Path: path, Started: p.started}); err != nil {
		// Without a pidfile a crashed agent would leave this miner running
		// unseen; better not to run it at all.
		_, _ = terminateGroup(context.Background(), p.pgid, s.cfg.StopGrace, p.exited)
		<-p.exited
		p.finish()
		s.emit(EventStartFailed, err.Error(), map[string]string{"path": path})
		return nil, err
	}
	s.mu.Lock()
	s.status.Sheet = sheet.Name
	s.status.Pool = sheet.Pools[0].URL
	s.status.LastError = ""
	s.mu.Unlock()
	s.setState(StateRunning, p.pgid, "")
	fields := map[string]string{"pid": strconv.Itoa(p.pgid), "path": path, "pool": sheet.Pools[0].URL, "sheet": sheet.Name}
	if reason != "" {
		fields["reason"] = reason
	}
	s.emit(EventStarted, fmt.Sprintf("started %s (pid %d)", sheet.Miner.Name, p.pgid), fields)
	return p, nil
}

// writeConfig puts the miner's config file in its working directory. It can
// hold pool passwords and API tokens, so only the agent's user may read it.
func (s *Supervisor) writeConfig(l Launch) error {
	if l.ConfigName == "" {
		return nil
	}
	if l.ConfigName != filepath.Base(l.ConfigName) || l.ConfigName == "." || l.ConfigName == ".." {
		return fmt.Errorf("config file name %q must be a plain file name", l.ConfigName)
	}
	p := filepath.Join(s.cfg.WorkDir, l.ConfigName)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, l.Config, 0o600); err != nil {
		return fmt.Errorf("write miner config: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("install miner config: %w", err)
	}
	return nil
}

// terminate stops a running miner and waits until it has been reaped.
func (s *Supervisor) terminate(p *proc) error {
	killed, err := terminateGroup(context.Background(), p.pgid, s.cfg.StopGrace, p.exited)
	<-p.exited
	p.finish()
	s.removePidfile()
	if killed {
		s.emit(EventKilled, fmt.Sprintf("miner ignored SIGTERM for %v; sent SIGKILL", s.cfg.StopGrace), map[string]string{
			"pid": strconv.Itoa(p.pgid), "grace": s.cfg.StopGrace.String(),
		})
	}
	s.mu.Lock()
	s.status.LastExit = describeExit(p)
	s.mu.Unlock()
	return err
}

func (s *Supervisor) removePidfile() {
	if err := os.Remove(s.pidPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.cfg.Logger.Warn("remove miner pidfile", "err", err)
	}
}

func (s *Supervisor) setState(st State, pid int, lastErr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.State, s.status.PID, s.status.Since = st, pid, time.Now()
	if lastErr != "" {
		s.status.LastError = lastErr
	}
}

func (s *Supervisor) emit(kind EventKind, msg string, fields map[string]string) {
	ev := Event{Time: time.Now(), Kind: kind, Message: msg, Fields: fields}
	level := slog.LevelInfo
	switch kind {
	case EventExited, EventKilled, EventChecksumMismatch, EventBinaryRefused, EventStartFailed, EventLeftoverKilled:
		level = slog.LevelWarn
	}
	s.cfg.Logger.Log(context.Background(), level, msg, "event", string(kind))
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(ev)
	}
}

func describeExit(p *proc) string {
	st := p.cmd.ProcessState
	if st == nil {
		if p.waitErr != nil {
			return "ended: " + p.waitErr.Error()
		}
		return "ended"
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by " + signalName(ws.Signal())
	}
	return "exited with code " + strconv.Itoa(st.ExitCode())
}

// signalName is "SIGKILL", or "SIGSEGV (segmentation fault)" where the
// description adds something; Go's own String is only the description
// ("killed"), which made "killed by killed".
func signalName(sig syscall.Signal) string {
	names := map[syscall.Signal]string{
		syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT", syscall.SIGHUP: "SIGHUP",
		syscall.SIGQUIT: "SIGQUIT", syscall.SIGABRT: "SIGABRT", syscall.SIGSEGV: "SIGSEGV", syscall.SIGBUS: "SIGBUS",
		syscall.SIGILL: "SIGILL", syscall.SIGFPE: "SIGFPE", syscall.SIGPIPE: "SIGPIPE", syscall.SIGUSR1: "SIGUSR1",
		syscall.SIGUSR2: "SIGUSR2", syscall.SIGXCPU: "SIGXCPU",
	}
	name, ok := names[sig]
	if !ok {
		return fmt.Sprintf("signal %d (%s)", int(sig), sig)
	}
	switch sig {
	case syscall.SIGKILL, syscall.SIGTERM, syscall.SIGINT:
		return name
	}
	return name + " (" + sig.String() + ")"
}

// verifyChecksum hashes the file at path and compares it with want.
func verifyChecksum(path, want string) error {
	got, err := FileSHA256(path)
	if err != nil {
		return fmt.Errorf("miner binary: %w", err)
	}
	if !strings.EqualFold(got, want) {
		return &ChecksumError{Path: path, Want: strings.ToLower(want), Got: got}
	}
	return nil
}

// FileSHA256 returns the hex sha256 of a file, for writing flight sheets.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func cloneSheet(fs *flightsheet.FlightSheet) *flightsheet.FlightSheet {
	cp := *fs
	cp.Pools = append([]flightsheet.Pool(nil), fs.Pools...)
	cp.ExtraArgs = append([]string(nil), fs.ExtraArgs...)
	return &cp
}
