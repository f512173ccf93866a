// Command quarry-controller runs the fleet's control plane.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/quarryfleet/quarry/controller/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := server.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
