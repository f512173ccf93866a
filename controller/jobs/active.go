package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// active is a job that is running or being followed: its cancel function,
// its watchers and its log file.
type active struct {
	id     string
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}

	mu      sync.Mutex
	recent  []*quarryv1.JobEvent
	subs    map[chan *quarryv1.JobEvent]struct{}
	logf    *os.File
	logN    int
	dropped int
}

func (m *Manager) track(id string) *active {
	ctx, cancel := context.WithCancelCause(m.ctx)
	a := &active{id: id, ctx: ctx, cancel: cancel, done: make(chan struct{}), subs: map[chan *quarryv1.JobEvent]struct{}{}}
	f, err := os.OpenFile(m.logPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		m.log.Warn("job log", "job", id, "err", err)
	} else {
		a.logf = f
		if st, err := f.Stat(); err == nil {
			a.logN = int(st.Size())
		}
	}
	m.mu.Lock()
	m.active[id] = a
	m.mu.Unlock()
	return a
}

func (m *Manager) logPath(id string) string { return filepath.Join(m.logDir, id+".log") }

func (m *Manager) lookup(id string) *active {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active[id]
}

// untrack ends the job's watch streams with a final event.
func (m *Manager) untrack(id string, a *active) {
	status, diagnosis := "unknown", ""
	if rec, err := m.ix.get(id); err == nil {
		status, diagnosis = rec.status(), rec.diagnosis()
	}
	text := status
	if diagnosis != "" {
		text += ": " + diagnosis
	}
	a.publish(&quarryv1.JobEvent{Kind: "job-done", Text: text})
	m.mu.Lock()
	delete(m.active, id)
	m.mu.Unlock()
	a.mu.Lock()
	if a.logf != nil {
		a.logf.Close()
		a.logf = nil
	}
	a.mu.Unlock()
	a.cancel(nil)
	close(a.done)
}

// publish records an event and hands it to every watcher without ever
// blocking the build: a watcher that falls behind misses lines.
func (a *active) publish(e *quarryv1.JobEvent) {
	e.JobId = a.id
	if e.TimeUnixNano == 0 {
		e.TimeUnixNano = time.Now().UnixNano()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.recent) == recentEvents {
		copy(a.recent, a.recent[1:])
		a.recent = a.recent[:recentEvents-1]
	}
	a.recent = append(a.recent, e)
	for ch := range a.subs {
		select {
		case ch <- e:
		default:
			a.dropped++
		}
	}
	if a.logf != nil && a.logN < maxLogBytes {
		line := FormatEvent(e) + "\n"
		n, _ := a.logf.WriteString(line)
		a.logN += n
	}
}

func (a *active) subscribe() (chan *quarryv1.JobEvent, []*quarryv1.JobEvent) {
	ch := make(chan *quarryv1.JobEvent, 1024)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.subs[ch] = struct{}{}
	return ch, append([]*quarryv1.JobEvent(nil), a.recent...)
}

func (a *active) unsubscribe(ch chan *quarryv1.JobEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.subs, ch)
}

// Watch sends the job's recent and live events to fn until the job ends
// (the last event is kind "job-done"), ctx ends or fn fails. For a job that
// has already ended it sends only the "job-done" event.
func (m *Manager) Watch(ctx context.Context, id string, fn func(*quarryv1.JobEvent) error) error {
	rec, err := m.ix.get(id)
	if err != nil {
		return err
	}
	a := m.lookup(id)
	if a == nil {
		text := rec.status()
		if d := rec.diagnosis(); d != "" {
			text += ": " + d
		}
		return fn(&quarryv1.JobEvent{JobId: id, Kind: "job-done", Text: text, TimeUnixNano: rec.Finished.UnixNano()})
	}
	ch, backlog := a.subscribe()
	defer a.unsubscribe(ch)
	for _, e := range backlog {
		if err := fn(e); err != nil {
			return err
		}
		if e.Kind == "job-done" {
			return nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-ch:
			if err := fn(e); err != nil {
				return err
			}
			if e.Kind == "job-done" {
				return nil
			}
		case <-a.done:
			// Deliver what is still queued, ending with job-done.
			for {
				select {
				case e := <-ch:
					if err := fn(e); err != nil {
						return err
					}
					if e.Kind == "job-done" {
						return nil
					}
				default:
					return nil
				}
			}
		}
	}
}

// FormatEvent renders an event as one log line.
func FormatEvent(e *quarryv1.JobEvent) string {
	var b strings.Builder
	if e.Target != "" && e.Target != TargetController {
		b.WriteString("[" + e.Target + "] ")
	}
	switch e.Kind {
	case "output":
		b.WriteString(e.Text)
	case "step-start":
		if e.Step != "" {
			fmt.Fprintf(&b, "--- attempt %d, %s: $ %s", e.Attempt, e.Text, e.Step)
		} else {
			b.WriteString("--- " + e.Text)
		}
	case "step-end":
		fmt.Fprintf(&b, "--- %s: %s", e.Step, strings.TrimSpace(e.Text))
	case "remediation":
		b.WriteString(">>> remediation: " + e.Text)
	case "attempt":
		b.WriteString("--- " + e.Text)
	case "done":
		b.WriteString("=== run " + e.Text)
	case "job-done":
		b.WriteString("=== job " + e.Text)
	default:
		b.WriteString("--- " + e.Kind + ": " + e.Text)
	}
	return b.String()
}
