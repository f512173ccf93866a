package market

import (
	"math"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2024, 6, 15, 0, 10, 0, 0, time.UTC)

func byTag(cs []Coin) map[string]Coin {
	m := make(map[string]Coin, len(cs))
	for _, c := range cs {
		m[c.Tag] = c
	}
	return m
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(math.Abs(a), math.Abs(b)) }

func TestParseWhatToMine(t *testing.T) {
	coins, err := ParseWhatToMine(readTestdata(t, "whattomine_coins.json"), "wtm", t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(coins) != 14 {
		t.Fatalf("got %d coins, want 14 (NiceHash entry skipped)", len(coins))
	}
	m := byTag(coins)
	if _, ok := m["nicehash"]; ok {
		t.Error("NiceHash pseudo-coin was not skipped")
	}
	tests := []struct {
		tag, algo string
		kind      DifficultyKind
		bt, br    float64
		nethash   float64
	}{
		{"etc", "etchash", NethashBased, 13.1, 2.56, 1.752e14},
		{"rvn", "kawpow", BitcoinStyle, 60, 2500, 6.81e12},
		{"zec", "equihash", EquihashStyle, 75, 2.5, 1.01e10},
		{"btg", "zhash", EquihashStyle, 600, 6.25, 1.48e5},
		{"xmr", "randomx", NethashBased, 120, 0.6132, 2.04e9},
		{"kas", "kheavyhash", NethashBased, 1, 109.8, 3.02e17},
	}
	for _, tt := range tests {
		c, ok := m[tt.tag]
		if !ok {
			t.Errorf("%s missing", tt.tag)
			continue
		}
		if c.Algorithm != tt.algo || c.Kind != tt.kind || c.BlockTime != tt.bt || c.BlockReward != tt.br || c.NetHash != tt.nethash {
			t.Errorf("%s = %+v, want algo %s kind %v bt %g reward %g nethash %g", tt.tag, c, tt.algo, tt.kind, tt.bt, tt.br, tt.nethash)
		}
		if !near(c.DerivedNetHash(), c.NetHash) && math.Abs(c.DerivedNetHash()/c.NetHash-1) > 1e-4 {
			t.Errorf("%s: derived nethash %g disagrees with reported %g", tt.tag, c.DerivedNetHash(), c.NetHash)
		}
		if c.PriceBTC <= 0 || c.PriceUSD != 0 || c.Source != "wtm" {
			t.Errorf("%s: want a BTC price only and source wtm, got %+v", tt.tag, c)
		}
	}
	if got := m["etc"].UpdatedAt; !got.Equal(time.Unix(1718409720, 0)) {
		t.Errorf("etc UpdatedAt = %v, want the payload timestamp", got)
	}
}

func TestParseWhatToMineErrors(t *testing.T) {
	tests := []struct {
		name, payload, want string
	}{
		{"site errors", string(readTestdata(t, "whattomine_errors.json")), "Too many requests"},
		{"not json", "<html>502 Bad Gateway</html>", "decode"},
		{"no coins", `{"foo":1}`, `no "coins"`},
		{"truncated", `{"coins":{"Ethereum":{"tag":"ETH"`, "decode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseWhatToMine([]byte(tt.payload), "wtm", t0)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestParseWhatToMineKeepsGarbledCoin(t *testing.T) {
	payload := `{"coins":{"Good":{"tag":"GD","algorithm":"Ethash","block_time":"12","block_reward":2,"difficulty":1e15,"nethash":8.3e13,"exchange_rate":1e-5},
		"Bad":{"tag":"BD","algorithm":"Ethash","block_time":"soon","block_reward":2,"difficulty":1e15,"nethash":8.3e13,"exchange_rate":1e-5},
		"Odd":[1,2,3]}}`
	coins, err := ParseWhatToMine([]byte(payload), "wtm", t0)
	if err != nil {
		t.Fatal(err)
	}
	m := byTag(coins)
	if len(m) != 3 {
		t.Fatalf("got %v, want all three coins kept for validation", m)
	}
	if r := Validate(withPrice(m["bd"])); r != "block_time is not a number" {
		t.Errorf("garbled block_time reason = %q", r)
	}
	if r := Validate(withPrice(m["odd"])); r == "" {
		t.Error("a coin that is not an object passed validation")
	}
	if r := Validate(withPrice(m["gd"])); r != "" {
		t.Errorf("good coin dropped: %s", r)
	}
}

func withPrice(c Coin) Coin { c.PriceUSD = 1; return c }

func TestParseMinerstat(t *testing.T) {
	coins, err := ParseMinerstat(readTestdata(t, "minerstat_coins.json"), "ms", t0)
	if err != nil {
		t.Fatal(err)
	}
	m := byTag(coins)
	if len(coins) != 12 {
		t.Fatalf("got %d coins, want 12 (pool entry skipped)", len(coins))
	}
	if _, ok := m["nicehash"]; ok {
		t.Error("pool entry was not skipped")
	}
	etc := m["etc"]
	if etc.Algorithm != "etchash" || etc.BlockReward != 2.56 || etc.PriceUSD != 23.8383 || math.Abs(etc.BlockTime-13.1) > 0.01 {
		t.Errorf("etc = %+v; want block time derived ≈13.1 from the hourly reward", etc)
	}
	if btg := m["btg"]; btg.Algorithm != "zhash" || btg.Kind != EquihashStyle {
		t.Errorf("btg = %+v, want zhash/equihash", btg)
	}
	if xmr := m["xmr"]; xmr.PriceUSD != 0 {
		t.Errorf("xmr price -1 should read as unknown (0), got %g", xmr.PriceUSD)
	}
	if neox := m["neox"]; neox.NetHash != 0 || neox.BlockTime != 0 || neox.Difficulty <= 0 {
		t.Errorf("neox = %+v; unknown hashrate must leave nethash and block time zero", neox)
	}
}

func TestParseMinerstatErrors(t *testing.T) {
	for _, p := range []string{`{"error":"Invalid API key"}`, `{}`, `[{"coin":{"x":1}}]`, `nope`} {
		if _, err := ParseMinerstat([]byte(p), "ms", t0); err == nil {
			t.Errorf("ParseMinerstat(%s) succeeded, want an error", p)
		}
	}
}

func TestParseCoinGecko(t *testing.T) {
	ids := map[string]string{"btc": "bitcoin", "etc": "ethereum-classic", "kas": "kaspa", "dero": "dero"}
	coins, err := ParseCoinGecko(readTestdata(t, "coingecko_simple_price.json"), ids, "cg", t0)
	if err != nil {
		t.Fatal(err)
	}
	m := byTag(coins)
	if len(coins) != 3 {
		t.Fatalf("got %v, want btc, etc, kas (dero absent from reply)", m)
	}
	if m["btc"].PriceUSD != 66120 || m["etc"].PriceUSD != 23.9578 {
		t.Errorf("prices = %+v", m)
	}
	if m["etc"].Difficulty != 0 || m["etc"].Algorithm != "" {
		t.Error("a price source must not supply chain facts")
	}
	_, err = ParseCoinGecko(readTestdata(t, "coingecko_rate_limited.json"), ids, "cg", t0)
	if err == nil || !strings.Contains(err.Error(), "429") {
		t.Errorf("rate-limited reply: err = %v, want it to mention 429", err)
	}
}

func TestParseFile(t *testing.T) {
	doc, err := ParseFile(defaultSnapshotJSON, "embedded")
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Coins) < 10 || doc.Fetched.IsZero() {
		t.Fatalf("embedded snapshot has %d coins fetched %v", len(doc.Coins), doc.Fetched)
	}
	for _, c := range doc.Coins {
		if r := Validate(c); r != "" {
			t.Errorf("embedded %s: %s", c.Tag, r)
		}
		if d := c.DerivedNetHash(); math.Abs(d/c.NetHash-1) > 1e-3 {
			t.Errorf("embedded %s: difficulty implies %g H/s, file says %g", c.Tag, d, c.NetHash)
		}
	}
	bad := []struct{ name, doc, want string }{
		{"typo", `{"format":"quarry-market/v1","fetched":"2024-06-15T00:00:00Z","coins":[{"tag":"etc","blocktime":13}]}`, "unknown field"},
		{"format", `{"format":"v9","fetched":"2024-06-15T00:00:00Z","coins":[]}`, "format"},
		{"no time", `{"format":"quarry-market/v1","coins":[]}`, "fetched"},
		{"kind", `{"format":"quarry-market/v1","fetched":"2024-06-15T00:00:00Z","coins":[{"tag":"x","difficulty_kind":"scrypt"}]}`, "difficulty kind"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseFile([]byte(tt.doc), "f"); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestFileKindDefaultsFromAlgorithm(t *testing.T) {
	doc, err := ParseFile([]byte(`{"format":"quarry-market/v1","fetched":"2024-06-15T00:00:00Z",
		"coins":[{"tag":"RVN","algorithm":"KAWPOW","block_time":60,"block_reward":2500,"difficulty":95000,"price_usd":0.02}]}`), "f")
	if err != nil {
		t.Fatal(err)
	}
	c := doc.Coins[0]
	if c.Tag != "rvn" || c.Kind != BitcoinStyle || !c.UpdatedAt.Equal(doc.Fetched) {
		t.Fatalf("got %+v", c)
	}
	if want := 95000 * two32 / 60; !near(c.DerivedNetHash(), want) {
		t.Errorf("derived nethash %g, want %g", c.DerivedNetHash(), want)
	}
}

func TestCanonicalAlgorithm(t *testing.T) {
	for in, want := range map[string]string{
		"Etchash": "etchash", "KAWPOW": "kawpow", "Equihash (144,5)": "zhash", "Equihash(125,4)": "zelhash",
		"RandomX": "randomx", "Autolykos": "autolykos2", "SHA-256": "sha256d", "Some New Algo": "somenewalgo",
	} {
		if got := CanonicalAlgorithm(in); got != want {
			t.Errorf("CanonicalAlgorithm(%q) = %q, want %q", in, got, want)
		}
	}
}
