package gossip_test

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"time"

	"github.com/quarryfleet/quarry/pkg/gossip"
)

// An agent joins the controller, publishes its tags, obeys signed pause
// events and answers "temps" queries.
func Example_agent() {
	var controllerPub ed25519.PublicKey // from enrolment
	n, err := gossip.New(gossip.Config{
		NodeName:    "rig-7f3a",
		Join:        []string{"10.0.0.2:7946"},
		Keys:        []string{"<base64 key from enrolment>"},
		KeyringFile: "quarry-agent-data/keyring.json",
		Profile:     gossip.ProfileTuned,
		TrustedKeys: []ed25519.PublicKey{controllerPub},
		Tags:        gossip.Tags{Role: gossip.RoleAgent, RigID: "rig-7f3a", GPUCount: 6, GPUModel: "RTX 3080", GRPC: "connecting"},
		Logger:      slog.Default(),
	})
	if err != nil {
		return
	}
	pause := make(chan gossip.FleetEvent, 16)
	n.HandleEvents("pause", gossip.EventHandlerFunc(func(e gossip.FleetEvent) {
		select {
		case pause <- e: // the miner supervisor drains this
		default:
		}
	}))
	n.HandleQuery("temps", gossip.QueryResponderFunc(func(ctx context.Context, q gossip.QueryRequest) ([]byte, error) {
		return []byte(`{"gpu0":61,"gpu1":64}`), nil
	}))
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		return
	}
	defer n.Close(ctx)
	_ = n.SetTags(gossip.Tags{Role: gossip.RoleAgent, RigID: "rig-7f3a", GPUCount: 6, GPUModel: "RTX 3080", GRPC: "ready"})
}

// The controller pauses a group of rigs and asks the fleet for temperatures.
func Example_controller() {
	var n *gossip.Node // started with Config.SigningKey set
	ctx := context.Background()
	if _, err := n.Broadcast(ctx, "pause", "gpu_model=RTX 30*", []byte(`{"reason":"price"}`)); err != nil {
		return
	}
	res, err := n.Query(ctx, "temps", "role=agent", 2*time.Second)
	if err != nil {
		return
	}
	for a := range res.Answers() {
		_ = a // a.From, a.Payload, a.Err
	}
	_ = res.Missing() // rigs that did not answer in time
}
