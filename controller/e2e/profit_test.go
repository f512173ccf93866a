package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/testsupport"
)

// marketServer serves a WhatToMine coins.json (the market package's
// recorded payload with ETC's and RVN's BTC prices replaced) and a
// CoinGecko simple/price reply with bitcoin's USD price.
type marketServer struct {
	*httptest.Server
	mu       sync.Mutex
	base     map[string]any
	etc, rvn float64 // BTC per coin
}

func newMarketServer(t *testing.T) *marketServer {
	t.Helper()
	b, err := os.ReadFile("../../pkg/market/testdata/whattomine_coins.json")
	if err != nil {
		t.Fatal(err)
	}
	m := &marketServer{}
	if err := json.Unmarshal(b, &m.base); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /coins.json", func(w http.ResponseWriter, _ *http.Request) {
		m.mu.Lock()
		coins := m.base["coins"].(map[string]any)
		now := float64(time.Now().Unix())
		for name, v := range coins {
			c := v.(map[string]any)
			c["timestamp"] = now
			switch name {
			case "EthereumClassic":
				c["exchange_rate"] = m.etc
			case "Ravencoin":
				c["exchange_rate"] = m.rvn
			}
		}
		b, err := json.Marshal(m.base)
		m.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /simple/price", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"bitcoin":{"usd":66120.0,"last_updated_at":%d}}`, time.Now().Unix())
	})
	m.Server = httptest.NewServer(mux)
	t.Cleanup(m.Close)
	return m
}

func (m *marketServer) set(etc, rvn float64) {
	m.mu.Lock()
	m.etc, m.rvn = etc, rvn
	m.mu.Unlock()
}

const profitConfig = `profit:
  tick: 200ms
  batch_size: 10
  batch_spacing: 10ms
  market:
    ttl: 300ms
    confirm_fetches: 1
    sources:
      - {kind: whattomine, url: %[1]s/coins.json}
      - {kind: coingecko, url: %[1]s/simple/price}
    coingecko_ids: {btc: bitcoin}
  policy:
    relative_threshold: 0.05
    absolute_threshold: 0.10
    min_dwell: 0s
    switch_downtime: 2m
  sites:
    default: {default: 0.0}
  rigs:
    rig0:
      profile:
        etchash: {hashrate: 1000000000, power: 300}
        kawpow: {hashrate: 100000000, power: 300}
  options:
    - pool: 2miners
      pool_fee: 0.01
      flight_sheet:
        name: etc-lolminer
        coin: etc
        algorithm: etchash
        miner: {name: lolminer, path: /opt/lolminer/lolMiner, sha256: "%[2]s"}
        pools: [{url: "stratum+tcp://etc.2miners.com:1010", user: "0xETCWALLET.rig0"}]
    - pool: 2miners
      pool_fee: 0.01
      flight_sheet:
        name: rvn-trex
        coin: rvn
        algorithm: kawpow
        miner: {name: trex, path: /opt/trex/t-rex, sha256: "%[2]s"}
        pools: [{url: "stratum+tcp://rvn.2miners.com:6060", user: "RVNWALLET.rig0"}]
`

type profitList struct {
	Paused       bool   `json:"paused"`
	PauseReason  string `json:"pauseReason"`
	TickUnixNano string `json:"tickUnixNano"`
	Rows         []struct {
		RigName   string  `json:"rigName"`
		Current   string  `json:"current"`
		Best      string  `json:"best"`
		Action    string  `json:"action"`
		Reason    string  `json:"reason"`
		CommandID string  `json:"commandId"`
		BestUSD   float64 `json:"bestUsdDay"`
	} `json:"rows"`
}

func (c *controller) profit(t *testing.T) profitList {
	t.Helper()
	out, err := c.ctl(t, "profit", "-o", "json")
	if err != nil {
		t.Fatalf("profit: %v\n%s", err, out)
	}
	var p profitList
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("profit json: %v\n%s", err, out)
	}
	return p
}

