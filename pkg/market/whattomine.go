package market

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"
)

// WhatToMine reads a WhatToMine-format coins.json
// ({"coins":{"Name":{...}}}). It supplies chain facts and a price in BTC
// (exchange_rate), which the merge converts with the bitcoin USD price.
type WhatToMine struct {
	URL    string
	Client *http.Client // nil: http.DefaultClient
	Label  string       // Name(); default "whattomine"
}

var _ Source = (*WhatToMine)(nil)

// Name implements Source.
func (w *WhatToMine) Name() string { return nameOr(w.Label, "whattomine") }

// Roles implements Roler.
func (w *WhatToMine) Roles() Role { return RoleChain | RolePrice }

// Fetch implements Source.
func (w *WhatToMine) Fetch(ctx context.Context) ([]Coin, error) {
	body, err := getJSON(ctx, w.Client, w.URL)
	if err != nil {
		return nil, fmt.Errorf("whattomine: %w", err)
	}
	return ParseWhatToMine(body, w.Name(), time.Now())
}

type wtmCoin struct {
	Tag          flexString `json:"tag"`
	Algorithm    flexString `json:"algorithm"`
	BlockTime    flexFloat  `json:"block_time"`
	BlockReward  flexFloat  `json:"block_reward"`
	Difficulty   flexFloat  `json:"difficulty"`
	NetHash      flexFloat  `json:"nethash"`
	ExchangeRate flexFloat  `json:"exchange_rate"`
	RateCurr     flexString `json:"exchange_rate_curr"`
	Timestamp    flexFloat  `json:"timestamp"`
}

// ParseWhatToMine decodes a WhatToMine coins.json payload. Fields the
// payload lacks stay zero; values it garbles become NaN so validation drops
// the coin with a reason. NiceHash pseudo-coins are skipped. An
// {"errors":[...]} reply is returned as an error.
func ParseWhatToMine(data []byte, source string, now time.Time) ([]Coin, error) {
	// One pass decodes a well-formed payload; only when a coin entry is
	// malformed do we decode entry by entry to keep the others.
	var fast struct {
		Coins  map[string]wtmCoin `json:"coins"`
		Errors []json.RawMessage  `json:"errors"`
	}
	if err := json.Unmarshal(data, &fast); err == nil && len(fast.Errors) == 0 && fast.Coins != nil {
		return wtmCoins(fast.Coins, nil, source, now), nil
	}
	var doc struct {
		Coins  map[string]json.RawMessage `json:"coins"`
		Errors []json.RawMessage          `json:"errors"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("whattomine: decode: %w", err)
	}
	if len(doc.Errors) > 0 {
		msgs := make([]string, 0, len(doc.Errors))
		for _, e := range doc.Errors {
			var s string
			if json.Unmarshal(e, &s) != nil {
				s = string(e)
			}
			msgs = append(msgs, s)
		}
		return nil, fmt.Errorf("whattomine: site reported errors: %s", strings.Join(msgs, "; "))
	}
	if doc.Coins == nil {
		return nil, fmt.Errorf("whattomine: reply has no \"coins\" object")
	}
	coins := make(map[string]wtmCoin, len(doc.Coins))
	var bad []string
	for name, raw := range doc.Coins {
		var w wtmCoin
		if err := json.Unmarshal(raw, &w); err != nil {
			bad = append(bad, name)
			continue
		}
		coins[name] = w
	}
	return wtmCoins(coins, bad, source, now), nil
}

// wtmCoins converts decoded entries, sorted by name for deterministic
// output. Entries in bad could not be decoded; they are kept with a NaN
// difficulty so validation reports them instead of losing them silently.
func wtmCoins(coins map[string]wtmCoin, bad []string, source string, now time.Time) []Coin {
	names := make([]string, 0, len(coins)+len(bad))
	for n := range coins {
		names = append(names, n)
	}
	names = append(names, bad...)
	sort.Strings(names)
	out := make([]Coin, 0, len(names))
	for _, name := range names {
		w, ok := coins[name]
		if !ok {
			out = append(out, Coin{Tag: strings.ToLower(name), Name: name, Difficulty: math.NaN(), Source: source, UpdatedAt: now})
			continue
		}
		tag := strings.ToLower(strings.TrimSpace(string(w.Tag)))
		if tag == "nicehash" || strings.HasPrefix(strings.ToLower(name), "nicehash-") {
			continue
		}
		c := Coin{
			Tag:         tag,
			Name:        name,
			Algorithm:   CanonicalAlgorithm(string(w.Algorithm)),
			BlockTime:   float64(w.BlockTime),
			BlockReward: float64(w.BlockReward),
			Difficulty:  float64(w.Difficulty),
			NetHash:     float64(w.NetHash),
			Source:      source,
			UpdatedAt:   unixOr(float64(w.Timestamp), now),
		}
		if cur := strings.ToUpper(string(w.RateCurr)); cur == "" || cur == "BTC" {
			c.PriceBTC = float64(w.ExchangeRate)
		}
		c.Kind = inferKind(c.Algorithm, c.Difficulty, c.NetHash, c.BlockTime)
		out = append(out, c)
	}
	return out
}

func unixOr(sec float64, now time.Time) time.Time {
	if finite(sec) && sec < 1e11 {
		return time.Unix(int64(sec), 0).UTC()
	}
	return now.UTC()
}

func nameOr(label, def string) string {
	if label != "" {
		return label
	}
	return def
}
