package selfheal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// OutputTailBytes bounds the output kept per attempt.
const OutputTailBytes = 8 << 10

// maxCapture bounds the output parsed per step; a runaway build cannot
// exhaust memory, and its diagnostics are near the end anyway.
const maxCapture = 4 << 20

// Status is the outcome of a job.
type Status string

// Job outcomes.
const (
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded" // passed without help
	StatusHealed    Status = "healed"    // passed after remediation
	StatusFailed    Status = "failed"    // gave up; see Diagnosis
	StatusCanceled  Status = "canceled"
)

// Remediation records one applied (or refused) remediation.
type Remediation struct {
	Rule        string   `json:"rule"` // pack/id
	Action      string   `json:"action"`
	Description string   `json:"description"`
	Diff        string   `json:"diff,omitempty"`
	Files       []string `json:"files,omitempty"`
}

// Attempt is one build (and test) run plus what was done about its failure.
type Attempt struct {
	Number      int          `json:"number"`
	Phase       string       `json:"phase"` // build or test
	Step        string       `json:"step,omitempty"`
	ExitCode    int          `json:"exit_code"`
	Diagnostics []Diagnostic `json:"diagnostics,omitempty"`
	Fingerprint string       `json:"fingerprint,omitempty"`
	Remediation *Remediation `json:"remediation,omitempty"`
	OutputTail  string       `json:"output_tail,omitempty"`
	// BuildOutput and TestOutput are the tails of the build steps' and the
	// test and check steps' output, so a reviewer can compare a healed
	// run with the failed one.
	BuildOutput string        `json:"build_output,omitempty"`
	TestOutput  string        `json:"test_output,omitempty"`
	Started     time.Time     `json:"started"`
	Duration    time.Duration `json:"duration"`
}

// Job is the record of one run of a Spec.
type Job struct {
	ID        string    `json:"id"`
	Spec      Spec      `json:"spec"`
	Status    Status    `json:"status"`
	Diagnosis string    `json:"diagnosis,omitempty"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished,omitzero"`
	Attempts  int       `json:"attempts"`
	// BuildOutputBefore is the first attempt's build output; BuildOutputAfter
	// and TestOutputAfter are the last attempt's, set when a remediation was
	// applied, so what changed in behaviour can be reviewed.
	BuildOutputBefore string `json:"build_output_before,omitempty"`
	BuildOutputAfter  string `json:"build_output_after,omitempty"`
	TestOutputAfter   string `json:"test_output_after,omitempty"`
}

// Result is what Run returns.
type Result struct {
	Job
	AttemptLog []Attempt `json:"attempt_log"`
}

// Recorder persists jobs and attempts. RecordJob is called when a job starts
// and again when it ends; RecordAttempt after every attempt.
type Recorder interface {
	RecordJob(ctx context.Context, j Job) error
	RecordAttempt(ctx context.Context, jobID string, a Attempt) error
}

// EventKind says what an Event carries.
type EventKind string

// Event kinds.
const (
	EventStepStart   EventKind = "step-start"
	EventOutput      EventKind = "output"
	EventStepEnd     EventKind = "step-end"
	EventRemediation EventKind = "remediation"
	EventDone        EventKind = "done"
)

// Event is live progress for a UI or a log stream.
type Event struct {
	JobID   string    `json:"job_id"`
	Attempt int       `json:"attempt"`
	Kind    EventKind `json:"kind"`
	Step    string    `json:"step,omitempty"`
	Text    string    `json:"text,omitempty"`
	Time    time.Time `json:"time"`
}

// Options configures Run. The zero value works: embedded packs, no
// recording, backups under <spec.Dir>/.selfheal.
type Options struct {
	// Packs to choose from; nil means the embedded packs.
	Packs *PackSet
	// Recorder, if set, receives the job and every attempt.
	Recorder Recorder
	// Progress, if set, receives live events. It runs on the build's
	// goroutine and must not block.
	Progress func(Event)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MonoRoot is where mono's <ver>-api reference assemblies live.
	MonoRoot string
	// StateDir holds per-job backups for Revert. Default <spec.Dir>/.selfheal.
	StateDir string
	// JobID overrides the generated id.
	JobID string
	// Env is the base environment; nil means os.Environ().
	Env []string
	// RunAs, if set, is the user every step and remediation tool runs as;
	// the caller must be able to switch to it (root or CAP_SETUID/SETGID).
	RunAs *User
}

// User is a numeric user and group a job's processes run as.
type User struct {
	UID, GID uint32
}

