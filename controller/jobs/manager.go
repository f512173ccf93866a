package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/selfheal"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Fleet is what the manager needs from the controller's fleet.
type Fleet interface {
	Rigs() []*quarryv1.Rig
	QueueCommand(rigID string, kind quarryv1.CommandKind, payload []byte, ttl time.Duration) (*quarryv1.CommandRecord, error)
	Command(id string) (*quarryv1.CommandRecord, error)
}

// Errors the gRPC layer maps to status codes.
var (
	ErrInvalid  = errors.New("invalid job")
	ErrNoRigs   = errors.New("no rig matches the selector")
	ErrState    = errors.New("job is in the wrong state")
	ErrShutdown = errors.New("job manager is shutting down")
	// ErrDenied is a caller whose role may not run this job.
	ErrDenied = errors.New("permission denied")
	// ErrDisabled is a job on the controller while controller jobs are off.
	ErrDisabled = errors.New("build jobs on the controller are off (jobs.controller_jobs: false); run the job on rigs with where: agent:<selector>")
)

// TargetController is the run target of jobs the controller runs itself.
const TargetController = selfheal.WhereController

// Options configures a Manager.
type Options struct {
	Config Config
	// DataDir is the controller's data dir; backups and logs go under
	// DataDir/jobs.
	DataDir string
	Logger  *slog.Logger
	// PollInterval is how often rig commands are checked; default 250ms.
	PollInterval time.Duration
	// CommandTTL is how long a job waits for an offline rig; default 24h.
	CommandTTL time.Duration
}

// defaultPath is a controller job's PATH when the controller has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// maxLogBytes bounds a controller job's stored log.
const maxLogBytes = 8 << 20

// recentEvents is how many events a late watcher is replayed.
const recentEvents = 512

// Manager runs and records jobs. It is safe for concurrent use.
type Manager struct {
	fleet    Fleet
	opts     Options
	log      *slog.Logger
	ix       index
	rec      *selfheal.BoltRecorder
	packs    *selfheal.PackSet
	stateDir string
	logDir   string
	sem      chan struct{}
	// Controller jobs' workspace and the data dir, symlinks resolved; set
	// only when controller jobs are on.
	workspace string
	dataDir   string

	ctx    context.Context
	stop   context.CancelCauseFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	active map[string]*active
	closed bool
}

// Open prepares its buckets in db (the controller's database), loads rule packs and resumes following jobs that
// were waiting on rigs when the controller stopped.
func Open(db *store.DB, f Fleet, opts Options) (*Manager, error) {
	if opts.Config.MaxConcurrent == 0 {
		opts.Config.MaxConcurrent = DefaultConfig().MaxConcurrent
	}
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.DataDir == "" {
		return nil, errors.New("jobs: data dir is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 250 * time.Millisecond
	}
	packs, err := selfheal.LoadPacks(opts.Config.RulePackDir)
	if err != nil {
		return nil, fmt.Errorf("jobs.rule_pack_dir: %w", err)
	}
	if err := db.EnsureBuckets(IndexBucket); err != nil {
		return nil, err
	}
	rec, err := selfheal.NewRecorder(db)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		fleet: f, opts: opts, log: opts.Logger.With("component", "jobs"),
		ix: index{db}, rec: rec, packs: packs,
		stateDir: filepath.Join(opts.DataDir, "jobs", "state"),
		logDir:   filepath.Join(opts.DataDir, "jobs", "logs"),
		sem:      make(chan struct{}, opts.Config.MaxConcurrent),
		active:   map[string]*active{},
	}
	for _, d := range []string{m.stateDir, m.logDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("jobs dir: %w", err)
		}
	}
	if opts.Config.ControllerJobs {
		if err := m.prepareWorkspace(); err != nil {
			return nil, err
		}
	}
	m.ctx, m.stop = context.WithCancelCause(context.Background())
	if err := m.recover(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// prepareWorkspace checks that controller jobs' workspace is outside the
// data dir (and does not hold it) and creates it, owned by the job user.
func (m *Manager) prepareWorkspace() error {
	u, _, err := m.opts.Config.jobUser()
	if err != nil {
		return err
	}
	if m.dataDir, err = realPath(m.opts.DataDir); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	ws, err := realPath(m.opts.Config.Workspace)
	if err != nil {
		return fmt.Errorf("jobs.workspace: %w", err)
	}
	if within(ws, m.dataDir) || within(m.dataDir, ws) {
		return fmt.Errorf("jobs.workspace: %s overlaps the data dir %s, whose CA key and admin token jobs must never reach; choose a directory outside it", ws, m.dataDir)
	}
	if _, err := os.Stat(ws); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(ws, 0o750); err != nil {
			return fmt.Errorf("jobs.workspace: %w", err)
		}
		if err := os.Chown(ws, int(u.UID), int(u.GID)); err != nil {
			return fmt.Errorf("jobs.workspace: give it to jobs.run_as: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("jobs.workspace: %w", err)
	}
	m.workspace = ws
	if os.Geteuid() != 0 {
		m.log.Warn("controller jobs are on but the controller is not root: it needs CAP_SETUID and CAP_SETGID to run jobs as jobs.run_as", "run_as", m.opts.Config.RunAs)
	}
	return nil
}

// controllerDir resolves a controller job's dir: relative to the
// workspace, symlinks resolved, inside the workspace and outside the data
// dir.
func (m *Manager) controllerDir(dir string) (string, error) {
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(m.workspace, dir)
	}
	real, err := realPath(dir)
	if err != nil {
		return "", fmt.Errorf("%w: dir: %w", ErrInvalid, err)
	}
	if !within(real, m.workspace) || within(real, m.dataDir) {
		return "", fmt.Errorf("%w: dir: %s is outside the controller's job workspace %s (jobs.workspace)", ErrInvalid, real, m.workspace)
	}
	if st, err := os.Stat(real); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%w: dir: %s is not a directory on the controller", ErrInvalid, real)
	}
	return real, nil
}

