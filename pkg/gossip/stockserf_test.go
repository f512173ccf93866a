package gossip

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/testsupport"
)

// stockSerf finds a `serf` binary: $QUARRY_SERF_BIN, the repo's bin/ (where
// `GOBIN=$PWD/bin go install github.com/hashicorp/serf/cmd/serf@v0.11.0`
// puts it), or PATH.
func stockSerf(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("QUARRY_SERF_BIN"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	if p := filepath.Join(filepath.Dir(file), "..", "..", "bin", "serf"); fileExists(p) {
		return p
	}
	if p, err := exec.LookPath("serf"); err == nil {
		return p
	}
	testsupport.Missing(t, "stock serf binary", "make tools installs bin/serf")
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestStockSerfAgentInterop proves the cluster speaks plain serf: a stock
// agent with the key joins, Quarry sees it, and `serf members` shows our
// members with their tags.
func TestStockSerfAgentInterop(t *testing.T) {
	bin := stockSerf(t)
	keys := newTestKeys(t)
	ctl := startNode(t, "ctl", keys, func(c *Config) {
		c.SigningKey = keys.priv
		c.Tags = Tags{Role: RoleController, Version: "0.1.0"}
	})
	rig := startNode(t, "rig-00", keys, nil)
	joinAll(t, ctl, rig)

	ip := takeIP()
	rpc := net.JoinHostPort(ip, "7373")
	ctx, cancel := context.WithCancel(context.Background())
	agent := exec.CommandContext(ctx, bin, "agent",
		"-node", "stock",
		"-bind", net.JoinHostPort(ip, "7946"),
		"-rpc-addr", rpc,
		"-encrypt", keys.gossip,
		"-join", ctl.Addr().String(),
		"-tag", "role=observer",
		"-log-level", "warn")
	var out strings.Builder
	agent.Stdout, agent.Stderr = &out, &out
	if err := agent.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = agent.Wait()
		if t.Failed() {
			t.Logf("serf agent output:\n%s", out.String())
		}
	})

	waitFor(t, 10*time.Second, "Quarry sees the stock agent", func() bool {
		return memberStatus(ctl.Node, "stock") == "alive" && ctl.rec.saw(MemberJoin, "stock")
	})
	for _, m := range ctl.Members() {
		if m.Name == "stock" && m.RawTags["role"] != "observer" {
			t.Fatalf("stock agent tags seen as %v", m.RawTags)
		}
	}

	type member struct {
		Name   string            `json:"name"`
		Status string            `json:"status"`
		Tags   map[string]string `json:"tags"`
	}
	var got struct {
		Members []member `json:"members"`
	}
	waitFor(t, 10*time.Second, "serf members lists Quarry's nodes", func() bool {
		b, err := exec.Command(bin, "members", "-detailed", "-format", "json", "-rpc-addr", rpc).Output()
		if err != nil {
			return false
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("serf members output: %v\n%s", err, b)
		}
		return len(got.Members) == 3
	})
	byName := map[string]member{}
	for _, m := range got.Members {
		byName[m.Name] = m
	}
	if m := byName["rig-00"]; m.Status != "alive" || m.Tags[TagRole] != "agent" || m.Tags[TagGPUModel] != "RTX 3070" || m.Tags[TagGPUCount] != "2" {
		t.Fatalf("serf members shows rig-00 as %+v", m)
	}
	if m := byName["ctl"]; m.Tags[TagRole] != "controller" {
		t.Fatalf("serf members shows ctl as %+v", m)
	}

	// A stock agent can fire user events but cannot sign them: agents ignore them.
	if b, err := exec.Command(bin, "event", "-rpc-addr", rpc, userEventName, "pause").CombinedOutput(); err != nil {
		t.Fatalf("serf event: %v\n%s", err, b)
	}
	waitFor(t, 5*time.Second, "rig-00 refuses the stock agent's event", func() bool { return rig.Stats().Malformed == 1 })
	if n := len(rig.rec.fleetEvents()); n != 0 {
		t.Fatalf("rig-00 acted on %d unsigned events", n)
	}
}
