// Command quarry-agent runs on every mining rig: it reports telemetry to the
// controller, supervises miners and runs the controller's commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/quarryfleet/quarry/agent/agentd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := agentd.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
