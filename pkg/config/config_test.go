package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Addr     string        `yaml:"addr" flag:"addr" help:"listen address"`
	Interval time.Duration `yaml:"interval" flag:"interval"`
	Workers  int           `yaml:"workers"`
	Debug    bool          `yaml:"debug" flag:"debug"`
	Peers    []string      `yaml:"peers"`
	Market   struct {
		TTL   time.Duration `yaml:"ttl"`
		Price float64       `yaml:"price"`
	} `yaml:"market"`
}

func defaults() sample {
	s := sample{Addr: "127.0.0.1:1", Interval: 10 * time.Second, Workers: 2}
	s.Market.TTL = time.Minute
	return s
}

func TestLayersOverrideInOrder(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("addr: 0.0.0.0:2\nworkers: 4\ninterval: 30s\nmarket:\n  ttl: 2m\n  price: 0.12\npeers: [a, b]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaults()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	RegisterFlags(fs, &cfg)
	if err := fs.Parse([]string{"-interval", "1m"}); err != nil {
		t.Fatal(err)
	}
	env := []string{"QUARRY_WORKERS=8", "QUARRY_MARKET_PRICE=0.2", "QUARRY_INTERVAL=5s"}
	if err := Load(&cfg, path, fs, env); err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "0.0.0.0:2" {
		t.Errorf("addr from file: got %q", cfg.Addr)
	}
	if cfg.Workers != 8 {
		t.Errorf("env should beat file: workers=%d", cfg.Workers)
	}
	if cfg.Interval != time.Minute {
		t.Errorf("flag should beat env and file: interval=%s", cfg.Interval)
	}
	if cfg.Market.TTL != 2*time.Minute || cfg.Market.Price != 0.2 {
		t.Errorf("nested: %+v", cfg.Market)
	}
	if strings.Join(cfg.Peers, ",") != "a,b" {
		t.Errorf("peers %v", cfg.Peers)
	}
}

func TestErrorsNameTheSetting(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"wrong type", "workers: many\n", `setting "workers": want a whole number, got "many"`},
		{"bad duration", "interval: soon\n", `setting "interval": want a duration`},
		{"unknown key", "adress: x\n", `unknown setting "adress"`},
		{"nested wrong type", "market:\n  price: cheap\n", `setting "market.price": want a number`},
		{"nested not mapping", "market: 5\n", `setting market must be a mapping`},
		{"bool", "debug: perhaps\n", `setting "debug": want true or false`},
		{"syntax", "addr: [\n", "yaml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := defaults()
			err := DecodeYAML([]byte(c.yaml), &cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want error containing %q", err, c.want)
			}
		})
	}
}

func TestEnvErrorNamesVariable(t *testing.T) {
	cfg := defaults()
	err := Load(&cfg, "", nil, []string{"QUARRY_WORKERS=x"})
	if err == nil || !strings.Contains(err.Error(), "QUARRY_WORKERS") {
		t.Fatalf("got %v", err)
	}
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	cfg := defaults()
	if err := DecodeYAML(nil, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:1" {
		t.Fatal("defaults changed")
	}
}

func TestCommandLine(t *testing.T) {
	var errOut strings.Builder
	cfg := defaults()
	if _, code, ok := CommandLine("x", "Usage: x\n", []string{"-h"}, &errOut, nil, &cfg, nil); ok || code != 0 || !strings.Contains(errOut.String(), "-addr") {
		t.Fatalf("-h: ok=%v code=%d out=%q", ok, code, errOut.String())
	}
	if _, code, ok := CommandLine("x", "", []string{"-nope"}, &errOut, nil, &cfg, nil); ok || code != 2 {
		t.Fatalf("bad flag: ok=%v code=%d", ok, code)
	}
	errOut.Reset()
	if _, code, ok := CommandLine("x", "", nil, &errOut, []string{"QUARRY_WORKERS=lots"}, &cfg, nil); ok || code != 2 || !strings.Contains(errOut.String(), "x: environment QUARRY_WORKERS") {
		t.Fatalf("bad env: ok=%v code=%d out=%q", ok, code, errOut.String())
	}
	var extra string
	fs, _, ok := CommandLine("x", "", []string{"-addr", "1.2.3.4:5", "-o", "json", "rest"}, &errOut, nil, &cfg, func(fs *flag.FlagSet) { fs.StringVar(&extra, "o", "", "") })
	if !ok || cfg.Addr != "1.2.3.4:5" || extra != "json" || fs.Arg(0) != "rest" {
		t.Fatalf("parse: ok=%v addr=%q extra=%q args=%v", ok, cfg.Addr, extra, fs.Args())
	}
}
