package agentd

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/quarryfleet/quarry/pkg/selfheal"
)

// runJobPayload is the controller's RUN_JOB command payload (the same JSON
// as the controller's jobs.RunJobPayload; the agent does not link
// controller packages).
type runJobPayload struct {
	Op    string        `json:"op"`
	JobID string        `json:"job_id"`
	Spec  selfheal.Spec `json:"spec"`
}

// jobStateDir keeps the backups of files rig jobs edited, for revert.
func (a *Agent) jobStateDir() string { return filepath.Join(a.cfg.DataDir, "jobs") }

// runJob handles COMMAND_KIND_RUN_JOB: op "run" builds and heals the job
// with the embedded rule packs and answers with the selfheal.Result as
// JSON; op "revert" undoes a job's edits and answers with the restored
// paths. A result is returned even when the job failed, so the controller
// can show its attempts.
func (a *Agent) runJob(ctx context.Context, payload []byte) ([]byte, error) {
	var p runJobPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("run job: bad payload: %w", err)
	}
	if p.JobID == "" {
		return nil, fmt.Errorf("run job: payload has no job id")
	}
	switch p.Op {
	case "run":
		rec, err := selfheal.NewBoltRecorder(a.db)
		if err != nil {
			return nil, err
		}
		res, err := selfheal.Run(ctx, p.Spec, selfheal.Options{
			Recorder: rec,
			Logger:   a.log,
			StateDir: a.jobStateDir(),
			JobID:    p.JobID,
		})
		if res.Status == "" {
			// The job could not start at all (bad spec, missing dir, unknown pack).
			return nil, fmt.Errorf("run job %s: %w", p.JobID, err)
		}
		out, merr := json.Marshal(res)
		if merr != nil {
			return nil, fmt.Errorf("run job %s: encode result: %w", p.JobID, merr)
		}
		return out, err
	case "revert":
		restored, err := selfheal.Revert(ctx, a.jobStateDir(), p.JobID)
		out, merr := json.Marshal(struct {
			Restored []string `json:"restored"`
		}{restored})
		if merr != nil {
			return nil, merr
		}
		return out, err
	default:
		return nil, fmt.Errorf("run job: unknown op %q (want run or revert)", p.Op)
	}
}
