package agentd

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/agent/miner"
	"github.com/quarryfleet/quarry/pkg/gossip"
	"github.com/quarryfleet/quarry/pkg/pki"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// GossipKeyringFile holds the rig's gossip keyring (serf's JSON format,
// primary first) once it has joined: key rotations are written here so a
// restarted agent keeps the keys in use.
const GossipKeyringFile = "gossip-keyring.json"

// GossipPortFile remembers the port taken when the configured one was busy.
// A restarted rig must come back on the same address: members remember a
// dead rig's address and refuse its name from another one.
const GossipPortFile = "gossip-port"

// Bounds of the gossip side of the agent.
const (
	gossipActionTimeout = time.Minute
	gossipLeaveTimeout  = 5 * time.Second
	maxGossipEvents     = 64
	maxModelTag         = 64
	maxAnswerGPUs       = 12
	// maxSettingsJoin bounds the join addresses a controller's settings
	// may carry: a group has a handful of members, and each address is a
	// dial this rig makes on the controller's word.
	maxSettingsJoin = 8
)

// GossipConfig configures the rig's member of the gossip cluster. The keys,
// the controller's event key and its gossip address come from enrollment.
type GossipConfig struct {
	Enabled     bool          `yaml:"enabled" flag:"gossip-enabled" help:"join the controller's gossip cluster when enrollment handed over its keys"`
	BindAddr    string        `yaml:"bind_addr" flag:"gossip-bind" help:"IP the gossip port listens on (default 0.0.0.0, or 127.0.0.1 when every join address is loopback)"`
	BindPort    int           `yaml:"bind_port" flag:"gossip-port" help:"gossip UDP and TCP port; if taken, a free one is used; 0 always picks a free one"`
	Advertise   string        `yaml:"advertise" flag:"gossip-advertise" help:"address other members dial, IP or IP:port (behind NAT)"`
	Join        []string      `yaml:"join" flag:"gossip-join" help:"gossip addresses host:port to join, comma-separated (default: the controller's, from enrollment)"`
	Profile     string        `yaml:"profile" flag:"gossip-profile" help:"failure detection timings: lan or tuned"`
	EventMaxAge time.Duration `yaml:"event_max_age" help:"oldest signed fleet event or query acted on"`
}

// DefaultGossipConfig is what a rig uses with no settings.
func DefaultGossipConfig() GossipConfig {
	return GossipConfig{Enabled: true, BindPort: gossip.DefaultPort, Profile: string(gossip.ProfileLAN), EventMaxAge: 2 * time.Minute}
}

func (g GossipConfig) validate() error {
	return gossip.Settings{BindAddr: g.BindAddr, BindPort: g.BindPort, Advertise: g.Advertise, Join: g.Join, Profile: g.Profile, EventMaxAge: g.EventMaxAge}.Validate()
}