// DefaultMonoRoot is Debian's and Ubuntu's mono prefix.
const DefaultMonoRoot = "/usr/lib/mono"

// NewJobID returns a random, sortable-enough job id.
func NewJobID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// Run executes spec until it passes, cannot be healed, or runs out of
// attempts. The error is non-nil only when the job could not be run at all
// (bad spec, unknown pack, unusable directory, recorder failure) or ctx was
// canceled; a build that stays broken is a Result with StatusFailed.
func Run(ctx context.Context, spec Spec, opts Options) (Result, error) {
	if spec.MaxAttempts == 0 {
		spec.MaxAttempts = DefaultMaxAttempts
	}
	if spec.Where == "" {
		spec.Where = WhereController
	}
	if err := spec.Validate(); err != nil {
		return Result{}, fmt.Errorf("job spec: %w", err)
	}
	if opts.RunAs != nil && !canSwitchUser {
		return Result{}, errors.New("job: running as another user is not supported on this platform")
	}
	dir, err := filepath.Abs(spec.Dir)
	if err != nil {
		return Result{}, fmt.Errorf("job dir: %w", err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return Result{}, fmt.Errorf("job dir %s is not a directory", dir)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return Result{}, fmt.Errorf("job dir: %w", err)
	}
	packs := opts.Packs
	if packs == nil {
		if packs, err = BuiltinPacks(); err != nil {
			return Result{}, err
		}
	}
	selected, err := packs.Select(spec.RulePacks)
	if err != nil {
		return Result{}, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	now := time.Now()
	job := Job{ID: opts.JobID, Spec: spec, Status: StatusRunning, Started: now}
	if job.ID == "" {
		job.ID = NewJobID(now)
	}
	log = log.With("job", job.ID, "name", spec.Name)
	stateDir := opts.StateDir
	if stateDir == "" {
		stateDir = filepath.Join(dir, ".selfheal")
	}
	jr, err := openJournal(stateDir, job.ID, realDir)
	if err != nil {
		return Result{}, err
	}
	baseEnv := opts.Env
	if baseEnv == nil {
		baseEnv = os.Environ()
	}
	for k, v := range spec.Env {
		baseEnv = append(baseEnv, k+"="+v)
	}
	monoRoot := opts.MonoRoot
	if monoRoot == "" {
		monoRoot = DefaultMonoRoot
	}
	e := &engine{
		job: job, spec: spec, packs: selected, rec: opts.Recorder, progress: opts.Progress, log: log,
		runAs: opts.RunAs,
		ws:    &workspace{dir: dir, realDir: realDir, monoRoot: monoRoot, journal: jr, env: map[string]string{}, baseEnv: baseEnv},
	}
	e.ws.runTool = func(ctx context.Context, argv, env []string) (string, int, error) {
		return e.runProcess(ctx, Step{Argv: argv}, env, "remediation")
	}
	return e.run(ctx)
}

type engine struct {
	job      Job
	spec     Spec
	packs    []*RulePack
	rec      Recorder
	progress func(Event)
	log      *slog.Logger
	ws       *workspace
	attempts []Attempt
	attempt  int
	runAs    *User
}

func (e *engine) emit(kind EventKind, step, text string) {
	if e.progress != nil {
		e.progress(Event{JobID: e.job.ID, Attempt: e.attempt, Kind: kind, Step: step, Text: text, Time: time.Now()})
	}
}

func (e *engine) run(ctx context.Context) (Result, error) {
	if e.rec != nil {
		if err := e.rec.RecordJob(ctx, e.job); err != nil {
			return Result{}, fmt.Errorf("record job: %w", err)
		}
	}
	var prevFP string
	var prevRemedy *Remediation
	tried := map[string]bool{} // rule+subject already applied
	healed := false
	for e.attempt = 1; ; e.attempt++ {
		a, ok, err := e.runAttempt(ctx)
		if err != nil {
			return e.finish(ctx, StatusCanceled, "canceled: "+err.Error(), err)
		}
		if ok {
			if err := e.record(ctx, a); err != nil {
				return Result{}, err
			}
			if healed {
				sum := e.healedSummary()
				if len(e.spec.Test) == 0 && len(e.spec.Checks) == 0 {
					sum += " (unverified: the job has no test step or check, so only the build is known to pass)"
				}
				return e.finish(ctx, StatusHealed, sum, nil)
			}
			return e.finish(ctx, StatusSucceeded, "", nil)
		}
		if a.Phase == "check" {
			if err := e.record(ctx, a); err != nil {
				return Result{}, err
			}
			msg := fmt.Sprintf("check %q failed (exit %d): the job's own check does not hold", a.Step, a.ExitCode)
			if healed {
				msg += " after " + strings.TrimPrefix(e.healedSummary(), "healed: ") + "; the build and tests pass but behaviour changed, so this is not a heal. Review the diff, and revert the job if the change is wrong"
			}
			return e.finish(ctx, StatusFailed, msg+".", nil)
		}
		if prevRemedy != nil && a.Fingerprint == prevFP {
			if err := e.record(ctx, a); err != nil {
				return Result{}, err
			}
			return e.finish(ctx, StatusFailed, fmt.Sprintf(
				"the same failure came back after %s (%s), so the job stopped instead of looping. %s",
				prevRemedy.Rule, prevRemedy.Description, e.describe(a)), nil)
		}
		if e.attempt >= e.spec.MaxAttempts {
			if err := e.record(ctx, a); err != nil {
				return Result{}, err
			}
			return e.finish(ctx, StatusFailed, fmt.Sprintf("gave up after %d attempts (max_attempts). %s", e.attempt, e.describe(a)), nil)
		}
		rem, stop := e.remediate(ctx, a, tried)
		a.Remediation = rem
		if err := e.record(ctx, a); err != nil {
			return Result{}, err
		}
		if stop != "" {
			return e.finish(ctx, StatusFailed, stop, nil)
		}
		healed = true
		prevFP, prevRemedy = a.Fingerprint, rem
	}
}

func (e *engine) healedSummary() string {
	var parts []string
	for _, a := range e.attempts {
		if a.Remediation != nil {
			parts = append(parts, a.Remediation.Rule+": "+a.Remediation.Description)
		}
	}
	return "healed: " + strings.Join(parts, "; ")
}

// describe summarises a failed attempt for a person.
func (e *engine) describe(a Attempt) string {
	var errs []string
	for _, d := range a.Diagnostics {
		if d.IsError() {
			errs = append(errs, d.String())
		}
		if len(errs) == 3 {
			break
		}
	}
	if len(errs) == 0 {
		return fmt.Sprintf("%s step %q exited %d without a recognised diagnostic; see the output tail.", a.Phase, a.Step, a.ExitCode)
	}
	more := ""
	if n := countErrors(a.Diagnostics); n > len(errs) {
		more = fmt.Sprintf(" (and %d more)", n-len(errs))
	}
	return fmt.Sprintf("%s step %q failed: %s%s", a.Phase, a.Step, strings.Join(errs, "; "), more)
}

func countErrors(ds []Diagnostic) int {
	n := 0
	for _, d := range ds {
		if d.IsError() {
			n++
		}
	}
	return n
}

// remediate picks the first rule, in pack and rule order, that matches any
// diagnostic and can act. It returns a non-empty stop reason when the job
// must end here.
func (e *engine) remediate(ctx context.Context, a Attempt, tried map[string]bool) (*Remediation, string) {
	var refused []string
	seen := map[string]bool{}
	refuse := func(msg string) {
		if !seen[msg] && len(refused) < maxRefusals {
			refused = append(refused, msg)
		}
		seen[msg] = true
	}
	withRefusals := func(msg string) string {
		if len(refused) > 0 {
			msg += " Rules that matched but refused: " + strings.Join(refused, "; ") + "."
		}
		return msg
	}
	for _, p := range e.packs {
		for i := range p.Rules {
			r := &p.Rules[i]
			for _, d := range a.Diagnostics {
				if !r.matches(d) {
					continue
				}
				name := p.Name + "/" + r.ID
				switch {
				case r.Action == ActionReport:
					return nil, withRefusals(r.expand(r.Report, d, p.Lookup) + " [rule " + name + "]")
				case !KnownAction(r.Action):
					refuse(fmt.Sprintf("rule %s asks for action %q, which is not in the safe set; not executed", name, r.Action))
					continue
				}
				key := name + "\x00" + d.Subject + "\x00" + d.File + "\x00" + d.Project
				if tried[key] {
					continue
				}
				ch, err := e.ws.apply(ctx, r, d)
				if err != nil {
					e.log.Info("remediation not applied", "rule", name, "err", err)
					what := d.Code
					if d.Subject != "" {
						what += " " + d.Subject
					}
					refuse(fmt.Sprintf("rule %s (%s) refused: %s", name, strings.TrimSpace(what), strings.TrimPrefix(err.Error(), errNotApplicable.Error()+": ")))
					continue
				}
				tried[key] = true
				rem := &Remediation{Rule: name, Action: r.Action, Description: ch.Description, Diff: ch.Diff, Files: ch.Files}
				e.log.Info("remediation applied", "rule", name, "what", ch.Description)
				e.emit(EventRemediation, "", name+": "+ch.Description)
				return rem, ""
			}
		}
	}
	if len(refused) > 0 {
		return nil, withRefusals("nothing was changed. " + e.describe(a))
	}
	return nil, "no rule can fix this. " + e.describe(a)
}

// wantsStale reports whether a selected rule answers stale build output,
// so the tree is only searched for it when something would act on it.
func (e *engine) wantsStale() bool {
	probe := Diagnostic{Tool: "msbuild", Code: "stale-output", Severity: "error"}
	for _, p := range e.packs {
		for i := range p.Rules {
			if r := &p.Rules[i]; r.re.code != nil && r.matches(probe) {
				return true
			}
		}
	}
	return false
}

// maxRefusals bounds the refusals a diagnosis lists.
const maxRefusals = 6

// runAttempt builds, then tests. ok reports success of both.
func (e *engine) runAttempt(ctx context.Context) (Attempt, bool, error) {
	a := Attempt{Number: e.attempt, Started: time.Now()}
	env := e.ws.environ()
	for _, phase := range []struct {
		name  string
		steps []Step
	}{{"build", e.spec.Build}, {"test", e.spec.Test}, {"check", e.spec.Checks}} {
		for _, st := range phase.steps {
			if e.ws.serial {
				st = serialStep(st)
			}
			a.Phase, a.Step = phase.name, st.String()
			out, code, err := e.runProcess(ctx, st, env, phase.name)
			a.ExitCode = code
			a.OutputTail = tail(out, OutputTailBytes)
			if phase.name == "build" {
				a.BuildOutput = tail(a.BuildOutput+out, OutputTailBytes)
			} else {
				a.TestOutput = tail(a.TestOutput+out, OutputTailBytes)
			}
			if err != nil {
				a.Duration = time.Since(a.Started)
				return a, false, err
			}
			if code != 0 {
				a.Diagnostics = ParseLog(out)
				if e.wantsStale() {
					if d, ok := e.ws.staleOutput(phase.name, a.BuildOutput); ok {
						a.Diagnostics = append([]Diagnostic{d}, a.Diagnostics...)
					}
				}
				a.Fingerprint = Fingerprint(a.Diagnostics)
				if countErrors(a.Diagnostics) == 0 {
					// Nothing parsed: the exit code and the last lines are the failure.
					a.Fingerprint = Fingerprint([]Diagnostic{{Tool: "exit", Severity: "error", Line: code, Message: tail(out, 512)}})
				}
				a.Duration = time.Since(a.Started)
				return a, false, nil
			}
		}
	}
	switch {
	case len(e.spec.Checks) > 0:
		a.Phase = "check"
	case len(e.spec.Test) > 0:
		a.Phase = "test"
	default:
		a.Phase = "build"
	}
	a.Duration = time.Since(a.Started)
	return a, true, nil
}

func (e *engine) record(ctx context.Context, a Attempt) error {
	e.attempts = append(e.attempts, a)
	e.job.Attempts = len(e.attempts)
	if e.rec == nil {
		return nil
	}
	if err := e.rec.RecordAttempt(ctx, e.job.ID, a); err != nil {
		return fmt.Errorf("record attempt %d: %w", a.Number, err)
	}
	return nil
}

func (e *engine) finish(ctx context.Context, st Status, diagnosis string, cause error) (Result, error) {
	e.job.Status = st
	e.job.Diagnosis = diagnosis
	e.job.Finished = time.Now()
	e.job.Attempts = len(e.attempts)
	if n := len(e.attempts); n > 0 {
		e.job.BuildOutputBefore = e.attempts[0].BuildOutput
		if n > 1 {
			e.job.BuildOutputAfter = e.attempts[n-1].BuildOutput
			e.job.TestOutputAfter = e.attempts[n-1].TestOutput
		}
	}
	e.emit(EventDone, "", string(st)+": "+diagnosis)
	e.log.Info("job finished", "status", st, "attempts", e.job.Attempts, "diagnosis", diagnosis)
	res := Result{Job: e.job, AttemptLog: e.attempts}
	if e.rec != nil {
		// Record the end even when ctx is canceled, so the job is not left "running".
		rctx := context.WithoutCancel(ctx)
		if err := e.rec.RecordJob(rctx, e.job); err != nil {
			return res, errors.Join(cause, fmt.Errorf("record job: %w", err))
		}
	}
	return res, cause
}
