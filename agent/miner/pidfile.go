package miner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pidRecord is what the supervisor remembers about the miner it started, so
// that an agent restarted after a crash can find and end it.
type pidRecord struct {
	PID  int `json:"pid"`
	PGID int `json:"pgid"`
	// StartTicks is field 22 of /proc/PID/stat (clock ticks since boot).
	// A pid with a different start time is a new process that reused the
	// number and must not be touched.
	StartTicks uint64    `json:"start_ticks"`
	Path       string    `json:"path"`
	Started    time.Time `json:"started"`
}

func readPidRecord(path string) (*pidRecord, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pidfile: %w", err)
	}
	var r pidRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("pidfile %s is corrupt: %w", path, err)
	}
	if r.PID <= 1 || r.PGID <= 1 {
		return nil, fmt.Errorf("pidfile %s holds pid %d pgid %d, refusing to signal it", path, r.PID, r.PGID)
	}
	return &r, nil
}

// writePidRecord replaces the pidfile atomically so a crash mid-write never
// leaves a half record that would hide a running miner.
func writePidRecord(path string, r pidRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode pidfile: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".miner.pid-*")
	if err != nil {
		return fmt.Errorf("write pidfile: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write pidfile: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync pidfile: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close pidfile: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install pidfile: %w", err)
	}
	return nil
}

// procStartTicks reads a process's start time from /proc. The comm field
// may itself contain spaces and parentheses, so parsing starts after the
// last ')'.
func procStartTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm field", pid)
	}
	// After ") " come fields 3 (state) onwards; starttime is field 22.
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// groupAlive reports whether any live process is left in process group
// pgid. Zombies do not count: they hold no resources, and under an init
// that is slow to reap them the group would otherwise never look gone.
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	live, ok := liveMembers(pgid)
	return !ok || live > 0
}

// liveMembers counts non-zombie processes in group pgid by scanning /proc;
// ok is false when /proc cannot be read.
func liveMembers(pgid int) (n int, ok bool) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited while we looked
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// f[0] is state, f[2] is pgrp.
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			n++
		}
	}
	return n, true
}

// reapGroup collects any zombies of group pgid that are our children, which
// happens when the agent runs as pid 1 (in a container) or as a subreaper
// and inherits the previous run's orphans.
func reapGroup(pgid int) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-pgid, &ws, syscall.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return
		}
	}
}

// killLeftover ends the miner process group recorded by an earlier agent
// run. It reports whether anything was signalled.
//
// Linux does not hand out a pid again while a process group still carries
// it as its id, so: if the leader is alive with the recorded start time the
// group is ours; if the leader is gone, any group still named by that pid
// can only be our leftovers; if the pid is alive with another start time it
// was reused after our whole group ended, and there is nothing to do.
func killLeftover(ctx context.Context, r *pidRecord, grace time.Duration) (bool, error) {
	ticks, err := procStartTicks(r.PID)
	switch {
	case err == nil && ticks != r.StartTicks:
		// Includes an unknown recorded start time: with the leader alive
		// we cannot tell our miner from a stranger, so leave it be.
		return false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("inspect leftover miner %d: %w", r.PID, err)
	}
	if !groupAlive(r.PGID) {
		reapGroup(r.PGID)
		return false, nil
	}
	_, err = terminateGroup(ctx, r.PGID, grace, nil)
	reapGroup(r.PGID)
	return true, err
}

// terminateGroup sends SIGTERM to the group, waits up to grace for it to
// empty, then sends SIGKILL. exited, when not nil, is closed once the
// leader has been reaped; without it the group is polled. killed reports
// whether SIGKILL was needed.
func terminateGroup(ctx context.Context, pgid int, grace time.Duration, exited <-chan struct{}) (killed bool, err error) {
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return false, nil
		}
		return false, fmt.Errorf("SIGTERM miner group %d: %w", pgid, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-exited:
			exited = nil // leader reaped; keep polling for the rest of the group
		case <-tick.C:
		case <-timer.C:
			return true, killGroup(ctx, pgid)
		case <-ctx.Done():
			return true, errors.Join(killGroup(context.Background(), pgid), ctx.Err())
		}
		if exited == nil && !groupAlive(pgid) {
			return false, nil
		}
	}
}

// killGroup sends SIGKILL to the group and waits, briefly, until the
// kernel reports it gone.
func killGroup(ctx context.Context, pgid int) error {
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGKILL miner group %d: %w", pgid, err)
	}
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for groupAlive(pgid) {
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("miner group %d still present 5s after SIGKILL", pgid)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
