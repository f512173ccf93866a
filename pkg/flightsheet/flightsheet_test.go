package flightsheet

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var known = []string{"xmrig", "gminer", "trex", "lolminer", "cgminer", "custom"}

func load(t *testing.T, name string) *FlightSheet {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return fs
}

func TestParseValid(t *testing.T) {
	fs := load(t, "valid.yaml")
	if err := fs.Validate(known); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if fs.Miner.API.Port != 18080 || fs.Miner.API.Token != "s3cret" {
		t.Errorf("api = %+v", fs.Miner.API)
	}
	if len(fs.Pools) != 2 || fs.Pools[1].URL != "stratum+tcp://xmr-eu1.nanopool.org:10300" {
		t.Errorf("pools = %+v", fs.Pools)
	}
	if got := fs.Pools[0].Worker(); got != "rig01" {
		t.Errorf("worker = %q", got)
	}
	if got := float64(fs.ExpectedHashrate); got != 9500 {
		t.Errorf("expected hashrate = %v, want 9500", got)
	}
	if !reflect.DeepEqual(fs.ExtraArgs, []string{"--cpu-priority", "2", "--randomx-1gb-pages"}) {
		t.Errorf("extra args = %q", fs.ExtraArgs)
	}
	if err := load(t, "minimal.yaml").Validate(known); err != nil {
		t.Errorf("minimal: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	fs := load(t, "valid.yaml")
	b, err := fs.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(b)
	if err != nil {
		t.Fatalf("reparse: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(fs, again) {
		t.Errorf("round trip changed the sheet:\n%+v\n%+v", fs, again)
	}
}

func TestParseErrors(t *testing.T) {
	typo, _ := os.ReadFile("testdata/typo.yaml")
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "empty"},
		{"unknown field", string(typo), "poools"},
		{"not a mapping", "- a\n- b\n", "parse flight sheet"},
		{"two documents", "name: a\n---\nname: b\n", "more than one"},
		{"bad hashrate", "expected_hashrate: fast\n", "hashrate"},
		{"hashrate as list", "expected_hashrate: [1]\n", "expected_hashrate"},
		{"too big", strings.Repeat("#", MaxSize+1), "bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestValidateNamesField(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*FlightSheet)
		field  string
		detail string
	}{
		{"unknown miner", func(f *FlightSheet) { f.Miner.Name = "nbminer" }, "miner.name", `unknown miner "nbminer"`},
		{"no miner", func(f *FlightSheet) { f.Miner.Name = "" }, "miner.name", "required"},
		{"bad scheme", func(f *FlightSheet) { f.Pools[1].URL = "tcp://pool:3333" }, "pools[1].url", "scheme"},
		{"no port", func(f *FlightSheet) { f.Pools[0].URL = "stratum+tcp://pool.example.com" }, "pools[0].url", "port"},
		{"bad port", func(f *FlightSheet) { f.Pools[0].URL = "stratum+tcp://pool.example.com:99999" }, "pools[0].url", "port"},
		{"no host", func(f *FlightSheet) { f.Pools[0].URL = "stratum+tcp://:3333" }, "pools[0].url", "no host"},
		{"missing wallet", func(f *FlightSheet) { f.Pools[0].User = "" }, "pools[0].user", "wallet is missing"},
		{"worker only", func(f *FlightSheet) { f.Pools[1].User = ".rig01" }, "pools[1].user", "no wallet"},
		{"space in user", func(f *FlightSheet) { f.Pools[1].User = "wal let" }, "pools[1].user", "whitespace"},
		{"short sha", func(f *FlightSheet) { f.Miner.SHA256 = "abc123" }, "miner.sha256", "64 hex"},
		{"non-hex sha", func(f *FlightSheet) { f.Miner.SHA256 = strings.Repeat("g", 64) }, "miner.sha256", "64 hex"},
		{"no sha", func(f *FlightSheet) { f.Miner.SHA256 = "" }, "miner.sha256", "pinned"},
		{"no path", func(f *FlightSheet) { f.Miner.Path = "" }, "miner.path", "required"},
		{"relative path", func(f *FlightSheet) { f.Miner.Path = "miners/xmrig" }, "miner.path", "absolute"},
		{"no pools", func(f *FlightSheet) { f.Pools = nil }, "pools", "at least one"},
		{"api port", func(f *FlightSheet) { f.Miner.API.Port = 70000 }, "miner.api.port", "out of range"},
		{"api host url", func(f *FlightSheet) { f.Miner.API.Host = "http://x/" }, "miner.api.host", "not a URL"},
		{"no name", func(f *FlightSheet) { f.Name = "" }, "name", "required"},
		{"bad name", func(f *FlightSheet) { f.Name = "../etc" }, "name", "must start"},
		{"no coin", func(f *FlightSheet) { f.Coin = "" }, "coin", "required"},
		{"no algo", func(f *FlightSheet) { f.Algorithm = "" }, "algorithm", "required"},
		{"newline arg", func(f *FlightSheet) { f.ExtraArgs = []string{"a\nb"} }, "extra_args[0]", "newline"},
		{"negative rate", func(f *FlightSheet) { f.ExpectedHashrate = -1 }, "expected_hashrate", "positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := load(t, "valid.yaml")
			tt.edit(fs)
			err := fs.Validate(known)
			if err == nil {
				t.Fatal("Validate accepted a bad sheet")
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Msg, tt.detail) {
				t.Errorf("got %q, want field %q mentioning %q", err, tt.field, tt.detail)
			}
		})
	}
}

func TestValidateAcceptsSchemes(t *testing.T) {
	for _, u := range []string{
		"stratum+tcp://a.example:3333", "stratum+ssl://a.example:443", "stratum2+tcp://a.example:3336",
		"http://127.0.0.1:8545", "https://pool.example/rpc", "STRATUM+TCP://a.example:1",
		"daemon+http://127.0.0.1:18081", "daemon+https://node.example:18089",
	} {
		fs := load(t, "minimal.yaml")
		fs.Miner.Name = "custom" // takes every scheme
		fs.Pools[0].URL = u
		if err := fs.Validate(known); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestValidateSchemePerMiner(t *testing.T) {
	tests := []struct {
		miner, url string
		ok         bool
		detail     string
	}{
		{"xmrig", "daemon+http://127.0.0.1:18081", true, ""},
		{"xmrig", "daemon+https://node.example:18089", true, ""},
		{"xmrig", "stratum+ssl://pool.example:443", true, ""},
		{"xmrig", "http://127.0.0.1:18081", false, `miner xmrig cannot use scheme "http"`},
		{"xmrig", "stratum2+tcp://pool.example:3336", false, "daemon+http://host:rpc-port"},
		{"xmrig", "daemon+http://127.0.0.1", false, "needs a port"},
		{"trex", "stratum2+tcp://pool.example:3336", true, ""},
		{"trex", "daemon+http://127.0.0.1:18081", false, "miner trex cannot use scheme"},
		{"gminer", "http://127.0.0.1:8545", false, "local stratum endpoint"},
		{"cgminer", "http://127.0.0.1:8332", true, ""},
		{"cgminer", "stratum+ssl://pool.example:443", false, "miner cgminer"},
		{"bmminer", "stratum+ssl://pool.example:443", false, "miner bmminer"},
		{"bosminer", "stratum2+tcp://pool.example:3336", true, ""},
		{"nbminer", "daemon+http://127.0.0.1:18081", false, "miner nbminer cannot mine against a daemon"},
		{"nbminer", "stratum+tcp://pool.example:3333", true, ""},
		{"rigel", "stratum+ssl://pool.example:443", true, ""},
		{"rigel", "daemon+http://127.0.0.1:18081", false, "local stratum endpoint"},
		{"srbminer", "stratum2+tcp://pool.example:3336", false, "miner srbminer cannot use scheme"},
		{"srbminer", "stratum+tcp://pool.example:3333", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.miner+" "+tt.url, func(t *testing.T) {
			fs := load(t, "minimal.yaml")
			fs.Miner.Name = tt.miner
			fs.Pools[0].URL = tt.url
			err := fs.Validate(append(known, "bmminer", "bosminer", "nbminer", "rigel", "srbminer"))
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "pools[0].url" || !strings.Contains(fe.Msg, tt.detail) {
				t.Fatalf("error = %v, want pools[0].url mentioning %q", err, tt.detail)
			}
		})
	}
}

func TestValidateExtraArgs(t *testing.T) {
	tests := []struct {
		miner string
		args  []string
		field string // "" = accepted
		want  string
	}{
		{"xmrig", []string{"--cpu-priority", "2", "--randomx-1gb-pages", "-t", "4"}, "", ""},
		{"xmrig", []string{"--http-port", "9999"}, "extra_args[0]", "--http-port is generated by Quarry for xmrig from the sheet's miner.api"},
		{"xmrig", []string{"--donate-level=1", "--http-access-token=abc"}, "extra_args[1]", "miner.api"},
		{"xmrig", []string{"-o", "pool:3333"}, "extra_args[0]", "-o is generated by Quarry for xmrig from the sheet's pools"},
		{"xmrig", []string{"-ohost:3333"}, "extra_args[0]", "pools"},
		{"xmrig", []string{"--url=stratum+tcp://x:1"}, "extra_args[0]", "pools"},
		{"xmrig", []string{"--daemon"}, "extra_args[0]", "pools"},
		{"xmrig", []string{"--algo", "rx/0"}, "extra_args[0]", "sheet's algorithm"},
		{"xmrig", []string{"--config=/etc/x.json"}, "extra_args[0]", "writes the miner's config file"},
		{"xmrig", []string{"--background"}, "extra_args[0]", "foreground"},
		{"trex", []string{"--api-bind-http", "0.0.0.0:1"}, "extra_args[0]", "miner.api"},
		{"trex", []string{"--intensity", "20", "-w", "rig"}, "extra_args[2]", "pools"},
		{"lolminer", []string{"--apiport=1"}, "extra_args[0]", "miner.api"},
		{"gminer", []string{"--server", "x"}, "extra_args[0]", "pools"},
		{"gminer", []string{"--pl", "70"}, "", ""},
		{"cgminer", []string{"--api-port", "1"}, "extra_args[0]", "miner.api"},
		{"custom", []string{"--api-port", "1", "-o", "x"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.miner+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			fs := load(t, "minimal.yaml")
			fs.Miner.Name = tt.miner
			fs.ExtraArgs = tt.args
			err := fs.Validate(known)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(fe.Msg, tt.want) {
				t.Fatalf("error = %v, want %s mentioning %q", err, tt.field, tt.want)
			}
		})
	}
}

func TestValidateReportsAll(t *testing.T) {
	fs := &FlightSheet{}
	err := fs.Validate(nil)
	for _, f := range []string{"name:", "coin:", "algorithm:", "miner.name:", "miner.path:", "miner.sha256:", "pools:"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error does not name %s:\n%v", f, err)
		}
	}
	fs = load(t, "valid.yaml")
	if err := fs.Validate(nil); err == nil || !strings.Contains(err.Error(), "known: none") {
		t.Errorf("with no known miners: %v", err)
	}
}

func TestHashrate(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		str  string
	}{
		{"120 MH/s", 120e6, "120 MH/s"},
		{"9.5kH/s", 9500, "9.5 kH/s"},
		{"110 TH", 110e12, "110 TH/s"},
		{"42", 42, "42 H/s"},
		{"1.5 gh/s", 1.5e9, "1.5 GH/s"},
		{"0", 0, "0 H/s"},
	}
	for _, tt := range tests {
		h, err := ParseHashrate(tt.in)
		if err != nil || float64(h) != tt.want {
			t.Errorf("ParseHashrate(%q) = %v, %v; want %v", tt.in, float64(h), err, tt.want)
			continue
		}
		if h.String() != tt.str {
			t.Errorf("String(%q) = %q, want %q", tt.in, h.String(), tt.str)
		}
	}
	for _, bad := range []string{"", "MH/s", "-5 MH/s", "NaN", "inf", "12 XH/s"} {
		if _, err := ParseHashrate(bad); err == nil {
			t.Errorf("ParseHashrate(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"valid.yaml", "minimal.yaml", "typo.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("expected_hashrate: 1e400\n"))
	f.Add([]byte("pools: [{url: 'stratum+tcp://[::1]:3333', user: a.b}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := Parse(data)
		if err != nil {
			return
		}
		_ = fs.Validate(known)
		// Whatever parses must survive a round trip unchanged, or a sheet
		// stored by the controller could differ from the one applied.
		b, err := fs.Marshal()
		if err != nil {
			t.Fatalf("Marshal of parsed sheet: %v", err)
		}
		again, err := Parse(b)
		if err != nil {
			t.Fatalf("reparse: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(fs, again) {
			t.Fatalf("round trip changed sheet\n%#v\n%#v", fs, again)
		}
	})
}

func TestValidateCatalogueMiner(t *testing.T) {
	const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cases := []struct {
		name  string
		miner Miner
		field string // empty: valid
	}{
		{"as written", Miner{Name: "xmrig", Version: "6.26.0"}, ""},
		{"as sent", Miner{Name: "xmrig", Version: "6.26.0", SHA256: hex64, Archive: &Archive{SHA256: hex64, Size: 10, Binary: "xmrig-6.26.0/xmrig"}}, ""},
		{"no version no path", Miner{Name: "xmrig"}, "miner.path"},
		{"sha without path or archive", Miner{Name: "xmrig", Version: "1", SHA256: hex64}, "miner.path"},
		{"archive with path", Miner{Name: "xmrig", Version: "1", Path: "/x/xmrig", SHA256: hex64, Archive: &Archive{SHA256: hex64, Size: 1, Binary: "x"}}, "miner.archive"},
		{"binary escapes", Miner{Name: "xmrig", Version: "1", SHA256: hex64, Archive: &Archive{SHA256: hex64, Size: 1, Binary: "../x"}}, "miner.archive.binary"},
		{"binary absolute", Miner{Name: "xmrig", Version: "1", SHA256: hex64, Archive: &Archive{SHA256: hex64, Size: 1, Binary: "/bin/sh"}}, "miner.archive.binary"},
		{"archive short sha", Miner{Name: "xmrig", Version: "1", SHA256: hex64, Archive: &Archive{SHA256: "ab", Size: 1, Binary: "x"}}, "miner.archive.sha256"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := &FlightSheet{Name: "s", Coin: "XMR", Algorithm: "randomx", Miner: c.miner,
				Pools: []Pool{{URL: "stratum+tcp://pool.example:3333", User: "wallet.w"}}}
			err := fs.Validate([]string{"xmrig"})
			if c.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				b, err := fs.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				back, err := Parse(b)
				if err != nil || back.Miner.FromCatalogue() != true {
					t.Fatalf("round trip: %v, %+v", err, back)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.field+":") {
				t.Fatalf("err = %v, want one naming %s", err, c.field)
			}
		})
	}
}

func TestDevFee(t *testing.T) {
	tests := []struct {
		miner, algo string
		args        []string
		want        float64
	}{
		{"xmrig", "rx/0", nil, 0.01},
		{"xmrig", "rx/0", []string{"--donate-level", "5"}, 0.05},
		{"xmrig", "rx/0", []string{"--donate-level=0"}, 0},
		{"xmrig", "rx/0", []string{"--donate-level", "lots"}, 0.01},
		{"trex", "kawpow", nil, 0.01},
		{"lolminer", "etchash", nil, 0.007},
		{"lolminer", "autolykos2", nil, 0.01},
		{"gminer", "etchash", nil, 0.0065},
		{"gminer", "kawpow", nil, 0.02},
		{"teamredminer", "ethash", nil, 0.0075},
		{"teamredminer", "kawpow", nil, 0.025},
		{"rigel", "kawpow", nil, 0.01},
		{"rigel", "nexapow", nil, 0.02},
		{"rigel", "zil", nil, 0},
		{"rigel", "xelishashv3", nil, 0.01},
		{"srbminer", "randomx", nil, 0.0085},
		{"srbminer", "Ethash", nil, 0.0065},
		{"srbminer", "xelishashv3", nil, 0.015},
		{"srbminer", "yespowerurx", nil, 0},
		{"bmminer", "sha256", nil, 0},
		{"custom", "kawpow", nil, 0},
	}
	for _, tt := range tests {
		if got := DevFee(tt.miner, tt.algo, tt.args); got != tt.want {
			t.Errorf("DevFee(%s, %s, %q) = %v, want %v", tt.miner, tt.algo, tt.args, got, tt.want)
		}
	}
}
