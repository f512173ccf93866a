package server

import (
	"strings"
	"testing"
	"time"
)

func TestCommitDelayBounds(t *testing.T) {
	for _, c := range []struct {
		delay time.Duration
		ok    bool
	}{{0, true}, {10 * time.Millisecond, true}, {time.Second, true}, {-time.Millisecond, false}, {2 * time.Second, false}} {
		cfg := DefaultConfig()
		cfg.CommitDelay = c.delay
		err := cfg.Validate()
		if c.ok && err != nil {
			t.Errorf("commit_delay %s refused: %v", c.delay, err)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), "commit_delay")) {
			t.Errorf("commit_delay %s: got %v, want an error naming commit_delay", c.delay, err)
		}
	}
}
