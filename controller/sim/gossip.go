package sim

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/pkg/gossip"
	"github.com/quarryfleet/quarry/pkg/pki"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// MaxGossipRigs is the largest fleet that may gossip per rig: each member
// probes and gossips several times a second, and a few hundred of them in
// one process measure the simulator's scheduler, not the fleet.
const MaxGossipRigs = 200

// Bounds of a simulated rig's gossip member, as the agent's.
const (
	gossipActionTimeout = time.Minute
	gossipLeaveTimeout  = 5 * time.Second
	gossipEventMaxAge   = 2 * time.Minute
	maxGossipQueued     = 16
	maxModelTag         = 64
)

// rigGossip is one simulated rig's gossip member, built as the agent
// builds its own: the keyring and the controller's event key come from
// enrollment (and later keyrings only over the authenticated gRPC link),
// the rig certificate's key signs its tags and answers, and only the
// controller's signed pause and resume events make it act.
type rigGossip struct {
	r    *simRig
	log  *slog.Logger
	node *gossip.Node
	join []string

	mu   sync.Mutex
	tags gossip.Tags

	actions chan gossip.FleetEvent
	rekey   chan []string
}

// startGossip starts rig r's member on bind (an IP) and a port it keeps
// across runs, so a restarted simulator comes back on the addresses the
// cluster remembers.
func (f *Fleet) startGossip(ctx context.Context, r *simRig) (*rigGossip, error) {
	enr := r.id.Enrollment
	if enr == nil || len(enr.GossipKeys) == 0 {
		return nil, errors.New("enrollment handed over no gossip keys (is gossip on at the controller?)")
	}
	if len(enr.EventPublicKey) != ed25519.PublicKeySize {
		return nil, errors.New("enrollment carried no valid event key")
	}
	dir := filepath.Join(f.opts.DataDir, "pki", r.Name)
	g := &rigGossip{r: r, log: f.opts.Log.With("rig", r.Name, "part", "gossip"), join: enr.GossipJoin,
		actions: make(chan gossip.FleetEvent, maxGossipQueued), rekey: make(chan []string, 1)}
	count, model := gpuSummary(r.Inventory().Gpus)
	g.tags = gossip.Tags{Role: gossip.RoleAgent, RigID: r.id.RigID(), Version: f.opts.Version, GRPC: "disconnected",
		GPUCount: count, GPUModel: model}
	prof := gossip.Profile(f.opts.GossipProfile)
	if prof == "" {
		prof = gossip.ProfileLAN
	}
	cfg := gossip.Config{
		NodeName: r.id.RigID(), BindAddr: f.opts.GossipBind, Join: enr.GossipJoin, Keys: enr.GossipKeys,
		KeyringFile: filepath.Join(dir, "gossip-keyring.json"), Profile: prof,
		TrustedKeys: []ed25519.PublicKey{ed25519.PublicKey(enr.EventPublicKey)}, EventWindow: gossipEventMaxAge,
		Identity: certSigner{r.id}, Logger: g.log, Tags: g.tags,
	}
	portFile := filepath.Join(dir, "gossip-port")
	var node *gossip.Node
	var err error
	if b, rerr := os.ReadFile(portFile); rerr == nil {
		if p, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && p > 0 && p <= 65535 {
			node, err = g.startNode(ctx, cfg, p)
			if err != nil {
				g.log.Warn("gossip port of the last run unavailable", "port", p, "err", err)
			}
		}
	}
	if node == nil {
		if node, err = g.startNode(ctx, cfg, -1); err != nil {
			return nil, err
		}
		port := strconv.Itoa(int(node.Addr().Port()))
		if err := pki.WriteFileAtomic(portFile, []byte(port+"\n"), 0o600); err != nil {
			g.log.Warn("remember gossip port", "err", err)
		}
	}
	g.node = node
	return g, nil
}

