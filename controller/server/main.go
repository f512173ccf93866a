package server

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/quarryfleet/quarry/controller/snapshot"
	"github.com/quarryfleet/quarry/pkg/config"
	"github.com/quarryfleet/quarry/pkg/logging"
	"github.com/quarryfleet/quarry/pkg/version"
)

// Main is quarry-controller's command line. It returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == snapshot.CheckCommand {
		return snapshot.RunCheck(args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "version" {
		fmt.Fprintln(stdout, "quarry-controller", version.Version)
		return 0
	}
	cfg := DefaultConfig()
	usage := "Usage: quarry-controller [flags]\n       quarry-controller version\n\nRuns the fleet controller. With no flags it keeps its data in ./quarry-data\nand listens on loopback.\n"
	if _, code, ok := config.CommandLine("quarry-controller", usage, args, stderr, os.Environ(), &cfg, nil); !ok {
		return code
	}
	log := logging.New(stderr, cfg.LogLevel)
	if cfg.Cluster.Enabled() {
		if err := RunCluster(ctx, cfg, version.Version, log); err != nil {
			fmt.Fprintln(stderr, "quarry-controller:", err)
			return 1
		}
		return 0
	}
	c, err := New(cfg, version.Version, log)
	if err != nil {
		fmt.Fprintln(stderr, "quarry-controller:", err)
		return 1
	}
	if err := c.Serve(ctx); err != nil {
		fmt.Fprintln(stderr, "quarry-controller:", err)
		return 1
	}
	return 0
}
