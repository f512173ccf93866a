package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/quarryfleet/quarry/pkg/selfheal"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Job returns a job with every run's attempts.
func (m *Manager) Job(ctx context.Context, id string) (*quarryv1.BuildJob, error) {
	rec, err := m.ix.get(id)
	if err != nil {
		return nil, err
	}
	return m.view(ctx, rec, true)
}

// List returns up to limit jobs, newest first, without attempt logs.
func (m *Manager) List(ctx context.Context, limit int) ([]*quarryv1.BuildJob, error) {
	if limit <= 0 {
		limit = 100
	}
	recs, err := m.ix.list(limit)
	if err != nil {
		return nil, err
	}
	out := make([]*quarryv1.BuildJob, 0, len(recs))
	for _, rec := range recs {
		j, err := m.view(ctx, rec, false)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

func (m *Manager) view(ctx context.Context, rec *record, attempts bool) (*quarryv1.BuildJob, error) {
	j := &quarryv1.BuildJob{
		Id: rec.ID, Name: rec.Name, Where: rec.Where, Status: rec.status(), Diagnosis: rec.diagnosis(),
		CreatedBy: rec.CreatedBy, StartedUnixNano: unixNano(rec.Started), FinishedUnixNano: unixNano(rec.Finished),
		SpecYaml: rec.SpecYAML,
	}
	for _, ru := range rec.Runs {
		r := &quarryv1.JobRun{
			Target: ru.Target, RigId: ru.RigID, CommandId: ru.CommandID, Status: ru.Status, Diagnosis: ru.Diagnosis,
			Error: ru.Error, StartedUnixNano: unixNano(ru.Started), FinishedUnixNano: unixNano(ru.Finished),
		}
		sj, as, err := m.rec.Load(ctx, ru.RecordID)
		switch {
		case errors.Is(err, selfheal.ErrJobNotFound):
		case err != nil:
			return nil, err
		default:
			r.Attempts = int32(len(as))
			if r.Diagnosis == "" {
				r.Diagnosis = sj.Diagnosis
			}
			if attempts {
				for _, a := range as {
					r.AttemptLog = append(r.AttemptLog, toAttempt(a))
				}
			}
		}
		j.Runs = append(j.Runs, r)
	}
	return j, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func toAttempt(a selfheal.Attempt) *quarryv1.JobAttempt {
	out := &quarryv1.JobAttempt{
		Number: int32(a.Number), Phase: a.Phase, Step: a.Step, ExitCode: int32(a.ExitCode), Fingerprint: a.Fingerprint,
		OutputTail: a.OutputTail, StartedUnixNano: unixNano(a.Started), DurationMs: a.Duration.Milliseconds(),
	}
	for _, d := range a.Diagnostics {
		out.Diagnostics = append(out.Diagnostics, &quarryv1.JobDiagnostic{
			Tool: d.Tool, File: d.File, Line: int32(d.Line), Col: int32(d.Col), Code: d.Code, Severity: d.Severity,
			Message: d.Message, Project: d.Project, Subject: d.Subject,
		})
	}
	if r := a.Remediation; r != nil {
		out.Remediation = &quarryv1.JobRemediation{Rule: r.Rule, Action: r.Action, Description: r.Description, Diff: r.Diff, Files: r.Files}
	}
	return out
}

// Logs returns the job's output: the controller's full build log for
// controller runs, each attempt's output tail for rig runs. Only the last
// maxBytes are kept (0 means 1 MiB).
func (m *Manager) Logs(ctx context.Context, id string, maxBytes int) (string, bool, error) {
	if maxBytes <= 0 {
		maxBytes = 1 << 20
	}
	rec, err := m.ix.get(id)
	if err != nil {
		return "", false, err
	}
	var b strings.Builder
	for _, ru := range rec.Runs {
		if ru.RigID == "" {
			data, err := os.ReadFile(m.logPath(id))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", false, fmt.Errorf("job log: %w", err)
			}
			b.Write(data)
			continue
		}
		fmt.Fprintf(&b, "=== rig %s (%s): %s\n", ru.Target, ru.RigID, ru.Status)
		_, as, err := m.rec.Load(ctx, ru.RecordID)
		if err != nil && !errors.Is(err, selfheal.ErrJobNotFound) {
			return "", false, err
		}
		for _, a := range as {
			fmt.Fprintf(&b, "--- attempt %d, %s: $ %s (exit %d)\n", a.Number, a.Phase, a.Step, a.ExitCode)
			b.WriteString(a.OutputTail)
			if !strings.HasSuffix(a.OutputTail, "\n") && a.OutputTail != "" {
				b.WriteString("\n")
			}
			if a.Remediation != nil {
				fmt.Fprintf(&b, ">>> remediation: %s: %s\n", a.Remediation.Rule, a.Remediation.Description)
			}
		}
		if ru.Error != "" {
			fmt.Fprintf(&b, "error: %s\n", ru.Error)
		}
	}
	s := b.String()
	if len(s) > maxBytes {
		return s[len(s)-maxBytes:], true, nil
	}
	return s, false, nil
}

func fromEvent(e selfheal.Event, target string) *quarryv1.JobEvent {
	return &quarryv1.JobEvent{
		Target: target, Attempt: int32(e.Attempt), Kind: string(e.Kind), Step: e.Step, Text: e.Text, TimeUnixNano: e.Time.UnixNano(),
	}
}

// attemptEvent summarises a rig's attempt, which arrives only with the
// rig's result.
func attemptEvent(target string, a selfheal.Attempt) *quarryv1.JobEvent {
	text := fmt.Sprintf("attempt %d: %s step %q exited %d", a.Number, a.Phase, a.Step, a.ExitCode)
	if a.Remediation != nil {
		text += "; remediation " + a.Remediation.Rule + ": " + a.Remediation.Description
	}
	return &quarryv1.JobEvent{Target: target, Attempt: int32(a.Number), Kind: "attempt", Step: a.Step, Text: text}
}
