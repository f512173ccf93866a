package controller_test

import (
	"os/exec"
	"strings"
	"testing"
)

// quarryctl runs on admins' machines and the controller on a server with
// no GPU: neither links NVIDIA's bindings or any agent package, which would
// drag cgo and rig-side code into binaries built without them.
func TestControllerAndQuarryctlDependencyGuard(t *testing.T) {
	for _, cmd := range []string{"quarryctl", "quarry-controller"} {
		t.Run(cmd, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "-tags", "grpcnotrace", "github.com/quarryfleet/quarry/controller/cmd/"+cmd).CombinedOutput()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, out)
			}
			deps := strings.Fields(string(out))
			forbidden := []string{"github.com/NVIDIA/", "github.com/quarryfleet/quarry/agent/"}
			if cmd == "quarryctl" {
				// quarryctl speaks to the group over gRPC only.
				forbidden = append(forbidden, "github.com/hashicorp/raft", "github.com/quarryfleet/quarry/controller/cluster")
			}
			for _, d := range deps {
				for _, f := range forbidden {
					if strings.HasPrefix(d, f) {
						t.Errorf("%s links %s", cmd, d)
					}
				}
			}
			if len(deps) < 50 {
				t.Fatalf("only %d dependencies listed; the check is not looking at %s", len(deps), cmd)
			}
		})
	}
}