// gossipAgent is the rig's gossip member: it publishes the rig's tags,
// acts on the controller's signed pause and resume events, answers fleet
// queries from the latest sample, and follows keyring changes.
type gossipAgent struct {
	a       *Agent
	log     *slog.Logger
	base    gossip.Config // everything but the port and keys
	keyring string        // path of GossipKeyringFile

	mu     sync.Mutex
	node   *gossip.Node
	tags   gossip.Tags
	latest *gossipSample
	events []*quarryv1.Event

	actions chan gossip.FleetEvent
	rekey   chan []string
	join    chan []string
	// rejoin is where a keyring change rejoins: the latest serving
	// controller's gossip address, else the one from enrollment. Owned by
	// work.
	rejoin []string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// gossipSample is what queries answer from: the latest report's figures.
type gossipSample struct {
	At     time.Time
	GPUs   []gpuTemp
	Miners []minerRate
}

type gpuTemp struct {
	Index uint32   `json:"i"`
	Name  string   `json:"name,omitempty"`
	Temp  *float64 `json:"c,omitempty"`
	Mem   *float64 `json:"mem_c,omitempty"`
	Lost  bool     `json:"lost,omitempty"`
}

type minerRate struct {
	Miner     string  `json:"miner"`
	Algorithm string  `json:"algo,omitempty"`
	Hashrate  float64 `json:"hs"`
	State     string  `json:"state,omitempty"`
}

// startGossip joins the cluster when enrollment handed over gossip keys
// and gossip is enabled; otherwise it returns nil, which every method
// accepts.
func (a *Agent) startGossip(ctx context.Context) *gossipAgent {
	cfg := a.cfg.Gossip
	if !cfg.Enabled || a.id == nil || a.id.Enrollment == nil || len(a.id.Enrollment.GossipKeys) == 0 {
		return nil
	}
	enr := a.id.Enrollment
	log := a.log.With("part", "gossip")
	join := cfg.Join
	if len(join) == 0 {
		join = enr.GossipJoin
	}
	var trusted []ed25519.PublicKey
	if len(enr.EventPublicKey) == ed25519.PublicKeySize {
		trusted = append(trusted, ed25519.PublicKey(enr.EventPublicKey))
	} else {
		log.Warn("enrollment carried no valid event key; fleet events and queries will be refused")
	}
	bind := cfg.BindAddr
	if bind == "" {
		bind = "0.0.0.0"
		if allLoopback(join) {
			bind = "127.0.0.1"
		}
	}
	advAddr, advPort, _ := gossip.ParseAdvertise(cfg.Advertise)
	g := &gossipAgent{
		a: a, log: log, keyring: filepath.Join(a.cfg.DataDir, GossipKeyringFile),
		actions: make(chan gossip.FleetEvent, 16), rekey: make(chan []string, 1), join: make(chan []string, 1),
		rejoin: join,
	}
	g.tags = gossip.Tags{Role: gossip.RoleAgent, RigID: a.RigID(), Version: a.version, GRPC: "disconnected"}
	if a.sampler != nil {
		if inv := a.sampler.Inventory(ctx); inv != nil {
			g.tags.GPUCount, g.tags.GPUModel = gpuSummary(inv.Gpus)
		}
	}
	g.base = gossip.Config{
		NodeName: a.RigID(), BindAddr: bind, AdvertiseAddr: advAddr, AdvertisePort: advPort,
		Join: join, Keys: enr.GossipKeys, KeyringFile: g.keyring,
		Profile: gossip.Profile(cfg.Profile), TrustedKeys: trusted, EventWindow: cfg.EventMaxAge, Logger: log,
	}
	g.base.OnKeyringTamper = g.keyringTampered
	// The certificate's key signs our name, address and tags and our
	// query answers: the controller trusts gossip claims only with it.
	if a.id.Signer() != nil {
		g.base.Identity = certSigner{a.id}
	}
	n, err := g.startOnSomePort(ctx, cfg.BindPort)
	if err != nil {
		log.Error("gossip did not start; this rig is reachable only over gRPC", "err", err)
		return nil
	}
	g.node = n
	a.OnReport(g.observeReport)
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.cancel = cancel
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.work(wctx)
	}()
	return g
}

// startOnSomePort tries the configured port, then the one a previous run
// fell back to, then any free one, which it remembers.
func (g *gossipAgent) startOnSomePort(ctx context.Context, configured int) (*gossip.Node, error) {
	portFile := filepath.Join(g.a.cfg.DataDir, GossipPortFile)
	var tries []int
	if configured > 0 {
		tries = append(tries, configured)
	}
	if b, err := os.ReadFile(portFile); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 0 && p <= 65535 && p != configured {
			tries = append(tries, p)
		}
	}
	for _, p := range tries {
		n, err := g.startNode(ctx, p)
		if err == nil {
			return n, nil
		}
		g.log.Warn("gossip port unavailable", "port", p, "err", err)
	}
	n, err := g.startNode(ctx, -1)
	if err != nil {
		return nil, err
	}
	port := n.Addr().Port()
	if err := pki.WriteFileAtomic(portFile, []byte(strconv.Itoa(int(port))+"\n"), 0o600); err != nil {
		g.log.Warn("remember gossip port", "err", err)
	}
	g.log.Info("gossip on a free port", "port", port)
	return n, nil
}

func allLoopback(addrs []string) bool {
	if len(addrs) == 0 {
		return false
	}
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return false
		}
		ip := net.ParseIP(host)
		if (ip == nil || !ip.IsLoopback()) && host != "localhost" {
			return false
		}
	}
	return true
}

