package agentd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/quarryfleet/quarry/pkg/config"
	"github.com/quarryfleet/quarry/pkg/logging"
	"github.com/quarryfleet/quarry/pkg/telemetry"
)

// Inspect is 'quarry-agent inspect': it prints one full sample of this
// machine and exits. It needs no controller and no enrollment, and never
// changes or resets an overclock. It returns the exit code.
func Inspect(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := DefaultConfig()
	cfg.LogLevel = "warn"
	var output string
	var interval *time.Duration
	usage := "Usage: quarry-agent inspect [-o table|json] [flags]\n\nPrints one full sample of this machine: host, sensors, GPUs and any\noverclock a running agent applied. Needs no controller.\n"
	fs, code, ok := config.CommandLine("quarry-agent inspect", usage, args, stderr, os.Environ(), &cfg, func(fs *flag.FlagSet) {
		fs.StringVar(&output, "o", "table", "output format: table or json")
		fs.StringVar(&output, "output", "table", "output format: table or json")
		interval = fs.Duration("interval", time.Second, "time between the two readings that rates (CPU busy, network) are computed from")
	})
	if !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "quarry-agent inspect: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if output != "table" && output != "json" {
		fmt.Fprintf(stderr, "quarry-agent inspect: -o %q: want table or json\n", output)
		return 2
	}
	if *interval < 0 {
		fmt.Fprintf(stderr, "quarry-agent inspect: -interval %s: must not be negative\n", *interval)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "quarry-agent inspect: invalid configuration:", err)
		return 2
	}
	log := logging.New(stderr, cfg.LogLevel)
	hw, err := OpenHardware(ctx, cfg, log, withoutOC())
	if err != nil {
		fmt.Fprintln(stderr, "quarry-agent inspect:", err)
		return 1
	}
	defer func() { _ = hw.closeAll() }()
	s, err := hw.sample(ctx)
	if *interval > 0 {
		select {
		case <-ctx.Done():
			return 1
		case <-time.After(*interval):
		}
		s, err = hw.sample(ctx)
	}
	if err != nil {
		// The sample still holds everything that could be read.
		fmt.Fprintln(stderr, "quarry-agent inspect: incomplete sample:", err)
	}
	if err := telemetry.Print(stdout, s, output); err != nil {
		fmt.Fprintln(stderr, "quarry-agent inspect:", err)
		return 1
	}
	return 0
}
