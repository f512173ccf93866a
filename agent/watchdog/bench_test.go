package watchdog

import (
	"context"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/testsupport"
)

// BenchmarkCheck is one poll of an 8-GPU rig with healthy readings: the
// watchdog's steady-state cost on the agent.
func BenchmarkCheck(b *testing.B) {
	clock := testsupport.NewClock(time.Unix(0, 0))
	src := &script{r: stats(1000, 1)}
	src.r.gpus = gpus(60, 61, 62, 63, 64, 65, 66, 67)
	w, err := New(Config{}, Deps{Stats: src, GPUs: src, Miner: &calls{}, Clock: clock, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	w.MinerStarted(1000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		clock.Advance(10 * time.Second)
		src.r.stats.Accepted++
		if acts := w.Check(ctx); len(acts) != 0 {
			b.Fatal(acts)
		}
	}
}

// BenchmarkObserveLogLine is the cost added to each miner log line.
func BenchmarkObserveLogLine(b *testing.B) {
	w, err := New(Config{}, Deps{Miner: &calls{}, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	line := "[2026-11-29 21:00:00.000]  miner    speed 10s/60s/15m 13321.0 13290.4 n/a H/s max 13400.2 H/s"
	b.ReportAllocs()
	for b.Loop() {
		w.ObserveLogLine(line)
	}
}
