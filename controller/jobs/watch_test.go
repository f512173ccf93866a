package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// TestWatchDeliversEachEventOnce: a watcher that subscribes while the job
// is publishing gets every event exactly once and in order, ending with
// job-done. The backlog snapshot and the live subscription are taken under
// the same lock publish holds, so an event published between them is in
// exactly one of the two; this is what lets `quarryctl job run --follow`
// print each line once.
func TestWatchDeliversEachEventOnce(t *testing.T) {
	m := openWatchManager(t)

	const id = "job-watch-once"
	// Fewer events than the replay window and the watcher's buffer hold,
	// so any loss or repeat is the watch's doing, not a slow watcher's.
	const lines = recentEvents - 12
	if err := m.ix.put(&record{ID: id, Where: TargetController, Started: time.Now(), Runs: []run{{Target: TargetController, Status: StatusRunning}}}); err != nil {
		t.Fatal(err)
	}
	a := m.track(id)

	// Watchers join at different points of the job, several while lines
	// are being published.
	joinAt := []int{0, 1, lines / 4, lines / 2, lines / 2, lines - 1}
	join := make([]chan struct{}, len(joinAt))
	var wg sync.WaitGroup
	got := make([][]string, len(joinAt))
	errs := make([]error, len(joinAt))
	for w := range joinAt {
		join[w] = make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Subscribe once line joinAt[w] is out, while the publisher
			// keeps going.
			<-join[w]
			errs[w] = m.Watch(t.Context(), id, func(e *quarryv1.JobEvent) error {
				got[w] = append(got[w], e.Kind+" "+e.Text)
				return nil
			})
		}()
	}
	subscribed := func() int {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.subs)
	}
	go func() {
		for i := range lines {
			a.publish(&quarryv1.JobEvent{Kind: "output", Text: fmt.Sprintf("line %d", i)})
			for w, at := range joinAt {
				if at == i {
					close(join[w])
				}
			}
		}
		// The job ends only once every watcher is in: one that came later
		// would be watching a finished job, which is its job-done alone.
		for subscribed() < len(joinAt) {
			time.Sleep(time.Millisecond)
		}
		m.untrack(id, a)
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("watchers did not end after job-done")
	}

	for w := range joinAt {
		if errs[w] != nil {
			t.Errorf("watcher %d: %v", w, errs[w])
			continue
		}
		evs := got[w]
		if len(evs) != lines+1 {
			t.Errorf("watcher %d (joined after line %d) got %d events, want %d", w, joinAt[w], len(evs), lines+1)
		}
		for i := 0; i < lines && i < len(evs); i++ {
			if want := fmt.Sprintf("output line %d", i); evs[i] != want {
				t.Errorf("watcher %d event %d = %q, want %q", w, i, evs[i], want)
				break
			}
		}
		if len(evs) > 0 && evs[len(evs)-1][:len("job-done")] != "job-done" {
			t.Errorf("watcher %d ended with %q, want job-done", w, evs[len(evs)-1])
		}
	}
	if a.dropped != 0 {
		t.Errorf("%d events dropped for slow watchers", a.dropped)
	}
}

// A job that has ended is watched as its job-done event alone.
func TestWatchFinishedJobIsOneEvent(t *testing.T) {
	m := openWatchManager(t)
	const id = "job-done-before"
	if err := m.ix.put(&record{ID: id, Where: TargetController, Started: time.Now(), Runs: []run{{Target: TargetController, Status: "succeeded"}}}); err != nil {
		t.Fatal(err)
	}
	var evs []*quarryv1.JobEvent
	if err := m.Watch(context.Background(), id, func(e *quarryv1.JobEvent) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != "job-done" || evs[0].Text != "succeeded" {
		t.Errorf("events %v, want one job-done succeeded", evs)
	}
}

// openWatchManager opens a job manager on a fresh database that is
// integrity-checked when the test ends.
func openWatchManager(t *testing.T) *Manager {
	t.Helper()
	db := testsupport.OpenStore(t, filepath.Join(t.TempDir(), "quarry.db"))
	m, err := Open(db, nil, Options{Config: DefaultConfig(), DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}
