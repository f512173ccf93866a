package market

import (
	"math"
	"testing"
)

// checkParsed asserts what every parser promises for any input: tags are
// lower-case, and whatever garbage came in, validation either accepts a
// coin with usable numbers or names a reason.
func checkParsed(t *testing.T, coins []Coin) {
	t.Helper()
	for _, c := range coins {
		for _, r := range c.Tag {
			if r >= 'A' && r <= 'Z' {
				t.Fatalf("tag %q is not lower-case", c.Tag)
			}
		}
		c.NetHash = math.Max(c.NetHash, c.DerivedNetHash())
		if Validate(c) == "" && !(finite(c.Difficulty) && finite(c.NetHash) && finite(c.BlockTime) && finite(c.BlockReward) && finite(c.PriceUSD)) {
			t.Fatalf("coin %+v passed validation with unusable numbers", c)
		}
	}
}

func FuzzParseWhatToMine(f *testing.F) {
	f.Add(readTestdata(f, "whattomine_coins.json"))
	f.Add(readTestdata(f, "whattomine_errors.json"))
	f.Add([]byte(`{"coins":{"X":{"tag":"X","block_time":"1e400","difficulty":-1,"nethash":"NaN"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		coins, err := ParseWhatToMine(data, "wtm", t0)
		if err != nil {
			return
		}
		checkParsed(t, coins)
	})
}

func FuzzParseMinerstat(f *testing.F) {
	f.Add(readTestdata(f, "minerstat_coins.json"))
	f.Add([]byte(`[{"coin":"X","network_hashrate":-1,"reward":0,"reward_block":"7"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		coins, err := ParseMinerstat(data, "ms", t0)
		if err != nil {
			return
		}
		checkParsed(t, coins)
	})
}

func FuzzParseCoinGecko(f *testing.F) {
	f.Add(readTestdata(f, "coingecko_simple_price.json"))
	f.Add(readTestdata(f, "coingecko_rate_limited.json"))
	ids := map[string]string{"btc": "bitcoin", "etc": "ethereum-classic", "XMR": "monero"}
	f.Fuzz(func(t *testing.T, data []byte) {
		coins, err := ParseCoinGecko(data, ids, "cg", t0)
		if err != nil {
			return
		}
		if len(coins) > len(ids) {
			t.Fatalf("%d coins from %d ids", len(coins), len(ids))
		}
		checkParsed(t, coins)
	})
}

func FuzzParseFile(f *testing.F) {
	f.Add(defaultSnapshotJSON)
	f.Add([]byte(`{"format":"quarry-market/v1","fetched":"2024-06-15T00:00:00Z","coins":[{"tag":"X"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := ParseFile(data, "file")
		if err != nil {
			return
		}
		if doc.Format != FileFormat || doc.Fetched.IsZero() {
			t.Fatalf("accepted doc without format or time: %+v", doc)
		}
		checkParsed(t, doc.Coins)
	})
}
