package flightsheet

import (
	"fmt"
	"strings"
)

// Daemon pool schemes point a miner at a coin's own node (solo mining)
// instead of a stratum pool. They are xmrig's spelling; the agent turns them
// into the miner's own form (xmrig: `daemon: true` in its config).
const (
	SchemeDaemonHTTP  = "daemon+http"
	SchemeDaemonHTTPS = "daemon+https"
)

// IsDaemonURL reports whether a pool URL names a coin daemon (solo mining).
func IsDaemonURL(raw string) bool {
	s, _, ok := strings.Cut(raw, "://")
	if !ok {
		return false
	}
	s = strings.ToLower(s)
	return s == SchemeDaemonHTTP || s == SchemeDaemonHTTPS
}

// minerRules is what one miner program accepts in a flight sheet. The
// controller checks a sheet against them at apply, so a sheet the miner
// could not run (it would exit in a restart loop) never reaches a rig.
type minerRules struct {
	// schemes are the pool URL schemes the miner parses.
	schemes []string
	// solo says how the miner mines solo, for the refusal message.
	solo string
}

var stratumOnly = "solo mining goes through a local stratum endpoint (the node's own stratum bridge or a solo stratum server such as ckpool -B), written as stratum+tcp://host:port"

// rulesFor returns the rules for a miner adapter; ok is false for a miner
// with no specific rules (the generic schemes apply).
func rulesFor(miner string) (minerRules, bool) {
	switch miner {
	case "xmrig":
		return minerRules{
			schemes: []string{"stratum+tcp", "stratum+ssl", SchemeDaemonHTTP, SchemeDaemonHTTPS},
			solo:    "solo mining against monerod (or another CryptoNote daemon) is daemon+http://host:rpc-port with the wallet address as user",
		}, true
	case "trex":
		return minerRules{schemes: []string{"stratum+tcp", "stratum+ssl", "stratum2+tcp"}, solo: stratumOnly}, true
	case "lolminer", "gminer", "teamredminer":
		return minerRules{schemes: []string{"stratum+tcp", "stratum+ssl"}, solo: stratumOnly}, true
	case "bmminer":
		return minerRules{schemes: []string{"stratum+tcp"}, solo: stratumOnly}, true
	case "bosminer":
		return minerRules{schemes: []string{"stratum+tcp", "stratum+ssl", "stratum2+tcp"}, solo: stratumOnly}, true
	case "cgminer":
		// cgminer still speaks getwork/getblocktemplate over http(s).
		return minerRules{schemes: []string{"stratum+tcp", "http", "https"}, solo: stratumOnly}, true
	case "custom":
		// The operator's mapping decides what the program understands.
		return minerRules{schemes: poolSchemes}, true
	}
	return minerRules{}, false
}

// checkMinerScheme refuses a pool scheme the named miner cannot use; the
// generic URL checks have already run.
func checkMinerScheme(miner, scheme string) error {
	scheme = strings.ToLower(scheme)
	r, ok := rulesFor(miner)
	if !ok {
		if scheme == SchemeDaemonHTTP || scheme == SchemeDaemonHTTPS {
			return fmt.Errorf("miner %s cannot mine against a daemon (%s://); %s", miner, scheme, stratumOnly)
		}
		return nil
	}
	for _, s := range r.schemes {
		if s == scheme {
			return nil
		}
	}
	msg := fmt.Sprintf("miner %s cannot use scheme %q (it takes %s)", miner, scheme, strings.Join(r.schemes, ", "))
	if r.solo != "" {
		msg += "; " + r.solo
	}
	return fmt.Errorf("%s", msg)
}
