package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// slowHandler blocks each command until released and counts runs.
type slowHandler struct {
	runs    atomic.Int32
	started chan struct{}
	release chan struct{}
}

func (h *slowHandler) HandleCommand(ctx context.Context, _ *quarryv1.Command) ([]byte, error) {
	h.runs.Add(1)
	h.started <- struct{}{}
	select {
	case <-h.release:
		return []byte("done"), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A command keeps running when the controller goes away mid-command, runs
// once although the controller redelivers it, and its result reaches the
// restarted controller.
func TestCommandOutlivesControllerRestart(t *testing.T) {
	tc := startTestController(t, nil)
	a := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	h := &slowHandler{started: make(chan struct{}, 4), release: make(chan struct{})}
	a.run(t, tc, h)
	rig := a.id.RigID()
	eventually(t, "online", func() bool { return tc.Fleet().Online(rig) })
	rec, err := tc.Fleet().QueueCommand(rig, quarryv1.CommandKind_COMMAND_KIND_RESTART_MINER, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	<-h.started
	// The controller timed the command from its queueing to its stream.
	eventually(t, "command send timed", func() bool { st := tc.Fleet().Stats(); return st.CommandSendLatency.Count() == 1 })
	tc.stop()
	var streams agentStreams
	tc2 := restartController(t, tc, streams.options()...)
	eventually(t, "agent back", func() bool { return tc2.Fleet().Online(rig) })
	// The redelivery goes out while the command still runs on the rig.
	eventually(t, "command redelivered", func() bool { return streams.timesSent(rec.Command.Id) >= 1 })
	close(h.release)
	eventually(t, "result recorded", func() bool {
		r, err := tc2.Fleet().Command(rec.Command.Id)
		return err == nil && r.Status == quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED && string(r.Output) == "done"
	})
	if n := h.runs.Load(); n != 1 {
		t.Fatalf("command ran %d times", n)
	}
}
