package market

import (
	"math"
	"sort"
	"time"
)

// sourceResult is what one source returned in one fetch.
type sourceResult struct {
	name  string
	roles Role
	coins []Coin
	err   error
	took  time.Duration
}

// merge combines the sources' coins, in configured order, into one record
// per tag. The precedence rule:
//
//   - Chain facts (algorithm, block time, block reward, difficulty, nethash,
//     difficulty kind) come as one group from the first chain source that
//     reports the coin with any chain fact, so difficulty and nethash are
//     never mixed from two sites. Only a block time, block reward, algorithm
//     or name that source lacks is filled from later chain sources.
//     A missing nethash is derived from difficulty and block time.
//   - The price is the first usable one from, in order: price-only sources
//     (CoinGecko), then the USD price of combined sources (minerstat, file),
//     then a BTC price (WhatToMine) times bitcoin's USD price from the
//     sources. If no source has a usable price, the first unusable one is
//     kept so validation can say what was wrong.
//
// Coins that only price sources know (bitcoin itself) are not mined and are
// left out. The result is sorted by tag.
func merge(results []sourceResult) []Coin {
	chain := make(map[string]Coin)
	var order []string
	for _, r := range results {
		if r.err != nil || r.roles&RoleChain == 0 {
			continue
		}
		for _, c := range r.coins {
			if !hasChain(c) {
				continue
			}
			c.Source = r.name
			cur, ok := chain[c.Tag]
			if !ok {
				chain[c.Tag] = c
				order = append(order, c.Tag)
				continue
			}
			if cur.BlockTime == 0 {
				cur.BlockTime = c.BlockTime
			}
			if cur.BlockReward == 0 {
				cur.BlockReward = c.BlockReward
			}
			if cur.Algorithm == "" {
				cur.Algorithm = c.Algorithm
			}
			if cur.Name == "" {
				cur.Name = c.Name
			}
			chain[c.Tag] = cur
		}
	}

	btcUSD := 0.0
	for _, r := range results {
		if r.err != nil || r.roles&RolePrice == 0 {
			continue
		}
		for _, c := range r.coins {
			if c.Tag == "btc" && finite(c.PriceUSD) {
				btcUSD = c.PriceUSD
				break
			}
		}
		if btcUSD != 0 {
			break
		}
	}

	// Price candidates per tag in precedence order.
	type cand struct {
		usd    float64
		source string
		at     Coin
	}
	prices := make(map[string][]cand)
	add := func(pass func(Role) bool, usd func(Coin) float64) {
		for _, r := range results {
			if r.err != nil || !pass(r.roles) {
				continue
			}
			for _, c := range r.coins {
				if v := usd(c); v != 0 {
					prices[c.Tag] = append(prices[c.Tag], cand{v, r.name, c})
				}
			}
		}
	}
	add(func(ro Role) bool { return ro == RolePrice }, func(c Coin) float64 { return c.PriceUSD })
	add(func(ro Role) bool { return ro&RolePrice != 0 && ro&RoleChain != 0 }, func(c Coin) float64 { return c.PriceUSD })
	add(func(ro Role) bool { return ro&RolePrice != 0 && ro&RoleChain != 0 }, func(c Coin) float64 {
		if c.PriceBTC == 0 || btcUSD == 0 {
			return 0
		}
		return c.PriceBTC * btcUSD
	})

	sort.Strings(order)
	out := make([]Coin, 0, len(order))
	for _, tag := range order {
		c := chain[tag]
		c.PriceUSD = 0
		var pick *cand
		for i := range prices[tag] {
			if finite(prices[tag][i].usd) {
				pick = &prices[tag][i]
				break
			}
		}
		if pick == nil && len(prices[tag]) > 0 {
			pick = &prices[tag][0]
		}
		if pick != nil {
			c.PriceUSD = pick.usd
			if pick.source != c.Source {
				c.Source += "+" + pick.source
			}
			if pick.at.UpdatedAt.Before(c.UpdatedAt) {
				c.UpdatedAt = pick.at.UpdatedAt
			}
		}
		if c.NetHash == 0 {
			c.NetHash = c.DerivedNetHash()
		}
		out = append(out, c)
	}
	return out
}

func hasChain(c Coin) bool {
	return c.Difficulty != 0 || c.NetHash != 0 || c.BlockTime != 0 || c.BlockReward != 0 ||
		math.IsNaN(c.Difficulty)
}