func (g *rigGossip) startNode(ctx context.Context, cfg gossip.Config, port int) (*gossip.Node, error) {
	cfg.BindPort = port
	n, err := gossip.New(cfg)
	if err != nil {
		return nil, err
	}
	n.HandleEvents("pause", gossip.EventHandlerFunc(g.queue))
	n.HandleEvents("resume", gossip.EventHandlerFunc(g.queue))
	n.HandleQuery("version", gossip.QueryResponderFunc(g.answerVersion))
	if err := n.Start(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

func (g *rigGossip) queue(e gossip.FleetEvent) {
	select {
	case g.actions <- e:
	default:
		g.log.Warn("fleet event dropped: too many queued", "id", e.IDString(), "kind", e.Kind)
	}
}

// run acts on fleet events and keyring changes off the gossip event loop
// until ctx ends, then leaves the cluster so the controller sees "left".
func (g *rigGossip) run(ctx context.Context) {
	defer func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), gossipLeaveTimeout)
		defer cancel()
		if err := g.node.Close(lctx); err != nil {
			g.log.Warn("gossip leave", "err", err)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-g.actions:
			g.act(ctx, e)
		case keys := <-g.rekey:
			g.applyKeyring(ctx, keys)
		}
	}
}

// act runs a verified pause or resume through the rig's command handler,
// so it behaves exactly like the gRPC command, and reports it as the agent
// does.
func (g *rigGossip) act(ctx context.Context, e gossip.FleetEvent) {
	var body struct {
		By string `json:"by"`
	}
	_ = json.Unmarshal(e.Body, &body)
	kind := quarryv1.CommandKind_COMMAND_KIND_PAUSE
	if e.Kind == "resume" {
		kind = quarryv1.CommandKind_COMMAND_KIND_RESUME
	}
	actx, cancel := context.WithTimeout(ctx, gossipActionTimeout)
	out, err := g.r.HandleCommand(actx, &quarryv1.Command{Kind: kind})
	cancel()
	result := string(out)
	if err != nil {
		result = "failed: " + err.Error()
	}
	g.log.Info("fleet event acted on", "kind", e.Kind, "id", e.IDString(), "by", body.By, "result", result)
	g.r.event("fleet_"+e.Kind, fmt.Sprintf("fleet %s over gossip (signed by the controller): %s", e.Kind, result),
		map[string]string{"event_id": e.IDString(), "by": body.By, "issued": e.IssuedAt.UTC().Format(time.RFC3339Nano)})
}

// linkState publishes the gRPC link's state as the grpc tag.
func (g *rigGossip) linkState(up bool) {
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

// settings takes a keyring the controller sends over the authenticated
// gRPC link; no gossip member may change it.
func (g *rigGossip) settings(s *quarryv1.AgentSettings) {
	if len(s.GetGossipKeys()) == 0 || slices.Equal(g.node.Keys(), s.GossipKeys) {
		return
	}
	select {
	case <-g.rekey: // a newer keyring replaces one not yet applied
	default:
	}
	g.rekey <- slices.Clone(s.GossipKeys)
}

func (g *rigGossip) applyKeyring(ctx context.Context, keys []string) {
	old := g.node.Keys()
	if err := g.node.SetKeyring(keys); err != nil {
		g.log.Error("controller sent an unusable gossip keyring; keeping ours", "err", err)
		return
	}
	g.r.event("gossip_rekey", "gossip keyring replaced by the controller's, received over the authenticated gRPC link",
		map[string]string{"primary": gossip.KeyFingerprint(keys[0])})
	// Old keys that cannot talk to the new ones mean the rig may have lost
	// every peer: rejoin through the controller.
	if len(old) > 0 && slices.Contains(keys, old[0]) && slices.Contains(old, keys[0]) || len(g.join) == 0 {
		return
	}
	jctx, cancel := context.WithTimeout(ctx, gossipActionTimeout)
	defer cancel()
	if _, err := g.node.Join(jctx, g.join...); err != nil && ctx.Err() == nil {
		g.log.Warn("rejoin after the keyring change", "err", err)
	}
}

func (g *rigGossip) answerVersion(context.Context, gossip.QueryRequest) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return json.Marshal(map[string]string{"version": g.tags.Version, "rig": g.tags.RigID})
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

// certSigner signs with the rig certificate's current key, which a
// renewal may replace.
type certSigner struct{ id *link.Identity }

func (c certSigner) Public() crypto.PublicKey { return c.id.Signer().Public() }

func (c certSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return c.id.Signer().Sign(r, digest, opts)
}
