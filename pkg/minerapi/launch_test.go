package minerapi_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/minerapi"
)

func sheet() minerapi.FlightSheet {
	return minerapi.FlightSheet{
		Algorithm: "kawpow",
		Pools: []minerapi.Pool{
			{URL: "stratum+tcp://rvn.2miners.com:6060", User: "RWallet", Password: "x"},
			{URL: "stratum+ssl://rvn-eu.example.org:16060", User: "RWallet", Password: "d=8"},
		},
		Worker:    "rig07",
		ExtraArgs: []string{"--extra", "1"},
		API:       minerapi.Endpoint{Host: "127.0.0.1", Port: 4067, Token: "tok"},
		Devices:   []int{0, 2},
	}
}

func TestLaunchArgs(t *testing.T) {
	tests := []struct {
		adapter string
		want    []string // must appear in this order, each as a contiguous run
	}{
		{"trex", []string{"-a kawpow",
			"-o stratum+tcp://rvn.2miners.com:6060 -u RWallet.rig07 -p x",
			"-o stratum+ssl://rvn-eu.example.org:16060 -u RWallet.rig07 -p d=8",
			"--api-bind-http 127.0.0.1:4067", "-d 0,2", "--extra 1"}},
		{"lolminer", []string{"--algo kawpow",
			"--pool rvn.2miners.com:6060 --user RWallet.rig07 --pass x",
			"--pool rvn-eu.example.org:16060 --user RWallet.rig07 --pass d=8 --tls on",
			"--apihost 127.0.0.1 --apiport 4067", "--devices 0,2", "--extra 1"}},
		{"gminer", []string{"--algo kawpow",
			"--server rvn.2miners.com:6060 --user RWallet.rig07 --pass x",
			"--server rvn-eu.example.org:16060 --user RWallet.rig07 --pass d=8 --ssl 1",
			"--api 127.0.0.1:4067", "--devices 0 2", "--extra 1"}},
		{"cgminer", []string{"--algo kawpow",
			"-o stratum+tcp://rvn.2miners.com:6060 -u RWallet.rig07 -p x",
			"-o stratum+ssl://rvn-eu.example.org:16060 -u RWallet.rig07 -p d=8",
			"--api-listen --api-port 4067 --api-allow W:127.0.0.1", "-d 0 -d 2", "--extra 1"}},
		{"teamredminer", []string{"-a kawpow",
			"-o stratum+tcp://rvn.2miners.com:6060 -u RWallet.rig07 -p x",
			"-o stratum+ssl://rvn-eu.example.org:16060 -u RWallet.rig07 -p d=8",
			"--api_listen=127.0.0.1:4067", "-d 0,2", "--extra 1"}},
		{"xmrig", []string{"--config=xmrig.json", "--cuda-devices=0,2", "--extra 1"}},
		{"bmminer", []string{"--config bmminer.conf", "--extra 1"}},
		{"claymore", []string{"-epool stratum+tcp://rvn.2miners.com:6060 -ewal RWallet.rig07 -epsw x",
			"-mport -4067", "-di 02", "--extra 1"}},
		{"phoenixminer", []string{"-pool stratum+tcp://rvn.2miners.com:6060 -wal RWallet.rig07 -pass x",
			"-pool2 stratum+ssl://rvn-eu.example.org:16060 -wal2 RWallet.rig07 -pass2 d=8",
			"-cdm 1 -cdmport 4067", "-gpus 02", "--extra 1"}},
		{"ttminer", []string{"-a kawpow", "-P stratum+tcp://RWallet.rig07:x@rvn.2miners.com:6060",
			"-P stratum+ssl://RWallet.rig07:d=8@rvn-eu.example.org:16060", "--api-bind 127.0.0.1:4067", "-d 0 2", "--extra 1"}},
		{"ccminer", []string{"-a kawpow", "-o stratum+tcp://rvn.2miners.com:6060 -u RWallet.rig07 -p x",
			"-o stratum+ssl://rvn-eu.example.org:16060 -u RWallet.rig07 -p d=8", "-b 127.0.0.1:4067", "-d 0,2", "--extra 1"}},
		{"cpuminer-opt", []string{"-a kawpow", "-o stratum+tcp://rvn.2miners.com:6060 -u RWallet.rig07 -p x",
			"-b 127.0.0.1:4067", "--extra 1"}},
		{"srbminer", []string{"--algorithm kawpow",
			"--pool rvn.2miners.com:6060,rvn-eu.example.org:16060",
			"--wallet RWallet.rig07,RWallet.rig07 --password x!d=8 --tls false,true --api-enable --api-port 4067", "--gpu-id 0,2", "--extra 1"}},
		{"miniz", []string{"--par=kawpow", "--url=RWallet.rig07@rvn.2miners.com:6060 --pass=x",
			"--url=ssl://RWallet.rig07@rvn-eu.example.org:16060 --pass=d=8", "--telemetry=127.0.0.1:4067",
			"--cuda-devices 0 2", "--extra 1"}},
		{"nanominer", []string{"config.ini", "--extra 1"}},
		{"wildrig", []string{"--algo kawpow",
			"--url stratum+tcp://rvn.2miners.com:6060 --user RWallet.rig07 --pass x",
			"--url stratum+ssl://rvn-eu.example.org:16060 --user RWallet.rig07 --pass d=8",
			"--api-port 4067", "--opencl-devices 0,2", "--extra 1"}},
	}
	for _, tc := range tests {
		t.Run(tc.adapter, func(t *testing.T) {
			l, err := newAdapter(t, tc.adapter, minerapi.Options{}).Launch(sheet())
			if err != nil {
				t.Fatal(err)
			}
			joined := " " + strings.Join(l.Args, " ") + " "
			pos := 0
			for _, w := range tc.want {
				i := strings.Index(joined[pos:], " "+w+" ")
				if i < 0 {
					t.Fatalf("args %q: missing %q after position %d", l.Args, w, pos)
				}
				pos += i + len(w)
			}
			if strings.Contains(joined, "tok") && tc.adapter != "xmrig" {
				t.Errorf("token leaked into args: %q", l.Args)
			}
		})
	}
}