// applied lists the APPLY_FLIGHT_SHEET commands the agent has run.
func applied(a *proc) int {
	n := 0
	for line := range strings.SplitSeq(a.output(), "\n") {
		if strings.Contains(line, "running command") && strings.Contains(line, "COMMAND_KIND_APPLY_FLIGHT_SHEET") {
			n++
		}
	}
	return n
}

// profitSetup starts a local market server at prices where ETC earns
// $2.28/day on the profiled rig's 1 GH/s at 300 W and RVN $1.23/day on its
// 100 MH/s (at $66,120/BTC: ETC $23.91, RVN $0.0235), and writes the
// controller config that reads it.
func profitSetup(t *testing.T, dir string) (*marketServer, string) {
	t.Helper()
	mkt := newMarketServer(t)
	mkt.set(0.000361615, 3.55717e-07)
	cfgPath := filepath.Join(dir, "controller.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, profitConfig, mkt.URL, strings.Repeat("0", 64)), 0o600); err != nil {
		t.Fatal(err)
	}
	return mkt, cfgPath
}

// The real controller reads a WhatToMine-format market from a local
// server, ranks a real agent's rig from its configured profile and sends
// APPLY_FLIGHT_SHEET when another coin wins by more than the threshold,
// and nothing when the lead is below it.
func TestProfitSwitchReachesAgent(t *testing.T) {
	dir := t.TempDir()
	mkt, cfgPath := profitSetup(t, dir)
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr, "-config", cfgPath)
	agentDir := filepath.Join(dir, "rig0")
	if err := os.MkdirAll(agentDir, 0o700); err != nil {
		t.Fatal(err)
	}
	agent := startAgent(t, agentDir, grpcAddr, ctrl.newToken(t, "--rig-name", "rig0"))

	// Off → etc: the first decision resumes the rig on the best coin.
	eventually(t, "first APPLY_FLIGHT_SHEET (etc) at the agent", time.Minute, func() bool { return applied(agent) == 1 })
	p := ctrl.profit(t)
	if len(p.Rows) != 1 || !strings.HasPrefix(p.Rows[0].Best, "etc@") {
		t.Fatalf("profit rows %+v", p.Rows)
	}
	eventually(t, "rig0 current etc", 10*time.Second, func() bool {
		p := ctrl.profit(t)
		return len(p.Rows) == 1 && strings.HasPrefix(p.Rows[0].Current, "etc@") && p.Rows[0].Action == "stay"
	})

	// RVN triples: $3.70/day against $2.28 → switch.
	mkt.set(0.000361615, 3*3.55717e-07)
	eventually(t, "second APPLY_FLIGHT_SHEET (rvn) at the agent", time.Minute, func() bool { return applied(agent) == 2 })
	out, err := ctrl.ctl(t, "profit", "switches", "rig0", "-o", "json")
	if err != nil {
		t.Fatalf("switches: %v\n%s", err, out)
	}
	var sw struct {
		Switches []struct {
			Action, From, To, CommandID string
		} `json:"switches"`
	}
	if err := json.Unmarshal([]byte(out), &sw); err != nil || len(sw.Switches) != 2 {
		t.Fatalf("switches: %v\n%s", err, out)
	}
	last := sw.Switches[1]
	if last.Action != "switch" || !strings.HasPrefix(last.From, "etc@") || !strings.HasPrefix(last.To, "rvn@") || last.CommandID == "" {
		t.Fatalf("last switch %+v", last)
	}
	// The command record says what the rig was sent.
	out, err = ctrl.ctl(t, "audit", "-o", "json")
	if err != nil || !strings.Contains(out, "profit.switch") || !strings.Contains(out, last.CommandID) {
		t.Fatalf("audit lacks the switch: %v\n%s", err, out)
	}

	// ETC's price rises so that it leads RVN by about 3 %: below the 5 %
	// threshold, so the rig stays on RVN and no command is sent.
	mkt.set(0.000361615*1.67, 3*3.55717e-07)
	eventually(t, "market shows the new ETC price", 30*time.Second, func() bool {
		out, err := ctrl.ctl(t, "market", "-o", "json")
		var m struct {
			Coins []struct {
				Tag      string  `json:"tag"`
				PriceUSD float64 `json:"priceUsd"`
			} `json:"coins"`
		}
		if err != nil || json.Unmarshal([]byte(out), &m) != nil {
			return false
		}
		for _, c := range m.Coins {
			if c.Tag == "etc" && c.PriceUSD > 39 && c.PriceUSD < 41 {
				return true
			}
		}
		return false
	})
	changed := time.Now()
	eventually(t, "a decision on the new market", 30*time.Second, func() bool {
		p := ctrl.profit(t)
		var ns int64
		fmt.Sscan(p.TickUnixNano, &ns)
		return time.Unix(0, ns).After(changed.Add(time.Second)) && len(p.Rows) == 1 && strings.HasPrefix(p.Rows[0].Best, "etc@")
	})
	p = ctrl.profit(t)
	if r := p.Rows[0]; r.Action != "stay" || !strings.HasPrefix(r.Current, "rvn@") || !strings.Contains(r.Reason, "< 5%") {
		t.Fatalf("below-threshold lead: %+v", r)
	}
	if n := applied(agent); n != 2 {
		t.Fatalf("%d APPLY_FLIGHT_SHEET commands after a below-threshold change, want 2", n)
	}
	out, err = ctrl.ctl(t, "profit", "explain", "rig0")
	for _, want := range []string{"kawpow", "100.00 MH/s", "profile", "$0.0000/kWh", "5.0%", "Reason:", "rvn@2miners/trex", "Coins:"} {
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("explain lacks %q: %v\n%s", want, err, out)
		}
	}
	out, err = ctrl.ctl(t, "profit")
	if err != nil || !strings.Contains(out, "rig0") || !strings.Contains(out, "GAP") {
		t.Fatalf("profit table: %v\n%s", err, out)
	}
}