// gpuSummary returns the GPU count and the most common model.
func gpuSummary(gpus []*quarryv1.GPUStats) (int, string) {
	count := map[string]int{}
	best := ""
	for _, g := range gpus {
		count[g.Name]++
		if count[g.Name] > count[best] || (count[g.Name] == count[best] && g.Name < best) {
			best = g.Name
		}
	}
	if len(best) > maxModelTag {
		best = best[:maxModelTag]
	}
	return len(gpus), best
}

func (g *gossipAgent) startNode(ctx context.Context, port int) (*gossip.Node, error) {
	cfg := g.base
	cfg.BindPort = port
	g.mu.Lock()
	cfg.Tags = g.tags
	g.mu.Unlock()
	if err := gossip.CheckPortFree(cfg.BindAddr, port); err != nil {
		return nil, err
	}
	n, err := gossip.New(cfg)
	if err != nil {
		return nil, err
	}
	n.HandleEvents("pause", gossip.EventHandlerFunc(g.queueAction))
	n.HandleEvents("resume", gossip.EventHandlerFunc(g.queueAction))
	n.HandleQuery("temps", gossip.QueryResponderFunc(g.answerTemps))
	n.HandleQuery("hashrate", gossip.QueryResponderFunc(g.answerHashrate))
	n.HandleQuery("version", gossip.QueryResponderFunc(g.answerVersion))
	if err := n.Start(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

// close leaves the cluster so the controller sees "left", not "failed".
func (g *gossipAgent) close() {
	if g == nil {
		return
	}
	g.cancel()
	g.wg.Wait()
	g.mu.Lock()
	n := g.node
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), gossipLeaveTimeout)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		g.log.Warn("gossip leave", "err", err)
	}
}

// linkState publishes the gRPC link's state as the grpc tag.
func (g *gossipAgent) linkState(up bool) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tags.GRPC = "disconnected"
	if up {
		g.tags.GRPC = "connected"
	}
	if err := g.node.SetTags(g.tags); err != nil {
		g.log.Warn("publish gossip tags", "err", err)
	}
}

// settings takes the controller's gossip keyring and gossip address, which
// arrive only over the authenticated gRPC link (Welcome, or pushed when the
// controller rotates keys). Serf's own key queries are undone by the node:
// no other member may change this rig's keyring.
func (g *gossipAgent) settings(s *quarryv1.AgentSettings) {
	if g == nil {
		return
	}
	g.takeKeys(s.GetGossipKeys())
	g.takeJoin(s.GetGossipJoin())
}

func (g *gossipAgent) takeKeys(keys []string) {
	if len(keys) == 0 {
		return
	}
	g.mu.Lock()
	held := g.node.Keys()
	g.mu.Unlock()
	if slices.Equal(held, keys) {
		return
	}
	select {
	case <-g.rekey: // a newer keyring replaces one not yet applied
	default:
	}
	g.rekey <- slices.Clone(keys)
}

// takeJoin queues a join to the serving controller's gossip node. After a
// failover the new leader's node starts knowing nobody and the address
// from enrollment is the dead leader's: without this join the rig and the
// controller never gossip again.
func (g *gossipAgent) takeJoin(addrs []string) {
	if len(addrs) == 0 {
		return
	}
	if err := checkJoin(addrs); err != nil {
		g.log.Warn("controller sent unusable gossip join addresses; ignored", "err", err)
		return
	}
	select {
	case <-g.join: // the latest controller's address replaces one not yet tried
	default:
	}
	g.join <- slices.Clone(addrs)
}

// checkJoin vets join addresses that came from the network before the
// rig dials them.
func checkJoin(addrs []string) error {
	if len(addrs) > maxSettingsJoin {
		return fmt.Errorf("%d addresses, at most %d", len(addrs), maxSettingsJoin)
	}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || len(host) > 253 {
			return fmt.Errorf("%.80q is not host:port", a)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%.80q: bad port", a)
		}
	}
	return nil
}

// notAlive drops the addresses of members already alive: the usual
// Welcome comes from a controller this rig already gossips with.
// Addresses by name cannot be matched and are kept; joining a member
// again is harmless.
func notAlive(members []gossip.Member, addrs []string) []string {
	alive := map[netip.AddrPort]bool{}
	for _, m := range members {
		if m.Status == "alive" {
			alive[m.Addr] = true
		}
	}
	var out []string
	for _, a := range addrs {
		if ap, err := netip.ParseAddrPort(a); err != nil || !alive[ap] {
			out = append(out, a)
		}
	}
	return out
}

