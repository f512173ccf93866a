package agentd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/quarryfleet/quarry/agent/miner"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
)

// benchmarkCommand runs COMMAND_KIND_BENCHMARK. The miner runs each sheet
// in turn and is then put back to the sheet it ran before (or stopped).
// The command fails only when no run produced a hashrate.
func (m *Miners) benchmarkCommand(ctx context.Context, payload []byte) ([]byte, error) {
	var p flightsheet.BenchmarkPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("benchmark: bad payload: %w", err)
	}
	d := time.Duration(p.DurationSeconds) * time.Second
	if d <= 0 || d > maxBenchmarkPerRun {
		return nil, fmt.Errorf("benchmark: duration %s: want 1s to %s", d, maxBenchmarkPerRun)
	}
	if len(p.Runs) == 0 {
		return nil, errors.New("benchmark: no algorithms to run")
	}
	sheets := make([]*flightsheet.FlightSheet, len(p.Runs))
	for i, r := range p.Runs {
		s, err := m.prepare(ctx, []byte(r.Sheet))
		if err != nil {
			return nil, fmt.Errorf("benchmark %s: refused: %w", r.Algorithm, err)
		}
		sheets[i] = s
	}

	prev, _ := m.active()
	prevRunning := prev != nil && m.sup.Status().State != miner.StateIdle
	defer m.restoreAfterBenchmark(ctx, prev, prevRunning)

	results := make([]flightsheet.BenchmarkResult, 0, len(p.Runs))
	ok := false
	for i, r := range p.Runs {
		res := m.benchmarkOne(ctx, r.Algorithm, sheets[i], d)
		if res.Samples > 0 {
			ok = true
		}
		results = append(results, res)
		if ctx.Err() != nil {
			break
		}
	}
	out, err := json.Marshal(results)
	if err != nil {
		return nil, err
	}
	if !ok {
		return out, errors.New("benchmark: no run produced a hashrate reading")
	}
	return out, nil
}

func (m *Miners) benchmarkOne(ctx context.Context, algo string, sheet *flightsheet.FlightSheet, d time.Duration) flightsheet.BenchmarkResult {
	res := flightsheet.BenchmarkResult{Algorithm: algo, Sheet: sheet.Name}
	if algo == "" {
		res.Algorithm = sheet.Algorithm
	}
	m.event("benchmark_started", fmt.Sprintf("benchmarking %s with %s for %s", res.Algorithm, sheet.Name, d), map[string]string{"algorithm": res.Algorithm, "sheet": sheet.Name})
	m.setActive(sheet)
	if err := m.sup.Start(ctx, sheet); err != nil {
		res.Error = err.Error()
		return res
	}
	start := time.Now()
	every := min(max(d/30, 200*time.Millisecond), 5*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	var hashSum, powerSum float64
	var lastPower time.Time
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			res.Error = ctx.Err().Error()
			done = true
			continue
		case <-deadline.C:
			done = true
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, statsTimeout)
		st, err := statsSource{m}.Stats(sctx)
		cancel()
		if err == nil && st.TotalHashrate > 0 {
			hashSum += st.TotalHashrate
			res.Samples++
		}
		m.mu.Lock()
		if m.power != nil && m.powerAt.After(start) && m.powerAt.After(lastPower) {
			powerSum += *m.power
			res.PowerSamples++
			lastPower = m.powerAt
		}
		m.mu.Unlock()
	}
	if res.Samples > 0 {
		res.HashrateHs = hashSum / float64(res.Samples)
	} else if res.Error == "" {
		res.Error = "the miner's stats API gave no hashrate during the run"
	}
	if res.PowerSamples > 0 {
		avg := powerSum / float64(res.PowerSamples)
		res.PowerW = &avg
	}
	m.event("benchmark_finished", fmt.Sprintf("benchmark %s: %s over %d readings", res.Algorithm, flightsheet.Hashrate(res.HashrateHs), res.Samples),
		map[string]string{"algorithm": res.Algorithm, "sheet": sheet.Name})
	return res
}

// restoreAfterBenchmark puts the miner back to what it ran before the
// benchmark, even when the command was cut short.
func (m *Miners) restoreAfterBenchmark(ctx context.Context, prev *flightsheet.FlightSheet, running bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if prev == nil || !running {
		if err := m.sup.Stop(ctx); err != nil {
			m.log.Error("stop miner after benchmark", "err", err)
		}
		if prev != nil {
			m.setActive(prev)
		} else {
			m.mu.Lock()
			m.sheet, m.adapter = nil, nil
			m.mu.Unlock()
		}
		return
	}
	m.setActive(prev)
	if err := m.sup.Start(ctx, prev); err != nil {
		m.log.Error("resume flight sheet after benchmark", "sheet", prev.Name, "err", err)
	}
}
