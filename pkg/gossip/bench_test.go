package gossip

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Benchmark sizes come from the environment so the long runs are opt-in:
//
//	GOSSIP_BENCH_NODES=10,50,200  cluster sizes (default 10,50)
//	GOSSIP_BENCH_PROFILES=lan,tuned
//	GOSSIP_BENCH_LOSS_NODES=8 GOSSIP_BENCH_LOSS_SECONDS=30
//
// Run with -benchtime=3x: each iteration kills a node and waits for the
// failure to be detected.
func benchSizes(b *testing.B) []int {
	spec := os.Getenv("GOSSIP_BENCH_NODES")
	if spec == "" {
		spec = "10,50"
	}
	var out []int
	for f := range strings.SplitSeq(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 3 {
			b.Fatalf("GOSSIP_BENCH_NODES: bad size %q", f)
		}
		out = append(out, n)
	}
	return out
}

func benchProfiles() []Profile {
	spec := os.Getenv("GOSSIP_BENCH_PROFILES")
	if spec == "" {
		return []Profile{ProfileLAN, ProfileTuned}
	}
	var out []Profile
	for f := range strings.SplitSeq(spec, ",") {
		out = append(out, Profile(strings.TrimSpace(f)))
	}
	return out
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// failWatch records when the observer learns of each failure.
type failWatch struct {
	mu     sync.Mutex
	failed map[string]time.Time
}

func (w *failWatch) HandleMember(e MemberEvent) {
	if e.Type != MemberFailed {
		return
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range e.Members {
		if _, ok := w.failed[m.Name]; !ok {
			w.failed[m.Name] = now
		}
	}
}

func (w *failWatch) at(name string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.failed[name]
	return t, ok
}

func startBenchCluster(b *testing.B, n int, profile Profile, keys testKeys) []*testNode {
	b.Helper()
	nodes := make([]*testNode, n)
	for i := range n {
		nodes[i] = startNode(b, nodeName("b", i), keys, func(c *Config) {
			c.Profile, c.Timings = profile, nil
			// Quick leaves keep teardown of big clusters short; they do
			// not affect detection.
			c.Timings = &Timings{LeavePropagateDelay: 10 * time.Millisecond, BroadcastTimeout: 500 * time.Millisecond}
			if i == 0 {
				c.SigningKey = keys.priv
			}
		})
	}
	// Runs before the per-node cleanups: a crash-stop of every node at once
	// is far cheaper than hundreds of sequential graceful leaves.
	b.Cleanup(func() {
		var wg sync.WaitGroup
		for _, nd := range nodes {
			wg.Go(func() { kill(nd.Node) })
		}
		wg.Wait()
	})
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Joining through different seeds spreads the push/pull load that
	// would otherwise pile onto node 0.
	for i, nd := range nodes[1:] {
		if _, err := nd.Join(ctx, nodes[i/2].Addr().String()); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, 3*time.Minute, "cluster converges", func() bool {
		for _, nd := range nodes {
			if nd.NumAlive() != n {
				return false
			}
		}
		return true
	})
	b.Logf("%d nodes (%s) converged in %s", n, profile, time.Since(start).Round(time.Millisecond))
	return nodes
}

// BenchmarkFailureDetection measures the time from a node's crash (shutdown
// without leave) to the observer's "failed" event.
func BenchmarkFailureDetection(b *testing.B) {
	for _, profile := range benchProfiles() {
		for _, n := range benchSizes(b) {
			b.Run(fmt.Sprintf("%s/nodes=%d", profile, n), func(b *testing.B) {
				keys := newTestKeys(b)
				nodes := startBenchCluster(b, n, profile, keys)
				watch := &failWatch{failed: map[string]time.Time{}}
				nodes[0].HandleMembers(watch)
				var total, worst time.Duration
				b.ResetTimer()
				for i := range b.N {
					if 1+i >= n {
						b.Fatalf("more iterations (%d) than nodes to kill; use -benchtime=3x", b.N)
					}
					victim := nodes[1+i]
					start := time.Now()
					kill(victim.Node)
					waitFor(b, 5*time.Minute, "failure detected", func() bool {
						_, ok := watch.at(victim.Name())
						return ok
					})
					at, _ := watch.at(victim.Name())
					d := at.Sub(start)
					total += d
					worst = max(worst, d)
				}
				b.StopTimer()
				b.ReportMetric(total.Seconds()/float64(b.N), "s/detect")
				b.ReportMetric(worst.Seconds(), "s/worst")
			})
		}
	}
}

// BenchmarkEventPropagation measures a signed fleet event's trip from the
// controller to every agent's handler.
func BenchmarkEventPropagation(b *testing.B) {
	for _, n := range benchSizes(b) {
		b.Run(fmt.Sprintf("tuned/nodes=%d", n), func(b *testing.B) {
			keys := newTestKeys(b)
			nodes := startBenchCluster(b, n, ProfileTuned, keys)
			ctx := context.Background()
			b.ResetTimer()
			var total time.Duration
			for i := range b.N {
				start := time.Now()
				id, err := nodes[0].Broadcast(ctx, "pause", "role=agent", nil)
				if err != nil {
					b.Fatal(err)
				}
				waitFor(b, time.Minute, "event reaches all agents", func() bool {
					for _, nd := range nodes[1:] {
						evs := nd.rec.fleetEvents()
						if len(evs) <= i || evs[i].IDString() != id {
							return false
						}
					}
					return true
				})
				total += time.Since(start)
			}
			b.StopTimer()
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/all-agents")
		})
	}
}

// BenchmarkFalsePositivesUnderLoss runs the tuned profile in network
// namespaces with 5% loss on every link (20 ms delay where netem exists) and
// counts "failed" events, all of which are false: no node dies.
func BenchmarkFalsePositivesUnderLoss(b *testing.B) {
	requireNetns(b)
	n := envInt("GOSSIP_BENCH_LOSS_NODES", 8)
	dur := time.Duration(envInt("GOSSIP_BENCH_LOSS_SECONDS", 30)) * time.Second
	key, err := GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	bin := gossipnodeBinary(b)
	var all []string
	for i := range n {
		all = append(all, nodeName("n", i))
	}
	falseFailed := 0
	dropped := 0
	for range b.N {
		lab := newNetLab(b, n, 5, 20*time.Millisecond)
		lab.startNodes(bin, key, "-profile", "tuned")
		waitFor(b, time.Minute, "lossy cluster converges", func() bool {
			for _, p := range lab.procs {
				if !p.seesAlive(all...) {
					return false
				}
			}
			return true
		})
		time.Sleep(dur) // the soak itself: count what happens in this window
		for _, p := range lab.procs {
			for _, f := range p.failures() {
				if slices.Contains(all, f.Member) {
					falseFailed++
				}
			}
		}
		dropped += lab.dropped()
		lab.destroy()
	}
	b.ReportMetric(float64(falseFailed)/float64(b.N), "false-failed/run")
	b.ReportMetric(float64(dropped)/float64(b.N), "dropped-pkts/run")
	b.ReportMetric(float64(n), "nodes")
	b.ReportMetric(dur.Seconds(), "soak-s")
}