// quarryctl backtest replays the shared market history locally and
// reports all four strategies as JSON.
func TestBacktestCommand(t *testing.T) {
	history, err := filepath.Abs("../../../shared/data/market-history/coinmetrics-daily.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(history); err != nil {
		testsupport.Missing(t, "the shared market history ("+err.Error()+")", "check out shared/ beside the repository")
	}
	rigs, _ := filepath.Abs("../../pkg/backtest/testdata/rigs.yaml")
	cmd := exec.Command(filepath.Join(bins(t), "quarryctl"), "backtest", "--history", history, "--rigs", rigs, "--threshold", "0.05", "--abs", "0.1", "-o", "json")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("backtest: %v\n%s", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("progress written to a non-terminal stderr without --progress: %q", stderr.String())
	}
	var rep struct {
		Days  int `json:"days"`
		Rigs  []map[string]json.RawMessage
		Total map[string]json.RawMessage `json:"total"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout.String())
	}
	if rep.Days != 302 || len(rep.Rigs) != 6 {
		t.Fatalf("days %d rigs %d, want 302 and 6", rep.Days, len(rep.Rigs))
	}
	for _, s := range []string{"policy", "oracle", "greedy", "best_single"} {
		var st struct {
			Profit         *float64 `json:"profit_usd"`
			SwitchesPerDay *float64 `json:"switches_per_rig_day"`
		}
		if err := json.Unmarshal(rep.Total[s], &st); err != nil || st.Profit == nil || st.SwitchesPerDay == nil {
			t.Fatalf("total lacks strategy %s: %v %s", s, err, rep.Total[s])
		}
	}
	var oracle, policy struct {
		Profit float64 `json:"profit_usd"`
	}
	_ = json.Unmarshal(rep.Total["oracle"], &oracle)
	_ = json.Unmarshal(rep.Total["policy"], &policy)
	if policy.Profit > oracle.Profit || policy.Profit <= 0 {
		t.Fatalf("policy $%.2f vs oracle $%.2f: the oracle must bound the policy", policy.Profit, oracle.Profit)
	}

	// --progress draws the bar even when stderr is not a terminal.
	cmd = exec.Command(filepath.Join(bins(t), "quarryctl"), "backtest", "--history", history, "--rigs", rigs, "--progress")
	stderr.Reset()
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || !strings.Contains(stderr.String(), "6/6 rigs") {
		t.Fatalf("progress: %v %q", err, stderr.String())
	}
}
