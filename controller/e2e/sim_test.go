package e2e

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

const simRigs = 24

// Two kinds of simulated rig: "a" cards can mine etchash and kawpow, "b"
// cards etchash and autolykos2. Both start on etc.
const simProfile = `
gpu_models:
  SimCard A: {idle_power: 15, algorithms: {etchash: {hashrate: 60 MH/s, power: 120}, kawpow: {hashrate: 25 MH/s, power: 150}}}
  SimCard B: {idle_power: 15, algorithms: {etchash: {hashrate: 90 MH/s, power: 200}, autolykos2: {hashrate: 200 MH/s, power: 180}}}
rigs:
  - {name: a, gpus: {SimCard A: 4}}
  - {name: b, gpus: {SimCard B: 2}}
noise: 0.01
crashes_per_hour: 0
gpu_losses_per_hour: 0
initial: {coin: etc, algorithm: etchash, miner: lolminer, pool: stratum+tcp://etc.example.net:1010}
`

// simMarket writes a market file in which etc pays ergPrice-independent
// amounts and erg pays at ergPrice.
func simMarket(t *testing.T, path string, ergPrice float64) {
	t.Helper()
	doc := fmt.Sprintf(`{"format": "quarry-market/v1", "fetched": %q, "coins": [
  {"tag": "etc", "algorithm": "etchash", "block_time": 13, "block_reward": 2.5, "difficulty": 2e15, "nethash": 1.5e14, "price_usd": 25},
  {"tag": "rvn", "algorithm": "kawpow", "block_time": 60, "block_reward": 2500, "difficulty": 1e5, "nethash": 7e12, "price_usd": 0.001},
  {"tag": "erg", "algorithm": "autolykos2", "block_time": 120, "block_reward": 24, "difficulty": 2e15, "nethash": 1.6e13, "price_usd": %g}]}`,
		time.Now().UTC().Format(time.RFC3339), ergPrice)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func simControllerConfig(market string) string {
	sheet := func(name, algo, miner string) string {
		return fmt.Sprintf(`{name: %s, algorithm: %s, miner: {name: %s, path: /opt/quarry/miners/%s, sha256: "`+strings.Repeat("0", 64)+`"}, pools: [{url: "stratum+tcp://%s.example.net:1", user: w}]}`, name, algo, miner, miner, name)
	}
	return `profit:
  tick: 300ms
  batch_spacing: 10ms
  market:
    ttl: 300ms
    confirm_fetches: 1
    sources: [{kind: file, path: ` + market + `}]
  policy: {relative_threshold: 0.05, absolute_threshold: 0.01, min_dwell: 1s, switch_downtime: 1s}
  profiles:
    "SimCard A,SimCard A,SimCard A,SimCard A": {etchash: {hashrate: 240e6, power: 480}, kawpow: {hashrate: 100e6, power: 600}}
    "SimCard B,SimCard B": {etchash: {hashrate: 180e6, power: 400}, autolykos2: {hashrate: 400e6, power: 360}}
  options:
    - {coin: etc, flight_sheet: ` + sheet("etc", "etchash", "lolminer") + `}
    - {coin: rvn, flight_sheet: ` + sheet("rvn", "kawpow", "trex") + `}
    - {coin: erg, flight_sheet: ` + sheet("erg", "autolykos2", "lolminer") + `}
`
}

func (c *controller) fullRigs(t *testing.T) map[string]*quarryv1.Rig {
	t.Helper()
	out, err := c.ctl(t, "rigs", "list", "-o", "json")
	if err != nil {
		t.Fatalf("rigs list: %v\n%s", err, out)
	}
	var resp quarryv1.ListRigsResponse
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("rigs list json: %v\n%s", err, out)
	}
	rigs := map[string]*quarryv1.Rig{}
	for _, r := range resp.Rigs {
		rigs[r.Name] = r
	}
	return rigs
}

func minerAlgo(r *quarryv1.Rig) string {
	for _, m := range r.Miners {
		if m.State == "running" {
			return m.Algorithm
		}
	}
	return ""
}

