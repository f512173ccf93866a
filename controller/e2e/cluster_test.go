package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/quarryfleet/quarry/pkg/leaderhint"
	"github.com/quarryfleet/quarry/pkg/pki"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// groupSimRigs is how many simulated rigs report to the group beside the
// two real agents.
const groupSimRigs = 20

// groupMember is one controller process of a Raft group.
type groupMember struct {
	*proc
	id, dir, grpc, http, raft, serf string
	// extra is more of the member's configuration (billing, say).
	extra string
}

// groupConfig is a member's controller.yaml: its own gossip port for the
// rigs (three controllers share this machine) and its cluster section.
func groupConfig(t *testing.T, m *groupMember, expect int, join string) string {
	s := fmt.Sprintf("%sgossip: {bind_port: %s}\ncluster:\n  node_id: %s\n  raft_addr: %s\n  serf_addr: %s\n  bootstrap_expect: %d\n",
		m.extra, portOf(net.JoinHostPort(gossipAddr(t, "127.0.0.1"))), m.id, m.raft, m.serf, expect)
	if join != "" {
		s += "  join: [" + join + "]\n"
	}
	return s
}

func portOf(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

func startMember(t *testing.T, m *groupMember, expect int, join string) {
	t.Helper()
	cfg := filepath.Join(m.dir, "controller.yaml")
	if err := os.WriteFile(cfg, []byte(groupConfig(t, m, expect, join)), 0o600); err != nil {
		t.Fatal(err)
	}
	m.proc = start(t, m.dir, "quarry-controller", "-grpc-addr", m.grpc, "-http-addr", m.http, "-report-interval", "1s", "-config", cfg)
	eventually(t, m.id+" up", 60*time.Second, func() bool {
		select {
		case <-m.done:
			t.Fatalf("%s exited at start:\n%s", m.id, m.output())
		default:
		}
		resp, err := http.Get("http://" + m.http + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// ready reports whether the member serves as leader.
func (m *groupMember) ready() bool {
	resp, err := http.Get("http://" + m.http + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// groupMembers lays out three members under root, each with its own
// ports and data dir; extra is configuration every member shares.
func groupMembers(t *testing.T, root, extra string) []*groupMember {
	t.Helper()
	var ms []*groupMember
	for i := 1; i <= 3; i++ {
		m := &groupMember{id: fmt.Sprintf("ctl-%d", i), dir: filepath.Join(root, fmt.Sprintf("c%d", i)),
			grpc: freePort(t), http: freePort(t), raft: freePort(t), serf: net.JoinHostPort(gossipAddr(t, "127.0.0.1")), extra: extra}
		if err := os.MkdirAll(filepath.Join(m.dir, "quarry-data"), 0o700); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	return ms
}

// shareGroupSecrets copies the first member's CA and gossip keys to the
// others, as the README says an operator does before their first start.
func shareGroupSecrets(t *testing.T, ms []*groupMember) {
	t.Helper()
	for _, m := range ms[1:] {
		testsupport.CopyTree(t, filepath.Join(ms[0].dir, "quarry-data", "pki"), filepath.Join(m.dir, "quarry-data", "pki"))
		for _, f := range []string{"gossip-keyring.json", "gossip-event.key"} {
			b, err := os.ReadFile(filepath.Join(ms[0].dir, "quarry-data", f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(m.dir, "quarry-data", f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// waitGroupAlive waits for every member to be an alive voter.
func waitGroupAlive(t *testing.T, ms []*groupMember) {
	t.Helper()
	testsupport.Poll(t, "every member an alive voter", 60*time.Second, func() (bool, string) {
		p, err := groupPeers(t, ms[0].dir, ms)
		if err != nil {
			return false, err.Error()
		}
		alive := 0
		for _, peer := range p.Peers {
			if peer.Alive && peer.Voter {
				alive++
			}
		}
		return alive == len(ms), fmt.Sprint(p.Peers)
	})
}

// groupCtl runs quarryctl against the members' addresses, in order, with
// the local credentials the first controller wrote when it ran alone
// (tokens and the CA are the group's).
func groupCtl(t *testing.T, ms []*groupMember, args ...string) (string, error) {
	t.Helper()
	return groupCtlVia(t, ms[0].dir, ms, args...)
}

func groupCtlVia(t *testing.T, creds string, ms []*groupMember, args ...string) (string, error) {
	t.Helper()
	var addrs []string
	for _, m := range ms {
		addrs = append(addrs, m.grpc)
	}
	full := append([]string{"--controller", strings.Join(addrs, ","), "--data-dir", filepath.Join(creds, "quarry-data"), "--config", filepath.Join(creds, "none.yaml")}, args...)
	cmd := exec.Command(filepath.Join(bins(t), "quarryctl"), full...)
	cmd.Dir = creds
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func groupRigs(t *testing.T, ms []*groupMember) (map[string]rigJSON, error) {
	return groupRigsVia(t, ms[0].dir, ms)
}

func groupPeers(t *testing.T, creds string, ms []*groupMember) (*quarryv1.ListPeersResponse, error) {
	out, err := groupCtlVia(t, creds, ms, "operator", "raft", "list-peers", "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	resp := &quarryv1.ListPeersResponse{}
	if err := protojson.Unmarshal([]byte(out), resp); err != nil {
		return nil, fmt.Errorf("list-peers json: %v\n%s", err, out)
	}
	return resp, nil
}

// TestControllerGroupFailover: a controller that ran alone becomes the
// first member of a group (bootstrap_expect 1), two empty members join it
// through the pool, rigs know all three; SIGKILL of the leader under load
// gives a new leader within seconds, every rig reconnects to it, and every
// report a rig had acknowledged is there exactly once.
func TestControllerGroupFailover(t *testing.T) {
	root := t.TempDir()
	billing := fmt.Sprintf("billing: {enabled: true, stripe_url: %s, flush_interval: 200ms, retry_base: 100ms}\n", startStripeMock(t))
	// erg pays best for the simulated "b" cards: each b rig is switched
	// to it once, and a new leader must not switch it again.
	market := filepath.Join(root, "market.json")
	simMarket(t, market, 20)
	profit := simControllerConfig(market)
	t.Setenv("QUARRY_BILLING_STRIPE_KEY", "sk_test_group")
	ms := groupMembers(t, root, billing+profit)
	// Alone first: the data dir gets its CA, keys and a join token.
	// Its profit settings seed the database, so it starts with the same
	// configuration the members get.
	aloneCfg := filepath.Join(ms[0].dir, "alone.yaml")
	if err := os.WriteFile(aloneCfg, []byte(billing+profit), 0o600); err != nil {
		t.Fatal(err)
	}
	alone := startController(t, ms[0].dir, ms[0].grpc, ms[0].http, "-gossip-port", portOf(net.JoinHostPort(gossipAddr(t, "127.0.0.1"))), "-config", aloneCfg)
	tokens := []string{alone.newToken(t, "--rig-name", "rig0"), alone.newToken(t, "--rig-name", "rig1")}
	simToken := filepath.Join(root, "sim-token")
	if err := os.WriteFile(simToken, []byte(alone.newToken(t, "--uses", fmt.Sprint(groupSimRigs), "--ttl", "1h")), 0o600); err != nil {
		t.Fatal(err)
	}
	alone.stop()
	// The members share the CA and the gossip keys (README: "Controllers
	// in a group").
	shareGroupSecrets(t, ms)

	startMember(t, ms[0], 1, "")
	eventually(t, "the first member leads", 30*time.Second, ms[0].ready)
	startMember(t, ms[1], 0, ms[0].serf)
	startMember(t, ms[2], 0, ms[0].serf)
	waitGroupAlive(t, ms)
	if ms[1].ready() || ms[2].ready() {
		t.Fatal("a standby says it is ready")
	}
	// The group's health is in the leader's metrics.
	testsupport.Poll(t, "group health in /metrics/controller", 30*time.Second, func() (bool, string) {
		resp, err := http.Get("http://" + ms[0].http + "/metrics/controller")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body := string(b)
		for _, want := range []string{`quarry_cluster_peer_leader{peer="ctl-1"} 1`, `quarry_cluster_peer_up{peer="ctl-2"} 1`, `quarry_cluster_peer_up{peer="ctl-3"} 1`,
			`quarry_cluster_peer_lag_entries{peer="ctl-3"}`, "quarry_cluster_term ", "quarry_cluster_commit_index "} {
			if !strings.Contains(body, want) {
				return false, "missing " + want
			}
		}
		return true, ""
	})
	// A standby forwards an admin call to the leader, which checks the
	// token and audits it: a join token created through the second member
	// is the group's. A call without a token (a rig's) is refused with
	// the leader's address.
	out, err := groupCtlVia(t, ms[0].dir, ms[1:2], "token", "create", "--rig-name", "via-standby")
	if err != nil {
		t.Fatalf("token create through a standby: %v\n%s", err, out)
	}
	if out, err := groupCtl(t, ms[:1], "token", "joins"); err != nil || !strings.Contains(out, "via-standby") {
		t.Fatalf("the leader does not list the token made through a standby: %v\n%s", err, out)
	}
	caCert, err := pki.ReadCertFile(filepath.Join(ms[0].dir, "quarry-data", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	conn, err := grpc.NewClient(ms[1].grpc, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = quarryv1.NewFleetServiceClient(conn).ListRigs(context.Background(), &quarryv1.ListRigsRequest{})
	if hint, refused := leaderhint.Leader(err); !refused || hint != ms[0].grpc {
		t.Fatalf("a standby answered a call without credentials with %v; want a refusal naming %s", err, ms[0].grpc)
	}

	addrs := ms[0].grpc + "," + ms[1].grpc + "," + ms[2].grpc
	var agents []*proc
	var agentDirs []string
	for i := range 2 {
		d := filepath.Join(root, fmt.Sprintf("rig%d", i))
		agentDirs = append(agentDirs, d)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		agents = append(agents, startAgent(t, d, addrs, tokens[i]))
	}
	profile := filepath.Join(root, "profile.yaml")
	if err := os.WriteFile(profile, []byte(simProfile), 0o600); err != nil {
		t.Fatal(err)
	}
	sim := start(t, root, "quarry-sim", "-controller", addrs, "-profile", profile, "-rigs", fmt.Sprint(groupSimRigs),
		"-interval", "200ms", "-data-dir", filepath.Join(root, "sim"), "-token-file", simToken)
	var before map[string]rigJSON
	testsupport.Poll(t, "every rig online and reporting", 90*time.Second, func() (bool, string) {
		rigs, err := groupRigs(t, ms)
		if err != nil {
			return false, err.Error()
		}
		before = rigs
		var behind []string
		for name, r := range rigs {
			if !r.Online || u(r.LastSeq) < 20 {
				behind = append(behind, name)
			}
		}
		return len(rigs) == 2+groupSimRigs && len(behind) == 0, fmt.Sprintf("%d rigs, behind: %v", len(rigs), behind)
	})

	testsupport.Poll(t, "every b rig switched to erg once", 60*time.Second, func() (bool, string) {
		sw := groupSwitches(t, ms)
		return len(sw) == groupSimRigs/2, fmt.Sprint(sw)
	})

	// State the group must keep: a flight sheet, a hosting plan, and a
	// command queued for a rig that is away when the leader dies.
	sheetFile := filepath.Join(root, "xmr.yaml")
	if err := os.WriteFile(sheetFile, []byte(groupSheet), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCtl := func(args ...string) string {
		t.Helper()
		out, err := groupCtl(t, ms, args...)
		if err != nil {
			t.Fatalf("quarryctl %v: %v\n%s", args, err, out)
		}
		return out
	}
	mustCtl("flightsheet", "put", "-f", sheetFile)
	mustCtl("plan", "create", "std", "--name", "Standard", "--fee-per-rig", "45", "--price-per-kwh", "0.125",
		"--stripe-price", "price_rig_monthly", "--stripe-energy-price", "price_energy_wh")
	mustCtl("customer", "create", "Acme Hosting", "--email", "ops@acme.example", "--plan", "std")
	mustCtl("customer", "assign", "acme-hosting", "rig0")
	outboxBefore := groupOutbox(t, ms)
	agents[1].stop()
	eventually(t, "rig1 offline", time.Minute, func() bool {
		rigs, err := groupRigs(t, ms)
		return err == nil && !rigs["rig1"].Online
	})
	pingID := strings.Fields(mustCtl("rig", "command", "rig1", "ping", "--wait=false"))[0]

	killed := time.Now()
	if err := ms[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-ms[0].done
	var leader *groupMember
	eventually(t, "a new leader serving", 60*time.Second, func() bool {
		for _, m := range ms[1:] {
			if m.ready() {
				leader = m
				return true
			}
		}
		return false
	})
	t.Logf("leader killed → %s serving in %v", leader.id, time.Since(killed).Round(time.Millisecond))
	agents[1] = startAgent(t, agentDirs[1], addrs, "")
	eventually(t, "the command queued before the kill runs on rig1", time.Minute, func() bool {
		return strings.Contains(agents[1].output(), pingID)
	})
	testsupport.Poll(t, "every rig reconnected to the new leader and reporting", 90*time.Second, func() (bool, string) {
		rigs, err := groupRigs(t, ms)
		if err != nil {
			return false, err.Error()
		}
		var behind []string
		for name, b := range before {
			if r := rigs[name]; !r.Online || u(r.LastSeq) < u(b.LastSeq)+20 {
				behind = append(behind, name)
			}
		}
		return len(behind) == 0, fmt.Sprint("behind: ", behind)
	})
	// A rig drops a report from its buffer only once acknowledged, and
	// goes on from there: an acknowledged report the group lost would be
	// a gap, one it kept twice a repeat.
	rigs, err := groupRigs(t, ms)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range rigs {
		if u(r.SeqGaps) != 0 || u(r.Reports) != u(r.LastSeq) {
			t.Errorf("%s: %s reports, last seq %s, %s gaps across the failover", name, r.Reports, r.LastSeq, r.SeqGaps)
		}
	}
	for _, a := range agents {
		a.stop()
	}
	sim.stop()
	if n := strings.Count(agents[1].output(), "running command\" command="+pingID); n != 1 {
		t.Errorf("the command queued before the kill ran %d times on rig1, want once:\n%s", n, agents[1].output())
	}
	if rigs, err = groupRigs(t, ms); err != nil {
		t.Fatal(err)
	}
	for i, d := range agentDirs {
		name := fmt.Sprintf("rig%d", i)
		checkNothingLost(t, name, d, rigs[name])
	}
	p, err := groupPeers(t, ms[0].dir, ms)
	if err != nil {
		t.Fatal(err)
	}
	if p.LeaderId != leader.id {
		t.Fatalf("list-peers names leader %q, %s serves", p.LeaderId, leader.id)
	}

	// No double switch: the new leader keeps each rig's state and sends
	// nothing the old one sent.
	if sw := groupSwitches(t, ms); len(sw) != groupSimRigs/2 {
		t.Errorf("switches after the failover: %v; want each b rig switched to erg once", sw)
	}

	// Billing: every Stripe call the old leader recorded is delivered by
	// the new one under the same record and idempotency key, and none is
	// recorded twice.
	var outbox []outboxRecord
	testsupport.Poll(t, "the outbox delivered by the new leader", 60*time.Second, func() (bool, string) {
		outbox = groupOutbox(t, ms)
		for _, r := range outbox {
			if r.State != "done" {
				return false, fmt.Sprint(outbox)
			}
		}
		return len(outbox) > 0, "empty outbox"
	})
	byID := map[string]outboxRecord{}
	kinds := map[string]int{}
	for _, r := range outbox {
		byID[r.ID] = r
		kinds[r.Kind+" "+r.Customer]++
	}
	for _, b := range outboxBefore {
		if a, ok := byID[b.ID]; !ok || a.IdempotencyKey != b.IdempotencyKey || a.Kind != b.Kind {
			t.Errorf("outbox record %s (%s, key %s) before the kill is %+v after it", b.ID, b.Kind, b.IdempotencyKey, a)
		}
	}
	for _, k := range []string{"customer.create acme-hosting", "subscription.create acme-hosting"} {
		if kinds[k] != 1 {
			t.Errorf("%d outbox records %q, want exactly 1: %+v", kinds[k], k, outbox)
		}
	}

	// A snapshot of the live group restored into a fresh single
	// controller (holding the group's CA) has the same rigs, join
	// tokens, flight sheets and billing plans.
	snap := filepath.Join(root, "group.snap")
	mustCtl("operator", "snapshot", "save", snap)
	// A member's file is the group's: a restore goes to a single
	// controller, and the member says so.
	if out, err := groupCtl(t, ms, "operator", "snapshot", "restore", snap); err == nil || !strings.Contains(out, "bootstrap_expect 1") {
		t.Fatalf("a group member took a restore: %v\n%s", err, out)
	}
	fresh := filepath.Join(root, "fresh")
	testsupport.CopyTree(t, filepath.Join(ms[0].dir, "quarry-data", "pki"), filepath.Join(fresh, "quarry-data", "pki"))
	fg, fh := freePort(t), freePort(t)
	freshCfg := filepath.Join(fresh, "controller.yaml")
	if err := os.WriteFile(freshCfg, []byte(billing), 0o600); err != nil {
		t.Fatal(err)
	}
	single := startController(t, fresh, fg, fh, "-gossip-port", portOf(net.JoinHostPort(gossipAddr(t, "127.0.0.1"))), "-config", freshCfg, "-local-token=false")
	if out, err := single.ctl(t, "operator", "snapshot", "restore", snap); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	single.stop()
	single = startController(t, fresh, fg, fh, "-gossip-port", portOf(net.JoinHostPort(gossipAddr(t, "127.0.0.1"))), "-config", freshCfg, "-local-token=false")
	var restored []rigJSON
	for _, r := range single.rigs(t) {
		restored = append(restored, rigJSON{ID: r.ID, Name: r.Name, LastSeq: r.LastSeq, Reports: r.Reports, SeqGaps: r.SeqGaps})
	}
	var kept []rigJSON
	for _, r := range rigs {
		kept = append(kept, rigJSON{ID: r.ID, Name: r.Name, LastSeq: r.LastSeq, Reports: r.Reports, SeqGaps: r.SeqGaps})
	}
	slices.SortFunc(restored, func(a, b rigJSON) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(kept, func(a, b rigJSON) int { return strings.Compare(a.Name, b.Name) })
	if !slices.Equal(restored, kept) {
		t.Errorf("rigs after restore:\n%v\nin the group:\n%v", restored, kept)
	}
	for _, args := range [][]string{{"flightsheet", "show", "xmr", "-o", "json"}, {"plan", "list", "-o", "json"}, {"customer", "list", "-o", "json"}, {"token", "joins", "-o", "json"}} {
		want := mustCtl(args...)
		got, err := single.ctl(t, args...)
		if err != nil {
			t.Fatalf("restored controller: quarryctl %v: %v\n%s", args, err, got)
		}
		if got != want {
			t.Errorf("quarryctl %v differs after restore:\n--- group ---\n%s\n--- restored ---\n%s", args, want, got)
		}
	}
}

// groupSwitches counts the switches to erg per rig id; it fails the test
// on any other switch or a rig switched twice.
func groupSwitches(t *testing.T, ms []*groupMember) map[string]int {
	t.Helper()
	out, err := groupCtl(t, ms, "profit", "switches", "-o", "json")
	if err != nil {
		t.Fatalf("profit switches: %v\n%s", err, out)
	}
	resp := &quarryv1.ListSwitchesResponse{}
	if err := protojson.Unmarshal([]byte(out), resp); err != nil {
		t.Fatalf("switches json: %v\n%s", err, out)
	}
	per := map[string]int{}
	for _, s := range resp.Switches {
		if s.Action != "switch" {
			continue
		}
		if !strings.HasPrefix(s.To, "erg") {
			t.Errorf("unexpected switch %s→%s of %s", s.From, s.To, s.RigId)
		}
		per[s.RigId]++
		if per[s.RigId] > 1 {
			t.Errorf("%s switched %d times: %v", s.RigId, per[s.RigId], resp.Switches)
		}
	}
	return per
}

type outboxRecord struct {
	ID             string `json:"id"`
	Kind           string `json:"kind"`
	State          string `json:"state"`
	Customer       string `json:"customer"`
	IdempotencyKey string `json:"idempotencyKey"`
}

func groupOutbox(t *testing.T, ms []*groupMember) []outboxRecord {
	t.Helper()
	out, err := groupCtl(t, ms, "billing", "outbox", "--all", "-o", "json")
	if err != nil {
		t.Fatalf("billing outbox: %v\n%s", err, out)
	}
	var resp struct {
		Records []outboxRecord `json:"records"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("outbox json: %v\n%s", err, out)
	}
	return resp.Records
}

const groupSheet = `name: xmr
coin: XMR
algorithm: rx/0
miner:
  name: xmrig
  path: /var/lib/quarry/miners/xmrig
  sha256: 3b1f8c2e4a6d9f0b7c5e1a2d4f6b8c0e2a4c6e8f0a1b3c5d7e9f1a3b5c7d9e1f
pools:
  - {url: "stratum+tcp://pool.example:3333", user: WALLET.rig01}
`

// partition drops every packet between the member at ip and the others,
// both ways, on loopback (members dial and gossip from their own
// addresses), until the returned heal runs.
func partition(t *testing.T, ip string, others ...string) (heal func()) {
	t.Helper()
	testsupport.RequireTool(t, "iptables", "apt-get install iptables")
	if os.Geteuid() != 0 {
		testsupport.Missing(t, "root for iptables", "run the tests as root")
	}
	var rules [][]string
	for _, o := range others {
		rules = append(rules, []string{"INPUT", "-s", ip, "-d", o, "-j", "DROP"}, []string{"INPUT", "-s", o, "-d", ip, "-j", "DROP"})
	}
	for _, r := range rules {
		if out, err := exec.Command("iptables", append([]string{"-I"}, r...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables -I %v: %v: %s", r, err, out)
		}
	}
	healed := false
	heal = func() {
		if healed {
			return
		}
		healed = true
		for _, r := range rules {
			if out, err := exec.Command("iptables", append([]string{"-D"}, r...)...).CombinedOutput(); err != nil {
				t.Errorf("iptables -D %v: %v: %s", r, err, out)
			}
		}
	}
	t.Cleanup(heal)
	return heal
}

// dbDigest is every bucket, key, value and sequence of a stopped member's
// database, in order.
func dbDigest(t *testing.T, dir string) []string {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "quarry-data", "quarry.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []string
	var walk func(path string, b *bolt.Bucket) error
	walk = func(path string, b *bolt.Bucket) error {
		out = append(out, fmt.Sprintf("%s seq=%d", path, b.Sequence()))
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(path+"/"+string(k), b.Bucket(k))
			}
			out = append(out, fmt.Sprintf("%s/%x=%x", path, sha256.Sum256(k), sha256.Sum256(v)))
			return nil
		})
	}
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walk(string(name), b) })
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestControllerGroupPartition: the leader cut off from the other two
// stops serving and refuses writes, the majority elects a leader and the
// rigs go on with it; once healed, the old leader follows and all three
// files hold one history.
func TestControllerGroupPartition(t *testing.T) {
	root := t.TempDir()
	var ms []*groupMember
	for i := 1; i <= 3; i++ {
		ip := fmt.Sprintf("127.0.0.%d", 10+i)
		m := &groupMember{id: fmt.Sprintf("ctl-%d", i), dir: filepath.Join(root, fmt.Sprintf("c%d", i))}
		m.grpc, m.http, m.raft, m.serf = freePortOn(t, ip), freePortOn(t, ip), freePortOn(t, ip), net.JoinHostPort(gossipAddr(t, ip))
		if err := os.MkdirAll(filepath.Join(m.dir, "quarry-data"), 0o700); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	if _, err := pki.LoadOrCreateCA(filepath.Join(ms[0].dir, "quarry-data", "pki"), time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[1:] {
		testsupport.CopyTree(t, filepath.Join(ms[0].dir, "quarry-data", "pki"), filepath.Join(m.dir, "quarry-data", "pki"))
	}
	for _, m := range ms {
		join := ""
		if m != ms[0] {
			join = ms[0].serf
		}
		startMember(t, m, 3, join)
	}
	leader := groupLeader(t, ms)
	ctl := func(args ...string) (string, error) { return groupCtlVia(t, leader.dir, ms, args...) }
	tokenFile := filepath.Join(root, "sim-token")
	out, err := ctl("token", "create", "--uses", "10", "--ttl", "1h")
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	if err := os.WriteFile(tokenFile, []byte(strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	profile := filepath.Join(root, "profile.yaml")
	if err := os.WriteFile(profile, []byte(simProfile), 0o600); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, m := range ms {
		addrs = append(addrs, m.grpc)
	}
	sim := start(t, root, "quarry-sim", "-controller", strings.Join(addrs, ","), "-profile", profile, "-rigs", "10",
		"-interval", "200ms", "-data-dir", filepath.Join(root, "sim"), "-token-file", tokenFile)
	seqs := func(via *groupMember) (map[string]uint64, error) {
		rigs, err := groupRigsVia(t, via.dir, ms)
		if err != nil {
			return nil, err
		}
		out := map[string]uint64{}
		for n, r := range rigs {
			if r.Online {
				out[n] = u(r.LastSeq)
			}
		}
		return out, nil
	}
	var before map[string]uint64
	testsupport.Poll(t, "ten rigs reporting to the leader", 60*time.Second, func() (bool, string) {
		s, err := seqs(leader)
		if err != nil {
			return false, err.Error()
		}
		before = s
		n := 0
		for _, v := range s {
			if v >= 10 {
				n++
			}
		}
		return n == 10, fmt.Sprint(s)
	})

	var rest []*groupMember
	var restIPs []string
	for _, m := range ms {
		if m != leader {
			rest = append(rest, m)
			restIPs = append(restIPs, hostOf(m.raft))
		}
	}
	heal := partition(t, hostOf(leader.raft), restIPs...)
	newLeader := groupLeader(t, rest)
	eventually(t, "the cut-off leader stops serving", 30*time.Second, func() bool { return !leader.ready() })
	if out, err := groupCtlVia(t, leader.dir, []*groupMember{leader}, "token", "create"); err == nil || !strings.Contains(out, "not the leader") {
		t.Fatalf("the cut-off member took a write: %v\n%s", err, out)
	}
	testsupport.Poll(t, "the rigs go on with the majority's leader", 60*time.Second, func() (bool, string) {
		s, err := seqs(newLeader)
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for name, v := range s {
			if v >= before[name]+10 {
				n++
			}
		}
		return n == 10, fmt.Sprint(s)
	})

	heal()
	testsupport.Poll(t, "the old leader back as a follower, caught up", 60*time.Second, func() (bool, string) {
		p, err := groupPeers(t, newLeader.dir, rest)
		if err != nil {
			return false, err.Error()
		}
		ok := 0
		for _, peer := range p.Peers {
			if peer.Alive && peer.AppliedIndex > 0 && peer.Lag < 50 {
				ok++
			}
			if peer.Id == leader.id && peer.Leader {
				return false, "old leader leads again"
			}
		}
		return ok == 3, fmt.Sprint(p.Peers)
	})
	sim.stop()
	// Quiet now: wait until every member applied the leader's last index,
	// then stop them all and compare their files.
	testsupport.Poll(t, "every member applied the last index", 60*time.Second, func() (bool, string) {
		p, err := groupPeers(t, newLeader.dir, rest)
		if err != nil {
			return false, err.Error()
		}
		for _, peer := range p.Peers {
			if peer.Lag != 0 || peer.AppliedIndex == 0 {
				return false, fmt.Sprint(p.Peers)
			}
		}
		return true, ""
	})
	for _, m := range []*groupMember{leader, rest[0], rest[1]} {
		m.stop()
	}
	want := dbDigest(t, newLeader.dir)
	for _, m := range ms {
		if got := dbDigest(t, m.dir); !slices.Equal(got, want) {
			t.Errorf("%s's file differs from the leader's: %d entries vs %d", m.id, len(got), len(want))
		}
	}
}

// groupLeader waits for a member of ms to serve as leader.
func groupLeader(t *testing.T, ms []*groupMember) *groupMember {
	t.Helper()
	var l *groupMember
	eventually(t, "a leader serving", 60*time.Second, func() bool {
		for _, m := range ms {
			if m.ready() {
				l = m
				return true
			}
		}
		return false
	})
	return l
}

func hostOf(addr string) string { return addr[:strings.LastIndex(addr, ":")] }

func freePortOn(t *testing.T, ip string) string {
	t.Helper()
	return localPorts.Addr(t, ip)
}

func groupRigsVia(t *testing.T, creds string, ms []*groupMember) (map[string]rigJSON, error) {
	out, err := groupCtlVia(t, creds, ms, "rigs", "list", "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var resp struct {
		Rigs []rigJSON `json:"rigs"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return nil, fmt.Errorf("rigs list json: %v\n%s", err, out)
	}
	rigs := map[string]rigJSON{}
	for _, r := range resp.Rigs {
		rigs[r.Name] = r
	}
	return rigs, nil
}
