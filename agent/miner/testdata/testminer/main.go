// Command testminer stands in for a mining program in the supervisor and
// watchdog tests: it prints log lines, serves an xmrig-style stats API, and
// on cue crashes, ignores SIGTERM, forks a child into its group, or drops
// its hashrate.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	var (
		crashAfter = flag.Duration("crash-after", 0, "exit with code 3 after this long")
		ignoreTerm = flag.Bool("ignore-term", false, "ignore SIGTERM")
		fork       = flag.Bool("fork", false, "start a child that sleeps, in the same process group")
		spam       = flag.Int("spam", 0, "print this many 100-byte lines on stderr at start")
		say        = flag.String("say", "", "print this line once at start")
		api        = flag.String("api", "", "serve stats on this address")
		portFile   = flag.String("port-file", "", "write the API port here")
		hashrate   = flag.Float64("hashrate", 1000, "H/s reported")
		dropAfter  = flag.Duration("drop-after", 0, "report drop-to H/s after this long")
		dropTo     = flag.Float64("drop-to", 0, "hashrate after the drop")
		pidFile    = flag.String("pid-file", "", "append own pid (and the child's) here")
		sleepChild = flag.Bool("sleep-child", false, "internal: be the forked child")
	)
	flag.Parse()
	if *sleepChild {
		signal.Ignore(syscall.SIGTERM)
		time.Sleep(time.Hour)
		return
	}
	// Like real miners, survive a broken output pipe (the agent died).
	signal.Ignore(syscall.SIGPIPE)
	// Before the start line, which tests wait for before they stop it: a
	// SIGTERM that arrives right after it must find its handler in place.
	sig := make(chan os.Signal, 1)
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
		signal.Notify(sig, syscall.SIGINT)
	} else {
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	}
	fmt.Printf("testminer %d started: %s\n", os.Getpid(), strings.Join(os.Args[1:], " "))
	if *pidFile != "" {
		appendLine(*pidFile, fmt.Sprint(os.Getpid()))
	}
	if *fork {
		c := exec.Command(os.Args[0], "-sleep-child")
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "fork:", err)
			os.Exit(1)
		}
		if *pidFile != "" {
			appendLine(*pidFile, fmt.Sprint(c.Process.Pid))
		}
	}
	// On stderr, like -say: the supervisor reads the two pipes
	// separately, so only one stream keeps the spam before the -say line.
	line := strings.Repeat("x", 99)
	for i := 0; i < *spam; i++ {
		fmt.Fprintln(os.Stderr, line)
	}
	if *say != "" {
		fmt.Fprintln(os.Stderr, *say)
	}
	start := time.Now()
	var accepted atomic.Uint64
	if *api != "" {
		ln, err := net.Listen("tcp", *api)
		if err != nil {
			fmt.Fprintln(os.Stderr, "listen:", err)
			os.Exit(1)
		}
		if *portFile != "" {
			tmp := *portFile + ".tmp"
			os.WriteFile(tmp, []byte(fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)), 0o600)
			os.Rename(tmp, *portFile)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/2/summary", func(w http.ResponseWriter, r *http.Request) {
			h := *hashrate
			if *dropAfter > 0 && time.Since(start) > *dropAfter {
				h = *dropTo
			}
			accepted.Add(1)
			json.NewEncoder(w).Encode(map[string]any{
				"version":  "6.21.0-test",
				"uptime":   int(time.Since(start).Seconds()),
				"algo":     "rx/0",
				"hashrate": map[string]any{"total": []float64{h, h, h}},
				"results":  map[string]any{"shares_good": accepted.Load(), "shares_total": accepted.Load()},
			})
		})
		go http.Serve(ln, mux)
	}
	if *crashAfter > 0 {
		select {
		case s := <-sig:
			fmt.Println("testminer: got", s, "- exiting")
			return
		case <-time.After(*crashAfter):
		}
		fmt.Fprintln(os.Stderr, "testminer: simulated crash")
		os.Exit(3)
	}
	for {
		select {
		case s := <-sig:
			fmt.Println("testminer: got", s, "- exiting")
			return
		case <-time.After(time.Hour):
		}
	}
}

func appendLine(path, s string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, s)
}
