// Command fakeminer is a stand-in for a mining program, for tests only. It
// serves one miner's stats API from replies recorded from real miners, and on
// cue misbehaves the way real miners do, so that adapters, the supervisor and
// the watchdog can be tested without GPUs or pools.
//
// Usage:
//
//	fakeminer -api xmrig -listen 127.0.0.1:0 -port-file /tmp/addr
//
// Flags:
//
//	-api NAME          which API to serve: xmrig (HTTP /2/summary, /2/backends,
//	                   /1/summary, /api.json), trex (/summary), lolminer (1.x
//	                   /summary), lolminer-new (Workers/Algorithms /summary),
//	                   gminer (/stat), cgminer (TeamRedMiner-style TCP API) or
//	                   bmminer (Antminer TCP API, "stats" with the "}{" bug)
//	-listen ADDR       listen address (default 127.0.0.1:0, a free port)
//	-port-file FILE    write the bound host:port to FILE once listening
//	-token TOKEN       require "Authorization: Bearer TOKEN" on HTTP APIs:
//	                   none sent gives 401, a wrong one 403 (xmrig's rules)
//	-control FILE      re-read FILE every 100ms; each line is a cue (below)
//	-hashrate SCALE    multiply every hashrate by SCALE (default 1)
//	-noshares          share counters stop growing
//	-hot C             report the first GPU at C degrees Celsius
//	-garbage           answer with bytes that are not the miner's format
//	-hang              accept connections but never answer; log lines stop
//	-crash-after D     exit with -exit-code after duration D
//	-exit-code N       exit status of a crash (default 3)
//	-ignore-sigterm    log and ignore SIGTERM/SIGINT, so only SIGKILL stops it
//	-log-interval D    how often to print a status line to stdout (default 1s)
//	-startup-delay D   wait D before listening, like a miner building its DAG
//
// Cues in the control file, one per line; an empty file means normal:
//
//	crash            exit with -exit-code at once
//	hang             stop answering (and stop logging)
//	hashrate 0.1     scale every hashrate
//	noshares         share counters stop growing
//	hot 95           first GPU reports 95 C
//	garbage          answer garbage
//	warming          hashrates are null, as while a miner warms up
//	exit N           exit with status N at once
//
// Signals: SIGTERM and SIGINT exit 0 (unless -ignore-sigterm); SIGUSR1
// toggles a hashrate drop to 10%; SIGUSR2 crashes with -exit-code.
//
// Share counters grow by one per log interval unless noshares is in effect.
// Every line on stdout is a status line; cues and signals are reported on
// stderr.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
