package selfheal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"time"
)

// killGrace is how long pipes may stay open after the process group is
// killed, in case a grandchild escaped the group.
const killGrace = 2 * time.Second

// runProcess runs one step in its own process group, so cancelling ctx
// kills the compiler children of make/xbuild too, and returns the combined
// output and exit code. err is set only when the step could not run or ctx
// ended; a non-zero exit is not an error.
func (e *engine) runProcess(ctx context.Context, st Step, env []string, phase string) (string, int, error) {
	var cmd *exec.Cmd
	if st.Shell != "" {
		cmd = exec.CommandContext(ctx, "/bin/sh", "-c", st.Shell)
	} else {
		cmd = exec.CommandContext(ctx, st.Argv[0], st.Argv[1:]...)
	}
	cmd.Dir = e.ws.dir
	cmd.Env = env
	setProcessAttrs(cmd, e.runAs)
	cmd.WaitDelay = killGrace
	w := &lineWriter{max: maxCapture, emit: func(line string) { e.emit(EventOutput, st.String(), line) }}
	cmd.Stdout = w
	cmd.Stderr = w
	e.emit(EventStepStart, st.String(), phase)
	err := cmd.Run()
	w.flush()
	out := w.String()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return out, -1, fmt.Errorf("%s step %q: %w", phase, st.String(), ctx.Err())
	case errors.As(err, &exit):
		code := exit.ExitCode()
		e.emit(EventStepEnd, st.String(), fmt.Sprintf("exit %d", code))
		return out, code, nil
	case err != nil:
		// The program is missing or not executable: report it like a shell would.
		msg := fmt.Sprintf("selfheal: cannot run %s step %q: %v\n", phase, st.String(), err)
		e.emit(EventStepEnd, st.String(), msg)
		return out + msg, 127, nil
	}
	e.emit(EventStepEnd, st.String(), "exit 0")
	return out, 0, nil
}

// lineWriter keeps the first max bytes of output plus a rolling tail, and
// hands complete lines to emit.
type lineWriter struct {
	mu      sync.Mutex
	max     int
	head    bytes.Buffer
	tailBuf []byte
	dropped int
	partial []byte
	emit    func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max/2 - w.head.Len(); room > 0 {
		n := min(room, len(p))
		w.head.Write(p[:n])
		w.tailBuf = append(w.tailBuf, p[n:]...)
	} else {
		w.tailBuf = append(w.tailBuf, p...)
	}
	if over := len(w.tailBuf) - w.max/2; over > 0 {
		w.dropped += over
		w.tailBuf = append(w.tailBuf[:0], w.tailBuf[over:]...)
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		if w.emit != nil {
			w.emit(string(bytes.TrimRight(w.partial[:i], "\r")))
		}
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > maxParseLine {
		w.partial = w.partial[:0]
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 && w.emit != nil {
		w.emit(string(w.partial))
	}
	w.partial = nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dropped == 0 {
		return w.head.String() + string(w.tailBuf)
	}
	return w.head.String() + fmt.Sprintf("\n[... %d bytes of output dropped ...]\n", w.dropped) + string(w.tailBuf)
}