// A few dozen simulated rigs from the real quarry-sim binary against a real
// controller: all enroll with their own certificates and come online; a
// market change moves exactly the rigs whose cards can mine the coin that
// now pays, and they report the new algorithm; a crash cue gives the
// watchdog's event; a SIGKILLed simulator resumes every rig's sequence with
// no gap at the controller.
func TestSimulatedFleet(t *testing.T) {
	dir := t.TempDir()
	market := filepath.Join(dir, "market.json")
	simMarket(t, market, 0.2) // erg pays little: everyone stays on etc
	cfgPath := filepath.Join(dir, "controller.yaml")
	if err := os.WriteFile(cfgPath, []byte(simControllerConfig(market)), 0o600); err != nil {
		t.Fatal(err)
	}
	profile := filepath.Join(dir, "profile.yaml")
	if err := os.WriteFile(profile, []byte(simProfile), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startController(t, dir, freePort(t), freePort(t), "-config", cfgPath)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(c.newToken(t, "--uses", fmt.Sprint(simRigs), "--ttl", "1h")), 0o600); err != nil {
		t.Fatal(err)
	}
	simArgs := []string{"-controller", c.grpc, "-profile", profile, "-rigs", fmt.Sprint(simRigs), "-interval", "300ms", "-data-dir", filepath.Join(dir, "sim")}
	sim := start(t, dir, "quarry-sim", append(simArgs, "-token-file", tokenFile)...)

	testsupport.Poll(t, "every simulated rig enrolled and online", 90*time.Second, func() (bool, string) {
		rigs := c.fullRigs(t)
		online := 0
		for i := 1; i <= simRigs; i++ {
			if r := rigs[fmt.Sprintf("sim-%d", i)]; r != nil && r.Online && r.LastSeq > 0 {
				online++
			}
		}
		return online == simRigs, fmt.Sprintf("%d of %d online and reporting", online, simRigs)
	})
	for name, r := range c.fullRigs(t) {
		if r.Tags["simulated"] != "true" || len(r.Gpus) == 0 {
			t.Errorf("%s: tags %v, %d GPUs; want the simulated tag and its cards", name, r.Tags, len(r.Gpus))
		}
	}
	// Each rig read its miner through the lolMiner adapter from the
	// recorded lolMiner reply: the capture's version, and a total that is
	// the sum of the cards the reply lists.
	testsupport.Poll(t, "miner readings from the simulated lolMiner APIs", 30*time.Second, func() (bool, string) {
		var wrong []string
		for name, r := range c.fullRigs(t) {
			var sum float64
			var ms *quarryv1.MinerStats
			for _, m := range r.Miners {
				if m.State == "running" {
					ms = m
				}
			}
			if ms == nil {
				wrong = append(wrong, name+": not running")
				continue
			}
			for _, g := range ms.Gpus {
				sum += g.Hashrate
			}
			if ms.Version != "1.82" || ms.Hashrate <= 0 || math.Abs(sum-ms.Hashrate) > 1e-6*ms.Hashrate || len(ms.Gpus) != len(r.Gpus) {
				wrong = append(wrong, fmt.Sprintf("%s: version %q, %v H/s, cards sum to %v, %d of %d cards", name, ms.Version, ms.Hashrate, sum, len(ms.Gpus), len(r.Gpus)))
			}
		}
		return len(wrong) == 0, strings.Join(wrong, "; ")
	})

	// erg now pays far more than etc: the b rigs (autolykos2 cards) move
	// to it; the a rigs cannot mine it and stay on etc.
	simMarket(t, market, 20)
	testsupport.Poll(t, "b rigs switched to erg and report autolykos2, a rigs still on etchash", 90*time.Second, func() (bool, string) {
		rigs := c.fullRigs(t)
		var wrong []string
		for i := 1; i <= simRigs; i++ {
			name := fmt.Sprintf("sim-%d", i)
			want := "etchash"
			if i%2 == 0 { // rig i is dealt type (i-1)%2: a, b, a, b…
				want = "autolykos2"
			}
			if got := minerAlgo(rigs[name]); got != want {
				wrong = append(wrong, name+"="+got)
			}
		}
		return len(wrong) == 0, strings.Join(wrong, " ")
	})

	// Crash cue: the rig reports the crash and the watchdog's restart.
	if err := os.WriteFile(filepath.Join(dir, "sim", "cues", "crash-sim-3"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	testsupport.Poll(t, "sim-3's crash events at the controller", 30*time.Second, func() (bool, string) {
		out, _ := c.ctl(t, "rig", "show", "sim-3")
		return strings.Contains(out, "watchdog_restart_miner") && strings.Contains(out, "miner_exited"), out
	})

	// SIGKILL the simulator mid-stream, start it again without a token:
	// every rig resumes its sequence and the controller sees no gap.
	before := c.fullRigs(t)
	if err := sim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-sim.done
	start(t, dir, "quarry-sim", simArgs...)
	testsupport.Poll(t, "every rig reporting again after the kill", 90*time.Second, func() (bool, string) {
		rigs := c.fullRigs(t)
		var behind []string
		for name, b := range before {
			if r := rigs[name]; r == nil || !r.Online || r.LastSeq < b.LastSeq+5 {
				behind = append(behind, name)
			}
		}
		return len(behind) == 0, "not yet resumed: " + strings.Join(behind, " ")
	})
	for name, r := range c.fullRigs(t) {
		if r.SeqGaps != 0 || r.Reports != r.LastSeq {
			t.Errorf("%s: %d reports, last seq %d, %d gaps: the kill lost or repeated reports", name, r.Reports, r.LastSeq, r.SeqGaps)
		}
	}
}

// With -gossip every simulated rig is a real serf member, signed with its
// certificate key and keyed from enrollment as the agent is: the
// controller sees each alive in gossip, and a fleet pause and resume
// broadcast over gossip stop and restart their miners.
func TestSimulatedFleetGossip(t *testing.T) {
	const rigs = 3
	dir := t.TempDir()
	profile := filepath.Join(dir, "profile.yaml")
	if err := os.WriteFile(profile, []byte(simProfile), 0o600); err != nil {
		t.Fatal(err)
	}
	_, gport := gossipAddr(t, "127.0.0.1")
	c := startController(t, dir, freePort(t), freePort(t), "-gossip-port", gport, "-gossip-profile", "tuned")
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(c.newToken(t, "--uses", fmt.Sprint(rigs), "--ttl", "1h")), 0o600); err != nil {
		t.Fatal(err)
	}
	simProc := start(t, dir, "quarry-sim", "-controller", c.grpc, "-profile", profile, "-rigs", fmt.Sprint(rigs),
		"-interval", "300ms", "-data-dir", filepath.Join(dir, "sim"), "-token-file", tokenFile,
		"-gossip", "-gossip-bind", "127.0.0.1", "-gossip-profile", "tuned", "-log-level", "info")

	f := &gossipFleet{ctrl: c}
	testsupport.Poll(t, "every simulated rig alive in gossip and online", 90*time.Second, func() (bool, string) {
		g := f.gossipRigs(t)
		var not []string
		for i := 1; i <= rigs; i++ {
			name := fmt.Sprintf("sim-%d", i)
			if r := g[name]; r.GossipStatus != "alive" || !r.Online {
				not = append(not, fmt.Sprintf("%s=%q online=%v", name, r.GossipStatus, r.Online))
			}
		}
		return len(not) == 0, strings.Join(not, " ")
	})
	state := func(want string) func() (bool, string) {
		return func() (bool, string) {
			var wrong []string
			for name, r := range c.fullRigs(t) {
				got := ""
				for _, m := range r.Miners {
					got = m.State
				}
				if got != want {
					wrong = append(wrong, name+"="+got)
				}
			}
			return len(wrong) == 0, strings.Join(wrong, " ")
		}
	}
	testsupport.Poll(t, "simulated miners running", 30*time.Second, state("running"))

	if out, err := c.ctl(t, "fleet", "pause"); err != nil || !strings.Contains(out, fmt.Sprintf("%d alive agents selected", rigs)) {
		t.Fatalf("fleet pause: %v\n%s", err, out)
	}
	testsupport.Poll(t, "every simulated rig paused over gossip", 60*time.Second, state("stopped"))
	for i := 1; i <= rigs; i++ {
		out, _ := c.ctl(t, "rig", "show", fmt.Sprintf("sim-%d", i))
		if !strings.Contains(out, "fleet_pause") {
			t.Errorf("sim-%d shows no fleet_pause event from gossip:\n%s", i, out)
		}
	}
	if out, err := c.ctl(t, "fleet", "resume"); err != nil {
		t.Fatalf("fleet resume: %v\n%s", err, out)
	}
	testsupport.Poll(t, "every simulated rig resumed over gossip", 60*time.Second, state("running"))
	if !strings.Contains(simProc.output(), `msg="fleet event acted on"`) {
		t.Errorf("simulator log shows no fleet event acted on:\n%s", simProc.output())
	}
}
