package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/quarryfleet/quarry/pkg/config"
	"github.com/quarryfleet/quarry/pkg/logging"
	"github.com/quarryfleet/quarry/pkg/version"
)

// Main is quarry-controller's command line. It returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "version" {
		fmt.Fprintln(stdout, "quarry-controller", version.Version)
		return 0
	}
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("quarry-controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML configuration file")
	config.RegisterFlags(fs, &cfg)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: quarry-controller [flags]\n       quarry-controller version\n\nRuns the fleet controller. With no flags it keeps its data in ./quarry-data\nand listens on loopback.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := config.Load(&cfg, *configPath, fs, os.Environ()); err != nil {
		fmt.Fprintln(stderr, "quarry-controller:", err)
		return 2
	}
	log := logging.New(stderr, cfg.LogLevel)
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
