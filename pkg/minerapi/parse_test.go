package minerapi_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/minerapi/internal/recorded"
)

func TestUnitFactor(t *testing.T) {
	tests := []struct {
		unit string
		want float64
	}{
		{"", 1}, {"H/s", 1}, {"h/s", 1}, {"hs", 1}, {"H", 1},
		{"kH/s", 1e3}, {"KH/s", 1e3}, {"khs", 1e3}, {"kh", 1e3},
		{"Mh/s", 1e6}, {"MH/s", 1e6}, {"mh/s", 1e6}, {"mhs", 1e6},
		{"GH/s", 1e9}, {"ghs", 1e9}, {"TH/s", 1e12}, {"PH/s", 1e15},
		{"Sol/s", 1}, {"kSol/s", 1e3}, {"g/s", 1}, {"G/s", 1}, {"Hps", 1}, {" MH/s ", 1e6},
	}
	for _, tc := range tests {
		got, err := minerapi.UnitFactor(tc.unit)
		if err != nil || got != tc.want {
			t.Errorf("UnitFactor(%q) = %v, %v; want %v", tc.unit, got, err, tc.want)
		}
	}
	for _, bad := range []string{"MB/s", "furlongs", "xH/s", "ZH/s"} {
		if _, err := minerapi.UnitFactor(bad); !errors.Is(err, minerapi.ErrConfig) {
			t.Errorf("UnitFactor(%q) err = %v, want ErrConfig", bad, err)
		}
	}
}

