package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// CommandLine is a binary's whole flag handling: -config FILE, one flag per
// tagged field of *cfg, any command-specific flags from extra, usage text
// on -h, then Load. When the program should stop it returns ok=false and
// the exit code: 0 after help, 2 for a bad flag or setting (already
// printed to stderr, prefixed with name).
func CommandLine(name, usage string, args []string, stderr io.Writer, environ []string, cfg any, extra func(*flag.FlagSet)) (fs *flag.FlagSet, code int, ok bool) {
	fs = flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML configuration file")
	if extra != nil {
		extra(fs)
	}
	RegisterFlags(fs, cfg)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage, "\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return fs, 0, false
		}
		return fs, 2, false
	}
	if err := Load(cfg, *configPath, fs, environ); err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return fs, 2, false
	}
	return fs, 0, true
}
