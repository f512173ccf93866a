package quarryv1

// MeasuredPowerW is a rig's measured power draw in watts: every GPU that
// reports power and is not lost, plus the CPU package (RAPL, or the
// agent's configured figure). ok is false when nothing reported power, so
// missing telemetry is never taken for a rig drawing nothing. It is the
// one power sum: billing meters it, the learner attributes it, the
// dashboard and /metrics show it.
func MeasuredPowerW(gpus []*GPUStats, host *HostStats) (watts float64, ok bool) {
	for _, g := range gpus {
		if g.PowerW != nil && !g.Lost {
			watts += *g.PowerW
			ok = true
		}
	}
	if host != nil && host.CpuPowerW != nil {
		watts += *host.CpuPowerW
		ok = true
	}
	return watts, ok
}

// MeasuredPowerW is the report's power draw (see MeasuredPowerW).
func (r *Report) MeasuredPowerW() (watts float64, ok bool) {
	return MeasuredPowerW(r.GetGpus(), r.GetHost())
}

// MeasuredPowerW is the rig's latest power draw (see MeasuredPowerW).
func (r *Rig) MeasuredPowerW() (watts float64, ok bool) {
	return MeasuredPowerW(r.GetGpus(), r.GetHost())
}
