// Command quarry-loadgen measures a controller's report ingest with many
// simulated rigs. Each rig enrolls with the join token and reports over its
// own mutual-TLS stream, as real agents do.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/quarryfleet/quarry/controller/loadgen"
)

func main() {
	var o loadgen.Options
	var tokenFile, caFile string
	flag.StringVar(&o.Addr, "addr", "127.0.0.1:7443", "controller gRPC address")
	flag.StringVar(&tokenFile, "token-file", "", "file holding a join token with at least -rigs uses ('quarryctl token create --uses N')")
	flag.StringVar(&caFile, "ca", "quarry-data/ca.crt", "the controller's CA certificate")
	flag.IntVar(&o.Rigs, "rigs", 1000, "simulated rigs")
	flag.DurationVar(&o.Interval, "interval", 10*time.Second, "report period per rig; 0 sends as fast as acknowledgements allow")
	flag.DurationVar(&o.Duration, "duration", 30*time.Second, "measured period")
	flag.StringVar(&o.Prefix, "prefix", "sim", "hostname prefix of the simulated rigs")
	flag.IntVar(&o.GPUs, "gpus", 6, "GPUs per simulated rig")
	flag.Parse()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "quarry-loadgen:", err)
		os.Exit(1)
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		fail(fmt.Errorf("-token-file: %w", err))
	}
	o.Token = strings.TrimSpace(string(tok))
	if o.CA, err = os.ReadFile(caFile); err != nil {
		fail(fmt.Errorf("-ca: %w", err))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := loadgen.Run(ctx, o)
	if err != nil {
		fail(err)
	}
	fmt.Println(res)
}