// keyringDiverged reports whether two keyrings cannot talk: each side
// encrypts with its primary, and the other must hold it.
func keyringDiverged(local, remote []string) bool {
	if len(local) == 0 || len(remote) == 0 {
		return len(remote) > 0
	}
	return !slices.Contains(local, remote[0]) || !slices.Contains(remote, local[0])
}

// work runs fleet actions, keyring changes and joins off the gossip event
// loop.
func (g *gossipAgent) work(ctx context.Context) {
	stopJoin := func() {}
	defer func() { stopJoin() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-g.actions:
			g.act(ctx, e)
		case keys := <-g.rekey:
			g.applyKeyring(ctx, keys)
		case addrs := <-g.join:
			// The same settings may carry a new keyring: the controller
			// talks only with it.
			select {
			case keys := <-g.rekey:
				g.applyKeyring(ctx, keys)
			default:
			}
			stopJoin()
			stopJoin = g.joinController(ctx, addrs)
		}
	}
}

// joinController joins the serving controller's gossip node in the
// background, replacing a join still retrying an older address. A join
// that fails is logged; the next Welcome tries again.
func (g *gossipAgent) joinController(ctx context.Context, addrs []string) (stop func()) {
	g.rejoin = addrs
	g.mu.Lock()
	n := g.node
	g.mu.Unlock()
	addrs = notAlive(n.Members(), addrs)
	if len(addrs) == 0 {
		return func() {}
	}
	jctx, cancel := context.WithTimeout(ctx, gossipActionTimeout)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer cancel()
		if _, err := n.Join(jctx, addrs...); err != nil {
			if ctx.Err() == nil && !errors.Is(jctx.Err(), context.Canceled) {
				g.log.Warn("join the controller's gossip node; trying again at the next Welcome", "addrs", addrs, "err", err)
			}
			return
		}
		g.log.Info("joined the controller's gossip node", "addrs", addrs)
	}()
	return cancel
}

func (g *gossipAgent) queueAction(e gossip.FleetEvent) {
	select {
	case g.actions <- e:
	default:
		g.log.Warn("fleet event dropped: too many queued", "id", e.IDString(), "kind", e.Kind)
	}
}

// act runs a verified pause or resume through the rig's own command
// handlers, so it behaves exactly like the gRPC command, and records it.
func (g *gossipAgent) act(ctx context.Context, e gossip.FleetEvent) {
	var body struct {
		By string `json:"by"`
	}
	_ = json.Unmarshal(e.Body, &body)
	kind := quarryv1.CommandKind_COMMAND_KIND_PAUSE
	if e.Kind == "resume" {
		kind = quarryv1.CommandKind_COMMAND_KIND_RESUME
	}
	result := "no miner on this rig; recorded only"
	if fn, ok := g.a.handlers[kind]; ok {
		actx, cancel := context.WithTimeout(ctx, gossipActionTimeout)
		out, err := fn(actx, nil)
		cancel()
		result = string(out)
		if err != nil {
			result = "failed: " + err.Error()
		}
	}
	g.log.Info("fleet event acted on", "kind", e.Kind, "id", e.IDString(), "by", body.By, "result", result)
	g.record(&quarryv1.Event{
		TimeUnixNano: time.Now().UnixNano(), Kind: "fleet_" + e.Kind,
		Message: fmt.Sprintf("fleet %s over gossip (signed by the controller): %s", e.Kind, result),
		Fields:  map[string]string{"event_id": e.IDString(), "by": body.By, "issued": e.IssuedAt.UTC().Format(time.RFC3339Nano)},
	})
}

func (g *gossipAgent) record(e *quarryv1.Event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.events) >= maxGossipEvents {
		g.events = g.events[1:]
	}
	g.events = append(g.events, e)
}

