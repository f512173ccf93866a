// Command gossipnode runs one gossip.Node and prints its member events as
// JSON lines on stdout. Tests start it inside network namespaces, where a
// single Go process cannot place different goroutines.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/quarryfleet/quarry/pkg/gossip"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Line is one output record.
type Line struct {
	Event  string `json:"ev"`
	Member string `json:"member,omitempty"`
	Addr   string `json:"addr,omitempty"`
	At     int64  `json:"at"` // unix nanoseconds
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gossipnode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "node name")
	bind := fs.String("bind", "", "bind IP")
	port := fs.Int("port", gossip.DefaultPort, "bind port")
	join := fs.String("join", "", "comma-separated addresses to join")
	key := fs.String("key", "", "base64 gossip key")
	profile := fs.String("profile", "tuned", "lan, tuned or custom")
	reconnect := fs.Duration("reconnect", 0, "override serf's reconnect interval")
	logLevel := fs.String("log-level", "warn", "debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(stderr, "gossipnode:", err)
		return 2
	}
	cfg := gossip.Config{
		NodeName: *name,
		BindAddr: *bind,
		BindPort: *port,
		Keys:     []string{*key},
		Profile:  gossip.Profile(*profile),
		Tags:     gossip.Tags{Role: gossip.RoleAgent, RigID: *name},
		Logger:   slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		JoinBackoff: gossip.Backoff{
			Initial: 100 * time.Millisecond,
			Max:     time.Second,
		},
	}
	if *join != "" {
		cfg.Join = strings.Split(*join, ",")
	}
	if *reconnect > 0 {
		cfg.Timings = &gossip.Timings{ReconnectInterval: *reconnect}
	}
	n, err := gossip.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "gossipnode:", err)
		return 2
	}
	var mu sync.Mutex
	enc := json.NewEncoder(stdout)
	emit := func(l Line) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(l)
	}
	n.HandleMembers(gossip.MemberHandlerFunc(func(e gossip.MemberEvent) {
		now := time.Now().UnixNano()
		for _, m := range e.Members {
			emit(Line{Event: e.Type.String(), Member: m.Name, At: now})
		}
	}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := n.Start(ctx); err != nil {
		fmt.Fprintln(stderr, "gossipnode:", err)
		return 1
	}
	emit(Line{Event: "ready", Addr: n.Addr().String(), At: time.Now().UnixNano()})
	<-ctx.Done()
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(closeCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintln(stderr, "gossipnode:", err)
		return 1
	}
	return 0
}
