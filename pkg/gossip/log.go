package gossip

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// logWriter turns serf's and memberlist's "[LEVEL] component: msg" lines
// into slog records so they land in the process's structured log.
type logWriter struct {
	log    *slog.Logger
	onLine func(string) // may be nil
}

func newStdLogger(w *logWriter) *log.Logger { return log.New(w, "", 0) }

func (w *logWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for _, l := range []struct {
		prefix string
		level  slog.Level
	}{
		{"[DEBUG]", slog.LevelDebug},
		{"[TRACE]", slog.LevelDebug},
		{"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn},
		{"[ERR]", slog.LevelError},
		{"[ERROR]", slog.LevelError},
	} {
		if rest, ok := strings.CutPrefix(msg, l.prefix); ok {
			level, msg = l.level, strings.TrimSpace(rest)
			break
		}
	}
	if w.onLine != nil {
		w.onLine(msg)
	}
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}