// applyKeyring switches the node to the controller's keyring in place
// and, when the old keys could not talk to the new ones (a rotation this
// rig missed or the one just pushed), rejoins through the join addresses
// in case every peer was lost meanwhile.
func (g *gossipAgent) applyKeyring(ctx context.Context, keys []string) {
	g.mu.Lock()
	n := g.node
	g.mu.Unlock()
	old := n.Keys()
	if err := n.SetKeyring(keys); err != nil {
		g.log.Error("controller sent an unusable gossip keyring; keeping ours", "err", err)
		return
	}
	g.log.Info("took the controller's gossip keyring", "keys", len(keys), "primary", gossip.KeyFingerprint(keys[0]))
	g.record(&quarryv1.Event{TimeUnixNano: time.Now().UnixNano(), Kind: "gossip_rekey",
		Message: "gossip keyring replaced by the controller's, received over the authenticated gRPC link",
		Fields:  map[string]string{"primary": gossip.KeyFingerprint(keys[0])}})
	rejoin := g.rejoin
	if !keyringDiverged(old, keys) || len(rejoin) == 0 {
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		jctx, cancel := context.WithTimeout(ctx, gossipActionTimeout)
		defer cancel()
		if _, err := n.Join(jctx, rejoin...); err != nil && ctx.Err() == nil {
			g.log.Warn("rejoin after the keyring change", "err", err)
		}
	}()
}

// keyringTampered records that another member changed this rig's
// keyring through serf and the node undid it.
func (g *gossipAgent) keyringTampered(kt gossip.KeyringTamper) {
	g.record(&quarryv1.Event{TimeUnixNano: time.Now().UnixNano(), Kind: "gossip_keyring_tamper",
		Message: "another gossip member changed this rig's keyring with a serf key query; the change was undone",
		Fields:  map[string]string{"found": strings.Join(kt.Found, ","), "restored": strings.Join(kt.Restored, ",")}})
}

// observeReport keeps the figures queries answer from and hands queued
// fleet events to the report.
func (g *gossipAgent) observeReport(_ context.Context, r *quarryv1.Report) {
	s := &gossipSample{At: time.Now()}
	for _, gp := range r.Gpus {
		s.GPUs = append(s.GPUs, gpuTemp{Index: gp.Index, Name: gp.Name, Temp: gp.TemperatureC, Mem: gp.MemoryTemperatureC, Lost: gp.Lost})
	}
	for _, m := range r.Miners {
		s.Miners = append(s.Miners, minerRate{Miner: m.Miner, Algorithm: m.Algorithm, Hashrate: m.Hashrate, State: m.State})
	}
	g.mu.Lock()
	g.latest = s
	r.Events = append(r.Events, g.events...)
	g.events = nil
	g.mu.Unlock()
}

func (g *gossipAgent) sample() (*gossipSample, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.latest == nil {
		return nil, errors.New("no sample taken yet")
	}
	return g.latest, nil
}

func (g *gossipAgent) answerTemps(context.Context, gossip.QueryRequest) ([]byte, error) {
	s, err := g.sample()
	if err != nil {
		return nil, err
	}
	gpus := s.GPUs
	truncated := len(gpus) > maxAnswerGPUs
	if truncated {
		gpus = gpus[:maxAnswerGPUs]
	}
	return json.Marshal(struct {
		At        int64     `json:"at"`
		GPUs      []gpuTemp `json:"gpus"`
		Truncated bool      `json:"truncated,omitempty"`
	}{s.At.Unix(), gpus, truncated})
}

func (g *gossipAgent) answerHashrate(context.Context, gossip.QueryRequest) ([]byte, error) {
	s, err := g.sample()
	if err != nil {
		return nil, err
	}
	total := 0.0
	for _, m := range s.Miners {
		total += m.Hashrate
	}
	return json.Marshal(struct {
		At     int64       `json:"at"`
		Total  float64     `json:"total_hs"`
		Miners []minerRate `json:"miners"`
	}{s.At.Unix(), total, s.Miners})
}

func (g *gossipAgent) answerVersion(context.Context, gossip.QueryRequest) ([]byte, error) {
	return json.Marshal(map[string]string{"version": g.a.version, "rig": g.a.RigID()})
}

// resumeCommand runs COMMAND_KIND_RESUME: start the miner on the active
// flight sheet unless it is already running.
func (m *Miners) resumeCommand(ctx context.Context, payload []byte) ([]byte, error) {
	if st := m.sup.Status(); st.State == miner.StateRunning {
		return fmt.Appendf(nil, "miner already running, pid %d", st.PID), nil
	}
	return m.restartCommand(ctx, payload)
}

// certSigner signs with the rig certificate's current key, which a
// renewal may replace.
type certSigner struct{ id *link.Identity }

func (c certSigner) Public() crypto.PublicKey { return c.id.Signer().Public() }

func (c certSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return c.id.Signer().Sign(r, digest, opts)
}
