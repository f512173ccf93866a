package flightsheet

// The BENCHMARK command's wire format, shared by the controller that sends
// it and the agent that runs it.

// BenchmarkPayload is the command's payload: each run mines with its
// flight sheet for DurationSeconds.
type BenchmarkPayload struct {
	DurationSeconds int64          `json:"duration_seconds"`
	Runs            []BenchmarkRun `json:"runs"`
}

// BenchmarkRun is one algorithm to measure.
type BenchmarkRun struct {
	Algorithm string `json:"algorithm"`
	Sheet     string `json:"sheet"` // flight sheet YAML
}

// BenchmarkResult is one run's measurement; the command's output is a JSON
// list of them. HashrateHs averages the readings the miner's stats API gave
// with a hashrate; PowerW averages the rig's total GPU power over the run
// and is absent when telemetry has no power reading.
type BenchmarkResult struct {
	Algorithm    string   `json:"algorithm"`
	Sheet        string   `json:"sheet"`
	HashrateHs   float64  `json:"hashrate_hs"`
	PowerW       *float64 `json:"power_w,omitempty"`
	Samples      int      `json:"samples"`
	PowerSamples int      `json:"power_samples"`
	Error        string   `json:"error,omitempty"`
}