// jobEnv is a controller job's whole base environment: PATH, HOME and
// LANG, never the controller's own variables (its QUARRY_* settings and
// keys). The spec's env is added by selfheal.
func jobEnv(home, dir string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	lang := os.Getenv("LANG")
	if lang == "" {
		lang = "C.UTF-8"
	}
	if st, err := os.Stat(home); home == "" || err != nil || !st.IsDir() {
		// nobody's home does not exist; tools that cache under $HOME
		// (go, dotnet) then use the job's own directory.
		home = dir
	}
	return []string{"PATH=" + path, "HOME=" + home, "LANG=" + lang}
}

// recover marks controller runs that a stop interrupted and follows rig
// runs again.
func (m *Manager) recover() error {
	recs, err := m.ix.list(1 << 30)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if rec.status() != StatusPending && rec.status() != StatusRunning {
			continue
		}
		if rec.Where == selfheal.WhereController {
			_, err := m.ix.update(rec.ID, func(r *record) {
				for i := range r.Runs {
					if !r.Runs[i].done() {
						r.Runs[i].Status = string(selfheal.StatusFailed)
						r.Runs[i].Error = "the controller stopped while this job ran; run it again"
						r.Runs[i].Finished = time.Now()
					}
				}
				r.Finished = time.Now()
			})
			if err != nil {
				return err
			}
			continue
		}
		a := m.track(rec.ID)
		m.wg.Add(1)
		go m.followRigs(a, rec.ID)
		m.log.Info("following rig job again", "job", rec.ID)
	}
	return nil
}

// Close cancels running controller jobs, stops following rig jobs and
// waits for both.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.stop(ErrShutdown)
	m.wg.Wait()
}

