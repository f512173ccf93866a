package jobs

import "github.com/quarryfleet/quarry/pkg/selfheal"

// RUN_JOB payload operations.
const (
	OpRun    = "run"
	OpRevert = "revert"
)

// RunJobPayload is the JSON payload of a COMMAND_KIND_RUN_JOB command. For
// OpRun the rig answers with a selfheal.Result as JSON; for OpRevert with a
// RevertResult. The agent decodes the same JSON with its own type, since it
// must not link controller packages.
type RunJobPayload struct {
	Op    string        `json:"op"`
	JobID string        `json:"job_id"`
	Spec  selfheal.Spec `json:"spec,omitzero"`
}

// RevertResult is a rig's answer to OpRevert.
type RevertResult struct {
	Restored []string `json:"restored"`
}
