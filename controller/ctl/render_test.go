package ctl

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestTableAlignsAndKeepsEachCellOneSafeLine(t *testing.T) {
	var b bytes.Buffer
	tb := newTable(&b, "NAME", "COUNT", "NOTE")
	tb.row("rig-01", 7, "ok")
	// What a rig sends could try to add a column, forge a row or drive
	// the terminal; each must stay inside its own cell.
	tb.row("evil\tname", uint64(12345), "line1\nFORGED\trow\x1b]0;title\a\x1b[2J")
	tb.row("", "", "")
	if err := tb.flush(); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	want := "NAME       COUNT  NOTE\n" +
		"rig-01     7      ok\n" +
		"evil name  12345  line1 FORGED row\n" +
		"                  \n"
	if got != want {
		t.Errorf("table:\n%q\nwant\n%q", got, want)
	}
}

func TestTableWithoutHeaderIsKeyValue(t *testing.T) {
	var b bytes.Buffer
	tb := newTable(&b)
	tb.row("Rig:", "r1")
	tb.row("Hostname:", "box")
	if err := tb.flush(); err != nil {
		t.Fatal(err)
	}
	if want := "Rig:       r1\nHostname:  box\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestRenderPicksJSONOrText(t *testing.T) {
	resp := &quarryv1.ListEventsResponse{Events: []*quarryv1.Event{{Kind: "miner_started", Message: "xmrig 6.21"}}}
	for _, tc := range []struct {
		output string
		check  func(t *testing.T, out string)
	}{
		{"json", func(t *testing.T, out string) {
			var got struct {
				Events []struct{ Kind, Message string }
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Events) != 1 || got.Events[0].Message != "xmrig 6.21" {
				t.Errorf("json output %q: %v", out, err)
			}
		}},
		{"table", func(t *testing.T, out string) {
			if out != "KIND           MESSAGE\nminer_started  xmrig 6.21\n" {
				t.Errorf("table output %q", out)
			}
		}},
	} {
		t.Run(tc.output, func(t *testing.T) {
			var b bytes.Buffer
			a := &App{Opts: Options{Output: tc.output}, Out: &b}
			err := a.renderTable(resp, []string{"KIND", "MESSAGE"}, func(t *table) {
				for _, e := range resp.Events {
					t.row(e.Kind, e.Message)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, b.String())
		})
	}
}

func TestPrintRigShowsMinerVersionPoolAndUptime(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := &quarryv1.Rig{
		Id: "r-1", Name: "vm", Hostname: "vm.local", Online: true, LastSeenUnixNano: now.Add(-3 * time.Second).UnixNano(),
		Miners: []*quarryv1.MinerStats{
			{Miner: "xmrig", Version: "6.26.0", Algorithm: "rx/0", Coin: "XMR", Pool: "stratum+tcp://wallet:hunter2@pool.example:3333",
				Hashrate: 19300, Accepted: 4, UptimeSeconds: 3725, State: "running"},
			{Miner: "xmrig", Algorithm: "rx/0", Coin: "XMR", State: "api-unreachable"},
		},
	}
	var b bytes.Buffer
	if err := printRig(&b, r, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"MINER  VERSION  ALGO  COIN  POOL",
		"xmrig  6.26.0   rx/0  XMR   stratum+tcp://wallet:[redacted]@pool.example:3333  19.30 kH/s           4         0         1h2m5s  running",
		// Unknown is said, never shown as zero.
		"— (api-unreachable)  0         0         -       api-unreachable",
		// A miner that did not say shows "-", never an invented zero.
		"xmrig  -        rx/0  XMR   -",
		"Last seen:  3s ago",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rig show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("pool password shown:\n%s", out)
	}
}