func TestNormalizeBusID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0000:01:00.0", "0000:01:00.0"},
		{"00000000:01:00.0", "0000:01:00.0"}, // NVML
		{"00000000:0A:00.0", "0000:0a:00.0"},
		{"01:00.0", "0000:01:00.0"}, // xmrig
		{"0a:00.0", "0000:0a:00.0"},
		{"1:0", "0000:01:00.0"}, // bus:device, hex
		{"0001:c1:00.1", "0001:c1:00.1"},
		{" 03:00.0 ", "0000:03:00.0"},
	}
	for _, tc := range tests {
		got, err := minerapi.NormalizeBusID(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeBusID(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "zz:00.0", "01", "01:00.9", "01:40.0", "1:2:3:4", "100:00.0", "-1:00.0"} {
		if got, err := minerapi.NormalizeBusID(bad); err == nil {
			t.Errorf("NormalizeBusID(%q) = %q, want error", bad, got)
		}
	}
}

func TestParseXmrigWarmingUp(t *testing.T) {
	// xmrig reports null hashrates until its first 10 s window fills.
	sum := strings.Replace(string(recorded.MustGet(recorded.XmrigSummary)),
		`"total": [13321.44, 13309.02, 13298.7]`, `"total": [null, null, null]`, 1)
	st, err := minerapi.ParseXmrig([]byte(sum), nil)
	if !errors.Is(err, minerapi.ErrNoHashrate) || errors.Is(err, minerapi.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrNoHashrate only", err)
	}
	if st.Version != "6.21.0" || st.TotalHashrate != 0 || st.Accepted != 412 {
		t.Errorf("partial stats = %+v", st)
	}
	// A 60 s figure stands in for a missing 10 s one.
	sum = strings.Replace(string(recorded.MustGet(recorded.XmrigSummary)),
		`"total": [13321.44, 13309.02, 13298.7]`, `"total": [null, 13309.02, null]`, 1)
	st, err = minerapi.ParseXmrig([]byte(sum), nil)
	if err != nil || st.TotalHashrate != 13309.02 {
		t.Errorf("got %v, %v; want the 60s rate", st.TotalHashrate, err)
	}
}

func TestParseNoHashrate(t *testing.T) {
	tests := []struct {
		name  string
		parse func() (minerapi.Stats, error)
	}{
		{"lolminer 1.x", func() (minerapi.Stats, error) {
			return minerapi.ParseLolminer([]byte(`{"Software":"lolMiner 1.42","Session":{"Uptime":3},"GPUs":[]}`))
		}},
		{"lolminer new", func() (minerapi.Stats, error) {
			return minerapi.ParseLolminer([]byte(`{"Software":"lolMiner 1.82","Workers":[],"Algorithms":[]}`))
		}},
		{"gminer", func() (minerapi.Stats, error) {
			return minerapi.ParseGminer([]byte(`{"miner":"GMiner 3.44","devices":[]}`))
		}},
		{"cgminer", func() (minerapi.Stats, error) {
			return minerapi.ParseCGMiner([]byte(`{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"Elapsed":5,"Accepted":0}],"id":1}`), nil, nil, nil)
		}},
		{"custom", func() (minerapi.Stats, error) {
			return minerapi.ParseCustom(minerapi.CustomMapping{URL: "/", Total: "a.b"}, []byte(`{"a":{}}`))
		}},
	}
	for _, tc := range tests {
		st, err := tc.parse()
		if !errors.Is(err, minerapi.ErrNoHashrate) || st.TotalHashrate != 0 {
			t.Errorf("%s: %+v, %v; want ErrNoHashrate", tc.name, st, err)
		}
	}
}

func TestParseCGMinerVariants(t *testing.T) {
	// Antminer "stats" without its missing comma is also read.
	fixed := strings.Replace(string(recorded.MustGet(recorded.BMMinerStats)), "}{", "},{", 1)
	st, err := minerapi.ParseCGMiner(recorded.MustGet(recorded.BMMinerSummary), nil, nil, []byte(fixed))
	if err != nil || len(st.GPUs) != 3 || st.TotalHashrate != 13987.42e9 {
		t.Errorf("fixed stats: %+v, %v", st, err)
	}
	// cgminer MHS with a plain-number 5s rate beats the average.
	sum := `{"STATUS":[{"STATUS":"S","Description":"cgminer 4.11.1"}],"SUMMARY":[{"Elapsed":10,"MHS av":90.5,"MHS 5s":100.25,"MHS 1m":95}],"id":1}`
	st, err = minerapi.ParseCGMiner([]byte(sum), nil, nil, nil)
	if err != nil || st.TotalHashrate != 100.25e6 {
		t.Errorf("MHS 5s: %v, %v", st.TotalHashrate, err)
	}
	// KHS only.
	sum = `{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"KHS av":"12.5"}],"id":1}`
	st, err = minerapi.ParseCGMiner([]byte(sum), nil, nil, nil)
	if err != nil || st.TotalHashrate != 12.5e3 {
		t.Errorf("KHS av: %v, %v", st.TotalHashrate, err)
	}
	// Active pool when none says Stratum Active: best priority alive pool.
	pools := `{"STATUS":[{"STATUS":"S"}],"POOLS":[{"URL":"a","Status":"Dead","Priority":0},{"URL":"c","Status":"Alive","Priority":2},{"URL":"b","Status":"Alive","Priority":1}],"id":1}`
	st, _ = minerapi.ParseCGMiner([]byte(sum), nil, []byte(pools), nil)
	if st.Pool != "b" {
		t.Errorf("pool = %q, want b", st.Pool)
	}
}

func TestParseCustom(t *testing.T) {
	m := minerapi.CustomMapping{
		URL: "/summary", Total: "Algorithms.0.Total_Performance", UnitPath: "Algorithms.0.Performance_Unit",
		Accepted: "Algorithms.0.Total_Accepted", Rejected: "Algorithms.0.Total_Rejected", Uptime: "Session.Uptime",
		Algorithm: "Algorithms.0.Algorithm", Pool: "Algorithms.0.Pool", Version: "Software",
		GPURates: "Algorithms.0.Worker_Performance", GPUBusIDs: "Workers_missing", GPUTemps: "Nope",
	}
	st, err := minerapi.ParseCustom(m, recorded.MustGet(recorded.LolminerNew))
	if err != nil {
		t.Fatal(err)
	}
	if !near(st.TotalHashrate, 124.3e6) || st.Accepted != 611 || st.Rejected != 2 || st.Algorithm != "Etchash" ||
		st.Pool != "etc.2miners.com:1010" || st.Uptime.Seconds() != 8120 || len(st.GPUs) != 2 || !near(st.GPUs[1].Hashrate, 61.7e6) {
		t.Errorf("custom = %+v", st)
	}
	// Bus ids and temperatures from arrays, hashrate as a string.
	m = minerapi.CustomMapping{URL: "/", Total: "hs", Unit: "kH/s", GPURates: "g", GPUBusIDs: "bus", GPUTemps: "temp"}
	st, err = minerapi.ParseCustom(m, []byte(`{"hs":"2.5","g":[1,1.5],"bus":["01:00.0","0A:00.0"],"temp":[50,null]}`))
	if err != nil || st.TotalHashrate != 2500 || st.GPUs[1].BusID != "0000:0a:00.0" || *st.GPUs[0].TemperatureC != 50 || st.GPUs[1].TemperatureC != nil {
		t.Errorf("custom arrays = %+v, %v", st, err)
	}
	if _, err := minerapi.ParseCustom(m, []byte(`{"hs":{"x":1}}`)); !errors.Is(err, minerapi.ErrBadReply) {
		t.Errorf("object as number: err = %v, want ErrBadReply", err)
	}
}

func TestCustomMappingValidate(t *testing.T) {
	tests := []struct {
		m    minerapi.CustomMapping
		want string
	}{
		{minerapi.CustomMapping{Total: "a"}, "custom.url"},
		{minerapi.CustomMapping{URL: "summary", Total: "a"}, "custom.url"},
		{minerapi.CustomMapping{URL: "/s"}, "custom.total"},
		{minerapi.CustomMapping{URL: "/s", Total: "a", Unit: "bogus"}, "custom.unit"},
		{minerapi.CustomMapping{URL: "/s", Total: "a..b"}, "custom.total"},
	}
	for _, tc := range tests {
		err := tc.m.Validate()
		if !errors.Is(err, minerapi.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want error naming %s", tc.m, err, tc.want)
		}
	}
}
