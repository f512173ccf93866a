// Command quarry-loadgen measures a controller's report ingest with many
// simulated rigs. The controller must run with insecure_agents: true, which
// is for this purpose only.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/quarryfleet/quarry/controller/loadgen"
)

func main() {
	var o loadgen.Options
	flag.StringVar(&o.Addr, "addr", "127.0.0.1:7443", "controller gRPC address (plaintext, insecure_agents mode)")
	flag.IntVar(&o.Rigs, "rigs", 1000, "simulated rigs")
	flag.IntVar(&o.Conns, "conns", 0, "gRPC connections shared by the rigs (default rigs/200)")
	flag.DurationVar(&o.Interval, "interval", 10*time.Second, "report period per rig; 0 sends as fast as acknowledgements allow")
	flag.DurationVar(&o.Duration, "duration", 30*time.Second, "measured period")
	flag.StringVar(&o.Prefix, "prefix", "sim", "rig id prefix")
	flag.IntVar(&o.GPUs, "gpus", 6, "GPUs per simulated rig")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := loadgen.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "quarry-loadgen:", err)
		os.Exit(1)
	}
	fmt.Println(res)
}
