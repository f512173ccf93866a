package server

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// The order states what each component needs before it.
func TestComponentOrder(t *testing.T) {
	var names []string
	for _, p := range (&Controller{}).components() {
		names = append(names, p.name)
	}
	at := func(name string) int {
		i := slices.Index(names, name)
		if i < 0 {
			t.Fatalf("no component %q in %v", name, names)
		}
		return i
	}
	for _, tc := range []struct{ before, after, why string }{
		{"database", "fleet", "the fleet keeps its state in the database"},
		{"CA", "gRPC server", "the server certificate comes from the CA"},
		{"gRPC server", "billing", "services register on the gRPC server"},
		{"HTTP mux", "billing", "billing mounts its webhook on the mux"},
		{"miners", "profit", "the switcher reads the miners' benchmarks"},
		{"billing", "profit", "the switcher applies billing's past-due hold"},
		{"miners", "report ingest", "the last reports reach the miners before they stop"},
		{"billing", "report ingest", "the last reports are metered before billing stops"},
		{"profit", "report ingest", "the last reports reach the switcher before it stops"},
		{"gossip", "agent and fleet services", "AgentService hands out the gossip keyring"},
		{"profit", "web", "the dashboard shows the switcher's figures"},
	} {
		if at(tc.before) >= at(tc.after) {
			t.Errorf("%s must come before %s: %s", tc.before, tc.after, tc.why)
		}
	}
	if names[0] != "database" || names[len(names)-1] != "serving" {
		t.Errorf("order %v: the database must open first and close last, serving start last and stop first", names)
	}
}

// Components start in order and stop in reverse; when one fails to open,
// those already open stop, in reverse, and the rest are never touched.
func TestComponentLifecycle(t *testing.T) {
	var log []string
	part := func(name string, openErr error) component {
		return component{name: name,
			open:  func() error { log = append(log, "open "+name); return openErr },
			start: func() { log = append(log, "start "+name) },
			stop:  func() { log = append(log, "stop "+name) },
		}
	}
	c := &Controller{}
	if err := c.openParts([]component{part("a", nil), {name: "no steps"}, part("b", nil)}); err != nil {
		t.Fatal(err)
	}
	c.start()
	c.stop()
	c.stop() // a second stop does nothing
	want := "open a,open b,start a,start b,stop b,stop a"
	if got := strings.Join(log, ","); got != want {
		t.Errorf("got %s, want %s", got, want)
	}

	log = nil
	c = &Controller{}
	boom := errors.New("boom")
	if err := c.openParts([]component{part("a", nil), part("b", nil), part("c", boom), part("d", nil)}); !errors.Is(err, boom) {
		t.Fatalf("open = %v, want %v", err, boom)
	}
	c.stop()
	want = "open a,open b,open c,stop b,stop a"
	if got := strings.Join(log, ","); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// A controller that cannot bind its HTTP port fails to start and leaves
// nothing behind: its gRPC port and its database are free for the next try.
func TestFailedStartReleasesWhatItOpened(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr := free.Addr().String()
	free.Close()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.GRPCAddr = grpcAddr
	cfg.HTTPAddr = taken.Addr().String()
	cfg.ShutdownGrace = 2 * time.Second
	if _, err := New(cfg, "test", quietLog()); err == nil || !strings.Contains(err.Error(), "http_addr") {
		t.Fatalf("New with a taken HTTP port: %v", err)
	}
	cfg.HTTPAddr = "127.0.0.1:0"
	c, err := New(cfg, "test", quietLog())
	if err != nil {
		t.Fatalf("second start on the same port and data dir: %v", err)
	}
	if got := c.GRPCAddr(); got != grpcAddr {
		t.Errorf("gRPC on %s, want %s", got, grpcAddr)
	}
	c.stop()
	if _, err := net.Listen("tcp", grpcAddr); err != nil {
		t.Errorf("gRPC port still held after stop: %v", err)
	}
}