// Start validates a YAML spec and starts the job. Rig jobs are queued as
// commands before Start returns, so the job lists its runs at once.
func (m *Manager) Start(ctx context.Context, specYAML []byte, who auth.Caller) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	// Jobs run arbitrary commands: as root on rigs, as jobs.run_as on the
	// controller. Only admins may start them.
	if who.Role != fleet.RoleAdmin {
		return "", fmt.Errorf("%w: running build jobs needs role admin; %s has role %s", ErrDenied, who.Name, who.Role)
	}
	spec, err := selfheal.ParseSpec(specYAML)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if _, err := m.packs.Select(spec.RulePacks); err != nil {
		return "", fmt.Errorf("%w: %w (packs here: %v)", ErrInvalid, err, m.packs.Names())
	}
	now := time.Now()
	rec := &record{ID: selfheal.NewJobID(now), Name: spec.Name, Where: spec.Where, SpecYAML: string(specYAML), CreatedBy: who.Name, Started: now}
	var targets []*quarryv1.Rig
	if sel, ok := spec.AgentSelector(); ok {
		if targets, err = m.matchRigs(sel); err != nil {
			return "", err
		}
		for _, r := range targets {
			rec.Runs = append(rec.Runs, run{Target: rigLabel(r), RigID: r.Id, RecordID: rec.ID + "." + r.Id, Status: StatusPending})
		}
	} else {
		if !m.opts.Config.ControllerJobs {
			return "", ErrDisabled
		}
		if _, _, err := m.opts.Config.jobUser(); err != nil {
			return "", fmt.Errorf("%w: %w", ErrDisabled, err)
		}
		dir, err := m.controllerDir(spec.Dir)
		if err != nil {
			return "", err
		}
		spec.Dir = dir
		rec.Runs = []run{{Target: TargetController, RecordID: rec.ID, Status: StatusPending}}
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return "", ErrShutdown
	}
	m.wg.Add(1)
	m.mu.Unlock()
	if err := m.ix.put(rec); err != nil {
		m.wg.Done()
		return "", err
	}
	a := m.track(rec.ID)
	if spec.Where == selfheal.WhereController {
		go m.runController(a, rec.ID, spec)
	} else {
		m.dispatch(rec, spec, targets)
		go m.followRigs(a, rec.ID)
	}
	m.log.Info("job started", "job", rec.ID, "name", spec.Name, "where", spec.Where, "runs", len(rec.Runs), "by", who.Name)
	return rec.ID, nil
}

func rigLabel(r *quarryv1.Rig) string {
	if r.Name != "" {
		return r.Name
	}
	return r.Id
}

// dispatch queues a RUN_JOB command per target rig.
func (m *Manager) dispatch(rec *record, spec selfheal.Spec, targets []*quarryv1.Rig) {
	a := m.lookup(rec.ID)
	for i, r := range targets {
		payload, err := json.Marshal(RunJobPayload{Op: OpRun, JobID: rec.Runs[i].RecordID, Spec: spec})
		var cmd *quarryv1.CommandRecord
		if err == nil {
			cmd, err = m.fleet.QueueCommand(r.Id, quarryv1.CommandKind_COMMAND_KIND_RUN_JOB, payload, m.opts.CommandTTL)
		}
		_, uerr := m.ix.update(rec.ID, func(x *record) {
			if err != nil {
				x.Runs[i].Status = string(selfheal.StatusFailed)
				x.Runs[i].Error = "could not queue the job for the rig: " + err.Error()
				x.Runs[i].Finished = time.Now()
				return
			}
			x.Runs[i].CommandID = cmd.Command.Id
		})
		if uerr != nil {
			m.log.Error("record dispatch", "job", rec.ID, "err", uerr)
		}
		if err == nil {
			rec.Runs[i].CommandID = cmd.Command.Id
			a.publish(&quarryv1.JobEvent{Target: rec.Runs[i].Target, Kind: "dispatched", Text: "queued as command " + cmd.Command.Id})
		}
	}
}

// runController runs a where: controller job once a slot is free.
func (m *Manager) runController(a *active, id string, spec selfheal.Spec) {
	defer m.wg.Done()
	defer m.untrack(id, a)
	select {
	case m.sem <- struct{}{}:
	case <-a.ctx.Done():
		m.finishRun(a, id, 0, string(selfheal.StatusCanceled), "", "canceled before it started ("+cause(a.ctx)+")")
		return
	}
	defer func() { <-m.sem }()
	m.setRun(id, 0, func(r *run) { r.Status, r.Started = StatusRunning, time.Now() })
	u, home, err := m.opts.Config.jobUser()
	if err == nil {
		// The directory may have been swapped for a symlink since Start.
		spec.Dir, err = m.controllerDir(spec.Dir)
	}
	if err != nil {
		m.finishRun(a, id, 0, string(selfheal.StatusFailed), "", "refused: "+err.Error())
		return
	}
	res, err := selfheal.Run(a.ctx, spec, selfheal.Options{
		Packs:    m.packs,
		Recorder: m.rec,
		Progress: func(e selfheal.Event) { a.publish(fromEvent(e, TargetController)) },
		Logger:   m.log,
		StateDir: m.stateDir,
		JobID:    id,
		Env:      jobEnv(home, spec.Dir),
		RunAs:    u,
	})
	status, errText := string(res.Status), ""
	switch {
	case a.ctx.Err() != nil:
		status, errText = string(selfheal.StatusCanceled), cause(a.ctx)
	case err != nil:
		status, errText = string(selfheal.StatusFailed), err.Error()
	}
	m.finishRun(a, id, 0, status, res.Diagnosis, errText)
}

