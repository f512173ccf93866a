package minersim

import (
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/minerapi"
)

func reading() Reading {
	return Reading{
		Algorithm: "etchash", Pool: "stratum+tcp://etc.example:1010", Uptime: 754 * time.Second, Accepted: 90,
		GPUs: []GPU{
			{Name: "NVIDIA GeForce RTX 3070", BusID: "0000:01:00.0", Hashrate: 61.25e6, TemperatureC: 58.5, PowerW: 121.3, FanPercent: 55},
			{Name: "NVIDIA GeForce RTX 3070", BusID: "0000:0c:00.0", Hashrate: 60.5e6, TemperatureC: 61, PowerW: 119, FanPercent: 60},
			{Name: "NVIDIA GeForce RTX 3080", BusID: "0000:21:00.0", Hashrate: 97.125e6, TemperatureC: 66.2, PowerW: 220.4, FanPercent: 71},
		},
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b)) }

// Every supported miner's simulated API, read through the agent's own
// adapter, gives back the figures that were put in: total and per-card
// hash rate, and where that miner reports them bus ids, temperatures,
// shares and uptime.
func TestAdaptersReadSubstitutedReadings(t *testing.T) {
	reg := minerapi.Default()
	// Which readings each recorded API carries, so an absent one is not
	// taken for a bug.
	type has struct{ bus, temp, perGPUShares bool }
	want := map[string]has{
		"xmrig":        {bus: true, temp: true},
		"trex":         {bus: true, temp: true, perGPUShares: true},
		"lolminer":     {bus: true, temp: true, perGPUShares: true},
		"gminer":       {bus: true, temp: true, perGPUShares: true},
		"cgminer":      {temp: true, perGPUShares: true},
		"teamredminer": {temp: true, perGPUShares: true},
	}
	if len(want) != len(Miners()) {
		t.Fatalf("test covers %d miners, package serves %v", len(want), Miners())
	}
	for _, name := range Miners() {
		t.Run(name, func(t *testing.T) {
			srv, err := Listen(name, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Close() })
			r := reading()
			srv.Set(r)
			ad, err := reg.New(name, minerapi.Options{Algorithm: r.Algorithm})
			if err != nil {
				t.Fatal(err)
			}
			st, err := ad.Stats(context.Background(), srv.Endpoint())
			if err != nil {
				t.Fatalf("adapter %s: %v", name, err)
			}
			if !near(st.TotalHashrate, r.Total()) {
				t.Errorf("total hashrate %v, want %v", st.TotalHashrate, r.Total())
			}
			if len(st.GPUs) != len(r.GPUs) {
				t.Fatalf("%d GPUs read, want %d: %+v", len(st.GPUs), len(r.GPUs), st.GPUs)
			}
			w := want[name]
			for i, g := range st.GPUs {
				in := r.GPUs[i]
				if !near(g.Hashrate, in.Hashrate) {
					t.Errorf("GPU %d hashrate %v, want %v", i, g.Hashrate, in.Hashrate)
				}
				if w.bus && g.BusID != in.BusID {
					t.Errorf("GPU %d bus %q, want %q", i, g.BusID, in.BusID)
				}
				if w.temp && (g.TemperatureC == nil || !near(*g.TemperatureC, in.TemperatureC)) {
					t.Errorf("GPU %d temperature %v, want %v", i, g.TemperatureC, in.TemperatureC)
				}
				if w.perGPUShares && g.Accepted != shareOf(r, in) {
					t.Errorf("GPU %d accepted %d, want %d", i, g.Accepted, shareOf(r, in))
				}
			}
			if st.Accepted != r.Accepted {
				t.Errorf("accepted %d, want %d", st.Accepted, r.Accepted)
			}
			if st.Uptime != 0 && st.Uptime != r.Uptime {
				t.Errorf("uptime %v, want %v", st.Uptime, r.Uptime)
			}

			// A new reading replaces the old one on the next read.
			r.GPUs = r.GPUs[:1]
			r.GPUs[0].Hashrate = 12.5e6
			srv.Set(r)
			st, err = ad.Stats(context.Background(), srv.Endpoint())
			if err != nil {
				t.Fatal(err)
			}
			if !near(st.TotalHashrate, 12.5e6) || len(st.GPUs) != 1 {
				t.Errorf("after Set: total %v with %d GPUs, want 12.5e6 with 1", st.TotalHashrate, len(st.GPUs))
			}
		})
	}
}

func TestListenRefusesUnknownMiner(t *testing.T) {
	_, err := Listen("no-such-miner", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "no recorded reply") {
		t.Fatalf("err = %v, want a clear refusal", err)
	}
	if Supported("no-such-miner") || !Supported("trex") {
		t.Error("Supported disagrees with the table")
	}
}

// A closed server no longer answers, which the adapter reports as
// unreachable, the state the agent shows for a miner that died.
func TestClosedServerIsUnreachable(t *testing.T) {
	for _, name := range []string{"trex", "teamredminer"} {
		srv, err := Listen(name, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv.Set(reading())
		ep := srv.Endpoint()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		ad, _ := minerapi.Default().New(name, minerapi.Options{})
		_, err = ad.Stats(context.Background(), ep)
		if !errors.Is(err, minerapi.ErrUnreachable) {
			t.Errorf("%s: err = %v, want unreachable", name, err)
		}
	}
}

// An oversized or garbage request to the cgminer API gets the invalid
// command reply and the server keeps serving.
func TestCGMinerBadRequest(t *testing.T) {
	srv, err := Listen("cgminer", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Set(reading())
	ep := srv.Endpoint()
	conn, err := net.Dial("tcp", srv.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte(strings.Repeat("x", 3*maxRequest)))
	buf := make([]byte, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	nr, _ := conn.Read(buf)
	conn.Close()
	if !strings.Contains(string(buf[:nr]), "Invalid command") {
		t.Errorf("reply %q, want the invalid command status", buf[:nr])
	}
	ad, _ := minerapi.Default().New("cgminer", minerapi.Options{Algorithm: "etchash"})
	if _, err := ad.Stats(context.Background(), ep); err != nil {
		t.Errorf("after a bad request: %v", err)
	}
}
