// Command quarry-sim runs simulated rigs against a controller: each one
// enrolled with a join token and its own certificate, reporting over its
// own mutual-TLS stream through the agent's link code, and obeying the
// controller's commands. With -duration it measures the controller
// instead: committed reports per second, the time from making a report to
// its acknowledgement (sent only after the durable commit), and, given the
// controller's pid, the controller's CPU time per committed report.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/quarryfleet/quarry/controller/sim"
	"github.com/quarryfleet/quarry/pkg/version"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quarry-sim:", err)
		os.Exit(1)
	}
}

func run() error {
	var o sim.Options
	var tokenFile, profileFile, logLevel string
	var duration, warmup time.Duration
	var ctrlPID int
	var metricsURL string
	var profileCtrl bool
	var switchWait time.Duration
	var readyFile, cpuProfile, switchAlgo string
	var gcPercent int
	flag.StringVar(&o.Addr, "controller", "127.0.0.1:7443", "controller gRPC address, or the addresses of a controller group, comma-separated")
	flag.StringVar(&o.ServerName, "server-name", "", "name in the controller's certificate (default: the address's host)")
	flag.StringVar(&tokenFile, "token-file", "", "file holding a join token with enough uses for the rigs not yet enrolled ('quarryctl token create --uses N')")
	flag.StringVar(&o.DataDir, "data-dir", "quarry-sim-data", "rig certificates, buffers and state; reused on the next start")
	flag.IntVar(&o.Rigs, "rigs", 5, "simulated rigs")
	flag.StringVar(&o.Prefix, "prefix", "sim", "rig names are PREFIX-1 … PREFIX-N")
	flag.StringVar(&profileFile, "profile", "", "hardware profile YAML (default: the built-in one)")
	flag.DurationVar(&o.Interval, "interval", 0, "report period (default: the controller's report_interval)")
	flag.BoolVar(&o.Saturate, "saturate", false, "make each rig's reports back to back, each as soon as fewer than -in-flight are unacknowledged")
	flag.IntVar(&o.InFlight, "in-flight", 1, "with -saturate: most unacknowledged reports a rig keeps (1: lockstep with its acknowledgements; more: a rig replaying a backlog)")
	flag.IntVar(&o.Shards, "shards", 16, "database files holding the rigs' buffers")
	flag.IntVar(&o.Ramp, "ramp", 64, "most rigs connecting at once")
	flag.Uint64Var(&o.Seed, "seed", 1, "seed of noise and random failures")
	flag.BoolVar(&o.Gossip, "gossip", false, fmt.Sprintf("make each rig a member of the controller's gossip cluster, as the agent is (at most %d rigs)", sim.MaxGossipRigs))
	flag.StringVar(&o.GossipBind, "gossip-bind", "127.0.0.1", "with -gossip: IP the rigs' gossip members listen on")
	flag.StringVar(&o.GossipProfile, "gossip-profile", "lan", "with -gossip: failure detection timings, lan or tuned")
	flag.DurationVar(&duration, "duration", 0, "measure for this long once every rig is connected, print the figures and exit (0: run until stopped)")
	flag.DurationVar(&warmup, "warmup", 5*time.Second, "with -duration: run this long before measuring")
	flag.IntVar(&ctrlPID, "controller-pid", 0, "with -duration: the controller's process id, to read its CPU time and memory from /proc")
	flag.StringVar(&metricsURL, "controller-metrics", "", "with -duration: the controller's /metrics/controller URL, read at the start and end of the measured window for its own report acknowledgement latency")
	flag.BoolVar(&profileCtrl, "profile-controller", false, "with -controller-pid: send the controller SIGUSR1 as the measured window starts and ends (a controller started with QUARRY_PROFILE_DIR profiles exactly that window)")
	flag.DurationVar(&switchWait, "measure-switch", 0, "once every rig is connected, wait this long for the controller to switch them (a flight sheet each) and print how long it took until every rig had answered")
	flag.StringVar(&switchAlgo, "switch-algorithm", "", "with -measure-switch: time only flight sheets that move a rig to this algorithm (default: the first flight sheet of any kind)")
	flag.StringVar(&readyFile, "ready-file", "", "with -duration or -measure-switch: write this file when the measured window starts")
	flag.IntVar(&gcPercent, "gc-percent", 400, "the simulator's own garbage collection target, as GOGC (which, when set, wins): above Go's 100 it spends memory to leave more of the shared cores to the controller it measures")
	flag.StringVar(&cpuProfile, "cpu-profile", "", "with -duration or -measure-switch: write a CPU profile of the simulator's own measured window to this file")
	flag.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	if err := checkMeasureFlags(gcPercent, duration, switchWait, cpuProfile, switchAlgo); err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	o.Version = version.Version + " (simulated)"
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return fmt.Errorf("-token-file: %w", err)
		}
		o.Token = strings.TrimSpace(string(b))
	}
	if profileFile != "" {
		p, err := sim.LoadProfile(profileFile)
		if err != nil {
			return err
		}
		o.Profile = p
	}
	if switchAlgo != "" {
		p := o.Profile
		if p == nil {
			var err error
			if p, err = sim.DefaultProfile(); err != nil {
				return err
			}
		}
		// A typo would otherwise wait out -measure-switch for a switch
		// no simulated card can make.
		if !p.Mines(switchAlgo) {
			return fmt.Errorf("-switch-algorithm %q: no card in the profile has figures for it", switchAlgo)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	f, err := sim.New(ctx, o)
	if err != nil {
		return err
	}
	defer f.Close()
	enrolled := time.Since(start)
	o.Log.Info("rigs ready", "rigs", o.Rigs, "took", enrolled)
	if duration <= 0 && switchWait <= 0 {
		return f.Run(ctx)
	}

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(runCtx) }()
	st := f.Stats()
	start = time.Now()
	// Every rig has had its session up once; under load a few may be
	// reconnecting at any moment, which the figures then include.
	lastLog := time.Now()
	for st.EverConnected() < o.Rigs {
		if ctx.Err() != nil || time.Since(start) > 20*time.Minute {
			cancel()
			<-done
			return fmt.Errorf("only %d of %d rigs connected", st.EverConnected(), o.Rigs)
		}
		if time.Since(lastLog) > 15*time.Second {
			fmt.Fprintf(os.Stderr, "quarry-sim: %d of %d rigs connected so far, %d up now\n", st.EverConnected(), o.Rigs, st.Connected())
			lastLog = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	connected := time.Since(start)
	time.Sleep(warmup)
	ready := func() {
		if readyFile != "" {
			if err := os.WriteFile(readyFile, []byte("ready\n"), 0o600); err != nil {
				o.Log.Warn("ready file", "err", err)
			}
		}
	}
	stopProfile, err := startCPUProfile(cpuProfile)
	if err != nil {
		cancel()
		<-done
		return err
	}
	defer stopProfile()
	if switchWait > 0 {
		st.MeasureSwitch(true, switchAlgo)
		ready()
		fmt.Fprintf(os.Stderr, "quarry-sim: %d rigs connected in %s; waiting up to %s for a switch\n", o.Rigs, connected.Round(time.Millisecond), switchWait)
		cmd0, cmdErr := scrapeHistogram(ctx, metricsURL, commandMetric)
		deadline := time.Now().Add(switchWait)
		for st.SwitchAcked() < o.Rigs && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		applied := st.MeasureSwitch(false, "")
		stopProfile()
		cmd1, err := scrapeHistogram(ctx, metricsURL, commandMetric)
		if cmdErr == nil {
			cmdErr = err
		}
		cancel()
		<-done
		printSwitch(o.Rigs, applied)
		if metricsURL != "" {
			printHistogram("controller's own share, command queued→handed to the rig's stream", "commands", commandMetric, cmd0, cmd1, cmdErr)
		}
		return nil
	}
	ready()

	signalCtrl := func() {
		if profileCtrl && ctrlPID > 0 {
			if err := syscall.Kill(ctrlPID, syscall.SIGUSR1); err != nil {
				o.Log.Warn("signal the controller", "err", err)
			}
		}
	}
	// Read before the window so the scrape's own cost is outside it.
	ack0, ackErr := ackHistogram(ctx, metricsURL)
	signalCtrl()
	st.Measure(true)
	cpu0, _ := procCPU(ctrlPID)
	acked0, t0 := st.Acked(), time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(duration):
	}
	acked1, elapsed := st.Acked(), time.Since(t0)
	cpu1, cpuErr := procCPU(ctrlPID)
	lat := st.Measure(false)
	stopProfile()
	signalCtrl()
	rss, anon := procMem(ctrlPID)
	ack1, err := ackHistogram(ctx, metricsURL)
	if ackErr == nil {
		ackErr = err
	}
	upAtEnd := st.Connected()
	cancel()
	<-done

	committed := acked1 - acked0
	mode := "every " + o.Interval.String()
	if o.Saturate {
		mode = fmt.Sprintf("saturating, %d in flight a rig", max(o.InFlight, 1))
	}
	fmt.Printf("rigs=%d (%s, %d up at the end): %d reports committed in %s = %.0f reports/s; made→committed p50=%s p99=%s max=%s (enroll %s, connect %s)\n",
		o.Rigs, mode, upAtEnd, committed, elapsed.Round(time.Millisecond), float64(committed)/elapsed.Seconds(),
		q(lat, 0.50), q(lat, 0.99), q(lat, 1), enrolled.Round(time.Millisecond), connected.Round(time.Millisecond))
	if ctrlPID > 0 && cpuErr == nil && committed > 0 {
		fmt.Printf("  controller: %.1f µs CPU per committed report (%.2f cores busy); RSS %d MiB (anonymous %d MiB, %.1f KiB per rig)\n",
			float64((cpu1-cpu0).Microseconds())/float64(committed), (cpu1-cpu0).Seconds()/elapsed.Seconds(),
			rss>>20, anon>>20, float64(anon)/1024/float64(o.Rigs))
	}
	if metricsURL != "" {
		printHistogram("controller's own latency, report received→acknowledgement sent", "reports", ackMetric, ack0, ack1, ackErr)
	}
	return nil
}

// printHistogram prints what the controller's histogram metric counted
// between the scrapes before and after, or why it could not be read.
func printHistogram(what, things, metric string, before, after histogram, err error) {
	if err != nil {
		fmt.Printf("  %s: %v\n", what, err)
		return
	}
	d := after.since(before)
	fmt.Printf("  %s: p50 %s, p99 %s, max %s, mean %s (%d %s, from %s)\n",
		what, d.quantile(0.50), d.quantile(0.99), d.quantile(1), d.mean(), d.count(), things, metric)
}

// checkMeasureFlags refuses flag values the simulator would otherwise
// ignore or act on badly: the measuring flags mean nothing without a
// measured window, and a collector target of zero or less would collect
// without pause or never (GOGC=off says the latter on purpose).
func checkMeasureFlags(gcPercent int, duration, switchWait time.Duration, cpuProfile, switchAlgo string) error {
	if gcPercent <= 0 {
		return fmt.Errorf("-gc-percent %d: must be positive (GOGC=off turns the collector off)", gcPercent)
	}
	if duration <= 0 && switchWait <= 0 && cpuProfile != "" {
		return errors.New("-cpu-profile profiles the measured window: give -duration or -measure-switch")
	}
	if switchWait <= 0 && switchAlgo != "" {
		return errors.New("-switch-algorithm needs -measure-switch")
	}
	return nil
}

// startCPUProfile profiles this process into path until the returned
// function is first called; later calls do nothing. An empty path
// profiles nothing.
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("-cpu-profile: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "quarry-sim: -cpu-profile:", err)
			}
		})
	}, nil
}

