package agentd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/pkg/config"
	"github.com/quarryfleet/quarry/pkg/logging"
	"github.com/quarryfleet/quarry/pkg/version"
)

// Main is quarry-agent's command line. It returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "version" {
		fmt.Fprintln(stdout, "quarry-agent", version.Version)
		return 0
	}
	if len(args) > 0 && args[0] == "inspect" {
		return Inspect(ctx, args[1:], stdout, stderr)
	}
	cfg := DefaultConfig()
	usage := "Usage: quarry-agent [flags]\n       quarry-agent inspect [-o json]\n       quarry-agent version\n\nRuns on a mining rig and reports to the controller. With no flags it enrolls\nwith a controller on this machine using ./quarry-data/agent.token.\n"
	if _, code, ok := config.CommandLine("quarry-agent", usage, args, stderr, os.Environ(), &cfg, nil); !ok {
		return code
	}
	log := logging.New(stderr, cfg.LogLevel)
	hw, err := OpenHardware(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "quarry-agent:", err)
		return 1
	}
	// Clean stop: cards go back to their defaults.
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := hw.Close(stopCtx); err != nil {
			log.Error("release hardware", "err", err)
		}
	}()
	a, err := New(ctx, cfg, version.Version, hw, log)
	if err != nil {
		fmt.Fprintln(stderr, "quarry-agent:", err)
		if errors.Is(err, link.ErrNotEnrolled) {
			return 3
		}
		return 1
	}
	hw.Attach(a)
	if err := hw.StartOverclock(ctx); err != nil {
		fmt.Fprintln(stderr, "quarry-agent:", err)
		return 2
	}
	miners, err := StartMiners(ctx, a, log, hw.PowerLimiter())
	if err != nil {
		fmt.Fprintln(stderr, "quarry-agent:", err)
		return 1
	}
	// Clean stop: the miner ends before the cards go back to defaults.
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := miners.Close(stopCtx); err != nil {
			log.Error("stop miner", "err", err)
		}
	}()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "quarry-agent:", err)
		return 1
	}
	return 0
}