func cause(ctx context.Context) string {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c.Error()
	}
	return "canceled"
}

// finishRun stores a run's outcome and, when it was the last run, the job's.
func (m *Manager) finishRun(a *active, id string, i int, status, diagnosis, errText string) {
	rec, err := m.ix.update(id, func(r *record) {
		ru := &r.Runs[i]
		ru.Status, ru.Diagnosis, ru.Error, ru.Finished = status, diagnosis, errText, time.Now()
		done := true
		for _, x := range r.Runs {
			done = done && x.done()
		}
		if done {
			r.Finished = time.Now()
		}
	})
	if err != nil {
		m.log.Error("record job outcome", "job", id, "err", err)
		return
	}
	text := status
	if diagnosis != "" {
		text += ": " + diagnosis
	}
	if errText != "" {
		text += " (" + errText + ")"
	}
	a.publish(&quarryv1.JobEvent{Target: rec.Runs[i].Target, Kind: "done", Text: text})
}

func (m *Manager) setRun(id string, i int, fn func(*run)) {
	if _, err := m.ix.update(id, func(r *record) { fn(&r.Runs[i]) }); err != nil {
		m.log.Error("record job", "job", id, "err", err)
	}
}

// followRigs polls the job's rig commands until every run has an outcome.
func (m *Manager) followRigs(a *active, id string) {
	defer m.wg.Done()
	defer m.untrack(id, a)
	t := time.NewTicker(m.opts.PollInterval)
	defer t.Stop()
	for {
		rec, err := m.ix.get(id)
		if err != nil {
			m.log.Error("follow job", "job", id, "err", err)
			return
		}
		open := 0
		for i := range rec.Runs {
			ru := &rec.Runs[i]
			if ru.done() {
				continue
			}
			open++
			if ru.CommandID == "" {
				continue
			}
			cmd, err := m.fleet.Command(ru.CommandID)
			if err != nil {
				m.finishRun(a, id, i, string(selfheal.StatusFailed), "", err.Error())
				continue
			}
			switch cmd.Status {
			case quarryv1.CommandStatus_COMMAND_STATUS_SENT:
				if ru.Status == StatusPending {
					m.setRun(id, i, func(r *run) { r.Status, r.Started = StatusRunning, time.Now() })
					a.publish(&quarryv1.JobEvent{Target: ru.Target, Kind: "step-start", Text: "the rig received the job"})
				}
			case quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, quarryv1.CommandStatus_COMMAND_STATUS_FAILED:
				m.finishRigRun(a, rec, i, cmd)
			case quarryv1.CommandStatus_COMMAND_STATUS_EXPIRED:
				m.finishRun(a, id, i, string(selfheal.StatusFailed), "", "the rig did not come online before the job expired")
			}
		}
		if open == 0 {
			return
		}
		select {
		case <-a.ctx.Done():
			m.cancelRigRuns(a, id)
			return
		case <-t.C:
		}
	}
}

// cancelRigRuns gives up on unfinished rig runs. A rig that already
// started the build finishes it; its result is then ignored.
func (m *Manager) cancelRigRuns(a *active, id string) {
	rec, err := m.ix.get(id)
	if err != nil {
		return
	}
	for i, ru := range rec.Runs {
		if ru.done() {
			continue
		}
		if m.ctx.Err() != nil {
			// Shutting down: keep following after the restart.
			continue
		}
		why := cause(a.ctx)
		if ru.Status == StatusRunning {
			why += "; the rig had already started and finishes its build, whose result is ignored"
		}
		m.finishRun(a, id, i, string(selfheal.StatusCanceled), "", why)
	}
}

// finishRigRun stores the rig's selfheal.Result as the run's record.
func (m *Manager) finishRigRun(a *active, rec *record, i int, cmd *quarryv1.CommandRecord) {
	ru := rec.Runs[i]
	var res selfheal.Result
	if len(cmd.Output) == 0 || json.Unmarshal(cmd.Output, &res) != nil || res.Status == "" {
		msg := cmd.Error
		if msg == "" {
			msg = "the rig returned no job result"
		}
		m.finishRun(a, rec.ID, i, string(selfheal.StatusFailed), "", msg)
		return
	}
	res.ID = ru.RecordID
	ctx := context.WithoutCancel(m.ctx)
	err := m.rec.RecordJob(ctx, res.Job)
	for _, at := range res.AttemptLog {
		if err != nil {
			break
		}
		err = m.rec.RecordAttempt(ctx, ru.RecordID, at)
		a.publish(attemptEvent(ru.Target, at))
	}
	if err != nil {
		m.log.Error("record rig job", "job", rec.ID, "rig", ru.RigID, "err", err)
	}
	errText := ""
	if cmd.Status == quarryv1.CommandStatus_COMMAND_STATUS_FAILED {
		errText = cmd.Error
	}
	m.finishRun(a, rec.ID, i, string(res.Status), res.Diagnosis, errText)
}

