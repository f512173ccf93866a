package quarryv1

// MeasuredPowerW is the rig's measured power draw in watts: every GPU that
// reports power, plus the CPU package (RAPL, or the agent's configured
// figure). ok is false when nothing reported power.
func (r *Report) MeasuredPowerW() (watts float64, ok bool) {
	for _, g := range r.GetGpus() {
		if g.PowerW != nil && !g.Lost {
			watts += *g.PowerW
			ok = true
		}
	}
	if h := r.GetHost(); h != nil && h.CpuPowerW != nil {
		watts += *h.CpuPowerW
		ok = true
	}
	return watts, ok
}
