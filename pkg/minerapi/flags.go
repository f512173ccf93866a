package minerapi

import (
	"slices"
)

// OwnedFlag is a command-line option whose value Launch already sets from a
// flight-sheet field.
type OwnedFlag struct {
	Flag string // as the miner spells it, e.g. "--api-port"
	// Field is what sets it: the flight-sheet field (pools, api,
	// algorithm, devices), or config (the config file Quarry writes) and
	// foreground (Quarry supervises the miner in the foreground).
	Field string
}

// ownedFlags is, per adapter, what the generated arguments or config file
// set. Giving one of these again in extra_args overrides Quarry's setting:
// an API port Quarry does not poll, a pool that replaces the failover list.
var ownedFlags = map[string][]OwnedFlag{
	"xmrig": flags(
		"pools", "-o", "--url", "-u", "--user", "-p", "--pass", "-O", "--userpass", "--daemon", "--coin", "--tls", "--nicehash", "-x", "--proxy",
		"api", "--http-host", "--http-port", "--http-access-token", "--http-enabled", "--http-no-restricted", "--api-worker-id", "--api-port", "--api-access-token",
		"algorithm", "-a", "--algo",
		"devices", "--cuda-devices", "--opencl-devices",
		"config", "-c", "--config",
		"foreground", "-B", "--background"),
	"wildrig": flags(
		"pools", "-o", "--url", "-u", "--user", "-p", "--pass", "-O", "--userpass",
		"api", "--api-port",
		"algorithm", "-a", "--algo",
		"devices", "-d", "--opencl-devices"),
	"trex": flags(
		"pools", "-o", "--url", "-u", "--user", "-p", "--pass", "-w", "--worker",
		"api", "--api-bind-http", "--api-bind-telnet", "--api-read-only", "--api-key",
		"algorithm", "-a", "--algo",
		"devices", "-d", "--devices",
		"config", "-c", "--config"),
	"lolminer": flags(
		"pools", "-p", "--pool", "-u", "--user", "--pass", "--tls", "--worker",
		"api", "--apihost", "--apiport",
		"algorithm", "-a", "--algo", "--coin",
		"devices", "--devices",
		"config", "--config", "--profile"),
	"gminer": flags(
		"pools", "-s", "--server", "-n", "--port", "-u", "--user", "-p", "--pass", "--ssl", "-w", "--worker", "--proto",
		"config", "--config",
		"api", "--api",
		"algorithm", "-a", "--algo",
		"devices", "-d", "--devices"),
	"cgminer": flags(
		"pools", "-o", "--url", "-u", "--user", "-p", "--pass", "-O", "--userpass",
		"config", "-c", "--config",
		"api", "--api-listen", "--api-port", "--api-allow", "--api-network", "--api-mcast",
		"algorithm", "--algo",
		"devices", "-d", "--device"),
	"teamredminer": flags(
		"pools", "-o", "--url", "-u", "--user", "-p", "--pass",
		"api", "--api_listen", "--cm_api_listen",
		"algorithm", "-a", "--algo",
		"devices", "-d", "--devices"),
	"bmminer":  flags("pools", "-o", "--url", "-u", "--user", "-p", "--pass", "config", "-c", "--config", "api", "--api-listen", "--api-port", "--api-allow", "--api-network"),
	"bosminer": flags("pools", "-o", "--url", "-u", "--user", "-p", "--pass", "config", "-c", "--config", "api", "--api-listen", "--api-port", "--api-allow", "--api-network"),
	"claymore": flags(
		"pools", "-epool", "-ewal", "-epsw", "-esm", "-allpools",
		"api", "-mport",
		"devices", "-di"),
	"phoenixminer": flags(
		"pools", "-pool", "-wal", "-pass", "-pool2", "-wal2", "-pass2", "-worker", "-config",
		"api", "-cdm", "-cdmport", "-cdmpass",
		"devices", "-gpus"),
	"ttminer": flags(
		"pools", "-P", "-pool", "-o", "-u", "-p", "-w",
		"api", "--api-bind", "-b",
		"algorithm", "-a", "--algo",
		"devices", "-d", "--device"),
	"ccminer": flags(
		"pools", "-o", "--url", "-u", "--user", "-p", "--pass", "-O", "--userpass", "-c", "--config",
		"api", "-b", "--api-bind", "--api-remote", "--api-allow",
		"algorithm", "-a", "--algo",
		"devices", "-d", "--devices"),
	"cpuminer-opt": flags(
		"pools", "-o", "--url", "-u", "--user", "-p", "--pass", "-O", "--userpass", "-c", "--config",
		"api", "-b", "--api-bind",
		"algorithm", "-a", "--algo"),
	"srbminer": flags(
		"pools", "--pool", "-o", "--wallet", "-u", "--password", "-p", "--worker", "--tls", "--nicehash", "--esm",
		"--config-file", "--pools-file",
		// The restart, reboot and shutdown URLs would let anyone who can
		// reach the API restart the miner or power off the rig.
		"api", "--api-enable", "--api-port", "--api-rig-name", "--api-rig-restricted",
		"--api-rig-restart-url", "--api-rig-shutdown-url", "--api-miner-restart-url",
		"algorithm", "--algorithm", "-a", "--algorithm-gpu", "-ag", "--algorithm-cpu", "-ac",
		"devices", "--gpu-id",
		"foreground", "--background"),
	"rigel": flags(
		"pools", "-o", "--url", "-u", "--username", "-p", "--password", "-w", "--worker",
		"api", "--api-bind",
		"algorithm", "-a", "--algorithm", "--a1", "--a2", "--a3",
		"devices", "-d", "--devices",
		"foreground", "--no-tui", "--no-watchdog"),
	"nbminer": flags(
		"pools", "-o", "--url", "-u", "--user", "-o1", "-u1", "-o2", "-u2", "-c", "--config",
		"api", "--api",
		"algorithm", "-a", "--algo",
		"devices", "-d", "--devices"),
	"nanominer": flags(
		"pools", "-c", "--config"),
	"miniz": flags(
		"pools", "--url", "--pass", "--server", "--port", "--user",
		"api", "--telemetry",
		"algorithm", "--par", "--pers", "--algo",
		"devices", "--cuda-devices"),
}

// flags reads "field", flag, flag, ..., "field", flag, ... .
func flags(spec ...string) []OwnedFlag {
	var out []OwnedFlag
	field := ""
	for _, s := range spec {
		switch s {
		case "pools", "api", "algorithm", "devices", "config", "foreground":
			field = s
		default:
			out = append(out, OwnedFlag{Flag: s, Field: field})
		}
	}
	return out
}

// OwnedFlags lists the options Launch sets for the named adapter; nil for
// an adapter that takes no command line of Quarry's (custom, whatsminer).
func OwnedFlags(adapter string) []OwnedFlag {
	return slices.Clone(ownedFlags[adapter])
}