// printSwitch prints how long the controller took from queueing the
// first flight sheet of a switch until every rig had answered.
func printSwitch(rigs int, applied map[string]sim.Applied) {
	if len(applied) == 0 {
		fmt.Printf("switch: no rig was sent a flight sheet\n")
		return
	}
	var firstQ, lastQ, lastDone, lastArrived time.Time
	var perRig, arrival, handling []time.Duration
	failed := 0
	for _, a := range applied {
		if firstQ.IsZero() || a.Queued.Before(firstQ) {
			firstQ = a.Queued
		}
		if a.Queued.After(lastQ) {
			lastQ = a.Queued
		}
		if a.Done.After(lastDone) {
			lastDone = a.Done
		}
		if a.Arrived.After(lastArrived) {
			lastArrived = a.Arrived
		}
		if a.Err {
			failed++
		}
		perRig = append(perRig, a.Done.Sub(a.Queued))
		arrival = append(arrival, a.Arrived.Sub(a.Queued))
		handling = append(handling, a.Done.Sub(a.Received))
	}
	fmt.Printf("switch: %d of %d rigs answered (%d refused); first flight sheet queued → every answer sent: %s; queueing took %s; per rig queued→answered p50=%s p99=%s max=%s (rig's own handling p99=%s)\n",
		len(applied), rigs, failed, lastDone.Sub(firstQ).Round(time.Millisecond), lastQ.Sub(firstQ).Round(time.Millisecond),
		q(perRig, 0.5), q(perRig, 0.99), q(perRig, 1), q(handling, 0.99))
	fmt.Printf("  delivery: first flight sheet queued → on every rig's stream: %s; per rig queued→arrived p50=%s p99=%s max=%s\n",
		lastArrived.Sub(firstQ).Round(time.Millisecond), q(arrival, 0.5), q(arrival, 0.99), q(arrival, 1))
}

// q is the p quantile of d (sorted in place).
func q(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	if !slices.IsSorted(d) {
		slices.Sort(d)
	}
	return d[min(len(d)-1, int(p*float64(len(d))))].Round(10 * time.Microsecond)
}

// procCPU is a process's user plus system CPU time from /proc/PID/stat,
// so the simulator's own share is not counted.
func procCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields start after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	// utime and stime are fields 14 and 15 of the line, in clock ticks
	// (100 per second on Linux).
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	stt, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+stt) * 10 * time.Millisecond, nil
}

// procMem is a process's resident and anonymous resident memory in bytes.
func procMem(pid int) (rss, anon uint64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "RssAnon":
			anon = n << 10
		}
	}
	return rss, anon
}