func (m *Manager) matchRigs(selector string) ([]*quarryv1.Rig, error) {
	sel, err := parseSelector(selector)
	if err != nil {
		return nil, fmt.Errorf("%w: where: %w", ErrInvalid, err)
	}
	var out []*quarryv1.Rig
	for _, r := range m.fleet.Rigs() {
		if !r.Revoked && sel.Matches(fleet.SelectorRig(r)) {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w %q", ErrNoRigs, selector)
	}
	return out, nil
}

// Cancel stops a running job.
func (m *Manager) Cancel(ctx context.Context, id string, who auth.Caller) error {
	rec, err := m.ix.get(id)
	if err != nil {
		return err
	}
	a := m.lookup(id)
	if a == nil {
		return fmt.Errorf("%w: job %s already ended %s", ErrState, id, rec.status())
	}
	a.cancel(fmt.Errorf("canceled by %s", who.Name))
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Revert undoes a finished job's file edits: directly for controller runs,
// by a RUN_JOB revert command for rig runs, waiting for the rigs' answers
// until ctx ends.
func (m *Manager) Revert(ctx context.Context, id string, who auth.Caller) ([]*quarryv1.RevertedRun, error) {
	rec, err := m.ix.get(id)
	if err != nil {
		return nil, err
	}
	if st := rec.status(); st == StatusPending || st == StatusRunning || m.lookup(id) != nil {
		return nil, fmt.Errorf("%w: job %s is %s; cancel it or wait before reverting", ErrState, id, st)
	}
	out := make([]*quarryv1.RevertedRun, len(rec.Runs))
	for i, ru := range rec.Runs {
		rr := &quarryv1.RevertedRun{Target: ru.Target}
		out[i] = rr
		if ru.RigID == "" {
			restored, err := selfheal.Revert(ctx, m.stateDir, ru.RecordID)
			rr.Restored = restored
			if err != nil {
				rr.Error = err.Error()
			}
			continue
		}
		payload, err := json.Marshal(RunJobPayload{Op: OpRevert, JobID: ru.RecordID})
		if err != nil {
			return nil, err
		}
		cmd, err := m.fleet.QueueCommand(ru.RigID, quarryv1.CommandKind_COMMAND_KIND_RUN_JOB, payload, m.opts.CommandTTL)
		if err != nil {
			rr.Error = err.Error()
			continue
		}
		rr.CommandId, rr.Pending = cmd.Command.Id, true
	}
	m.waitReverts(ctx, out)
	return out, nil
}

func (m *Manager) waitReverts(ctx context.Context, runs []*quarryv1.RevertedRun) {
	// Leave the caller time to receive the answer before its deadline.
	var cancel context.CancelFunc
	if dl, ok := ctx.Deadline(); ok {
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-time.Until(dl)/5))
	} else {
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
	}
	defer cancel()
	t := time.NewTicker(m.opts.PollInterval)
	defer t.Stop()
	for {
		open := false
		for _, rr := range runs {
			if !rr.Pending {
				continue
			}
			cmd, err := m.fleet.Command(rr.CommandId)
			if err != nil {
				rr.Pending, rr.Error = false, err.Error()
				continue
			}
			switch cmd.Status {
			case quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, quarryv1.CommandStatus_COMMAND_STATUS_FAILED, quarryv1.CommandStatus_COMMAND_STATUS_EXPIRED:
				rr.Pending = false
				var r RevertResult
				if json.Unmarshal(cmd.Output, &r) == nil {
					rr.Restored = r.Restored
				}
				rr.Error = cmd.Error
				if cmd.Status == quarryv1.CommandStatus_COMMAND_STATUS_EXPIRED {
					rr.Error = "the rig did not come online in time"
				}
			default:
				open = true
			}
		}
		if !open {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
	}
}