func TestXmrigConfigFile(t *testing.T) {
	l, err := newAdapter(t, "xmrig", minerapi.Options{}).Launch(sheet())
	if err != nil {
		t.Fatal(err)
	}
	if l.ConfigName != minerapi.XmrigConfigName || slices.Contains(l.Args, "tok") {
		t.Fatalf("launch = %+v", l)
	}
	var cfg struct {
		HTTP struct {
			Enabled     bool   `json:"enabled"`
			Host        string `json:"host"`
			Port        int    `json:"port"`
			AccessToken string `json:"access-token"`
			Restricted  bool   `json:"restricted"`
		} `json:"http"`
		Pools []struct {
			URL, User, Pass, Algo string
			TLS                   bool `json:"tls"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(l.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.HTTP.Enabled || cfg.HTTP.Port != 4067 || cfg.HTTP.AccessToken != "tok" || !cfg.HTTP.Restricted {
		t.Errorf("http = %+v", cfg.HTTP)
	}
	if len(cfg.Pools) != 2 || cfg.Pools[0].URL != "stratum+tcp://rvn.2miners.com:6060" || cfg.Pools[1].Pass != "d=8" ||
		cfg.Pools[0].User != "RWallet.rig07" || cfg.Pools[0].TLS || !cfg.Pools[1].TLS || cfg.Pools[0].Algo != "kawpow" {
		t.Errorf("pools = %+v", cfg.Pools)
	}
}

func TestBMMinerConfigFile(t *testing.T) {
	l, err := newAdapter(t, "bmminer", minerapi.Options{}).Launch(sheet())
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Pools   []struct{ URL, User, Pass string } `json:"pools"`
		APIPort string                             `json:"api-port"`
		Listen  bool                               `json:"api-listen"`
	}
	if err := json.Unmarshal(l.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if l.ConfigName != "bmminer.conf" || cfg.APIPort != "4067" || !cfg.Listen || len(cfg.Pools) != 2 ||
		cfg.Pools[1].URL != "stratum+ssl://rvn-eu.example.org:16060" || cfg.Pools[0].User != "RWallet.rig07" {
		t.Errorf("config = %s", l.Config)
	}
}

func TestCustomLaunch(t *testing.T) {
	m := &minerapi.CustomMapping{
		URL: "/api", Total: "hr",
		Args:     []string{"--algo={algo}", "--api={api_addr}", "--key={token}", "--gpus={devices}"},
		PoolArgs: []string{"-P", "{url}#{user}:{pass}"},
	}
	l, err := newAdapter(t, "custom", minerapi.Options{Custom: m}).Launch(sheet())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--algo=kawpow", "--api=127.0.0.1:4067", "--key=tok", "--gpus=0,2",
		"-P", "stratum+tcp://rvn.2miners.com:6060#RWallet.rig07:x",
		"-P", "stratum+ssl://rvn-eu.example.org:16060#RWallet.rig07:d=8", "--extra", "1"}
	if !slices.Equal(l.Args, want) {
		t.Errorf("args = %q\nwant   %q", l.Args, want)
	}
}

func TestLaunchRejectsBadSheets(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*minerapi.FlightSheet)
		naming string
	}{
		{"no pools", func(f *minerapi.FlightSheet) { f.Pools = nil }, "pools"},
		{"empty url", func(f *minerapi.FlightSheet) { f.Pools[1].URL = "" }, "pools[1].url"},
		{"empty user", func(f *minerapi.FlightSheet) { f.Pools[0].User = " " }, "pools[0].user"},
		{"space in url", func(f *minerapi.FlightSheet) { f.Pools[0].URL = "a b:1" }, "pools[0].url"},
		{"bad worker", func(f *minerapi.FlightSheet) { f.Worker = "a.b" }, "worker"},
		{"bad port", func(f *minerapi.FlightSheet) { f.API.Port = 70000 }, "api port"},
		{"negative device", func(f *minerapi.FlightSheet) { f.Devices = []int{-1} }, "devices[0]"},
		{"no algorithm", func(f *minerapi.FlightSheet) { f.Algorithm = "" }, "algorithm"},
	}
	for _, tc := range tests {
		fs := sheet()
		fs.Pools = slices.Clone(fs.Pools)
		tc.edit(&fs)
		_, err := newAdapter(t, "trex", minerapi.Options{}).Launch(fs)
		if !errors.Is(err, minerapi.ErrConfig) || !strings.Contains(err.Error(), tc.naming) {
			t.Errorf("%s: err = %v, want ErrConfig naming %q", tc.name, err, tc.naming)
		}
	}
	fs := sheet()
	fs.Pools = []minerapi.Pool{{URL: "stratum+tcp://no-port.example", User: "u"}}
	if _, err := newAdapter(t, "gminer", minerapi.Options{}).Launch(fs); !errors.Is(err, minerapi.ErrConfig) {
		t.Errorf("gminer without port: err = %v", err)
	}
}

func TestRegistry(t *testing.T) {
	r := minerapi.Default()
	want := []string{"bmminer", "bosminer", "ccminer", "cgminer", "claymore", "cpuminer-opt", "custom", "gminer", "lolminer",
		"miniz", "nanominer", "nbminer", "phoenixminer", "rigel", "srbminer",
		"teamredminer", "trex", "ttminer", "whatsminer", "wildrig", "xmrig"}
	if got := r.Names(); !slices.Equal(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
	for _, n := range want {
		if n == "custom" {
			continue
		}
		a, err := r.New(n, minerapi.Options{})
		if err != nil || a.Name() != n {
			t.Errorf("New(%q) = %v, %v", n, a, err)
		}
	}
	if _, err := r.New("no-such-miner", minerapi.Options{}); !errors.Is(err, minerapi.ErrConfig) || !strings.Contains(err.Error(), "xmrig") {
		t.Errorf("unknown adapter err = %v", err)
	}
	if _, err := r.New("custom", minerapi.Options{}); !errors.Is(err, minerapi.ErrConfig) {
		t.Errorf("custom without mapping err = %v", err)
	}
	if err := r.Register("xmrig", func(minerapi.Options) (minerapi.Adapter, error) { return nil, nil }); !errors.Is(err, minerapi.ErrConfig) {
		t.Errorf("duplicate Register err = %v", err)
	}
	// Registries are values: changing one leaves a fresh Default alone.
	if err := r.Register("extra", func(minerapi.Options) (minerapi.Adapter, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(minerapi.Default().Names(), "extra") {
		t.Error("Register leaked into a new Default()")
	}
}

func TestXmrigDaemonPool(t *testing.T) {
	fs := sheet()
	fs.Algorithm = "rx/0"
	fs.Pools = []minerapi.Pool{
		{URL: "daemon+http://127.0.0.1:18081", User: "44Wallet"},
		{URL: "daemon+https://node.example:18089", User: "44Wallet"},
		{URL: "stratum+tcp://pool.example:3333", User: "44Wallet"},
	}
	l, err := newAdapter(t, "xmrig", minerapi.Options{}).Launch(fs)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Pools []struct {
			URL, User string
			TLS       bool `json:"tls"`
			Daemon    bool `json:"daemon"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(l.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		url, user   string
		tls, daemon bool
	}{
		{"127.0.0.1:18081", "44Wallet", false, true},
		{"node.example:18089", "44Wallet", true, true},
		{"stratum+tcp://pool.example:3333", "44Wallet.rig07", false, false},
	}
	if len(cfg.Pools) != len(want) {
		t.Fatalf("pools = %+v", cfg.Pools)
	}
	for i, w := range want {
		p := cfg.Pools[i]
		if p.URL != w.url || p.User != w.user || p.TLS != w.tls || p.Daemon != w.daemon {
			t.Errorf("pool %d = %+v, want %+v", i, p, w)
		}
	}
}
