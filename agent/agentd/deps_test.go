package agentd

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent runs on every rig: it must never link billing, the
// controller's packages or its storage of other rigs' data.
func TestAgentDependencyGuard(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "grpcnotrace", "github.com/quarryfleet/quarry/agent/cmd/quarry-agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	forbidden := []string{
		"github.com/stripe/",
		"github.com/quarryfleet/quarry/controller/",
		"golang.org/x/net/trace",
		// The controllers' Raft group is theirs alone.
		"github.com/hashicorp/raft",
		// html/template is not listed: serf's msgpack codec
		// (hashicorp/go-msgpack) imports net/rpc, which links it, and the
		// agent needs serf for gossip.
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("quarry-agent links %s", d)
			}
		}
	}
	if len(deps) < 50 {
		t.Fatalf("only %d dependencies listed; the check is not looking at the agent", len(deps))
	}
}
