package gossip

import (
	"slices"
	"testing"
	"time"
)

// TestPartitionHeal cuts two of six nodes off a lossy network (5% loss,
// 20 ms delay on every link) with the tuned profile, then heals it.
func TestPartitionHeal(t *testing.T) {
	requireNetns(t)
	const n = 6
	lab := newNetLab(t, n, 5, 20*time.Millisecond)
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	lab.startNodes(gossipnodeBinary(t), key, "-profile", "tuned", "-reconnect", "1s")

	var all, majority, minority []string
	for i := range n {
		all = append(all, nodeName("n", i))
	}
	majority, minority = all[:4], all[4:]
	procs := lab.procs
	waitFor(t, 30*time.Second, "all six nodes see each other", func() bool {
		for _, p := range procs {
			if !p.seesAlive(all...) {
				return false
			}
		}
		return true
	})

	cutAt := time.Now()
	lab.cut(4, 5)
	waitFor(t, 20*time.Second, "the majority marks the cut-off nodes failed", func() bool {
		for _, p := range procs[:4] {
			for _, m := range minority {
				if !p.seesFailed(m) {
					return false
				}
			}
		}
		return true
	})
	waitFor(t, 20*time.Second, "the minority marks the majority failed", func() bool {
		for _, p := range procs[4:] {
			for _, m := range majority {
				if !p.seesFailed(m) {
					return false
				}
			}
		}
		return true
	})

	// Heal at once. The cut-off side's still-queued "dead" verdicts reach
	// the majority, and memberlist accepts them at face value until the
	// healthy members refute them a few gossip rounds later; the node's
	// FailureGrace must keep that flap from being reported as a failure.
	healAt := time.Now()
	lab.heal(4, 5)
	waitFor(t, 60*time.Second, "every node sees all six alive after healing", func() bool {
		for _, p := range procs {
			if !p.seesAlive(all...) {
				return false
			}
		}
		return true
	})

	if lab.warned && lab.dropped() == 0 {
		t.Error("the loss rules dropped nothing; the test ran on a clean network")
	}
	t.Logf("packets dropped by the loss rules: %d", lab.dropped())

	// Healthy nodes on the same side were never declared failed, despite
	// the loss.
	for i, p := range procs {
		side := majority
		if i >= 4 {
			side = minority
		}
		for _, f := range p.failures() {
			if slices.Contains(side, f.Member) {
				at := time.Unix(0, f.At)
				t.Errorf("%s falsely reported %s (same side, healthy) failed %s after the cut, %s after healing",
					p.name, f.Member, at.Sub(cutAt).Round(time.Millisecond), at.Sub(healAt).Round(time.Millisecond))
			}
		}
	}
}
