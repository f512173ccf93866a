package market

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// CoinGecko reads USD prices in CoinGecko's simple/price format
// ({"bitcoin":{"usd":62000,"last_updated_at":...}}). IDs maps our tags to
// CoinGecko ids ("etc" -> "ethereum-classic"); include "btc" -> "bitcoin"
// so WhatToMine's BTC prices can be converted.
type CoinGecko struct {
	// BaseURL is the simple/price endpoint; the ids and vs_currencies
	// query parameters are added to it.
	BaseURL string
	IDs     map[string]string
	Client  *http.Client // nil: http.DefaultClient
	Label   string       // Name(); default "coingecko"
}

var _ Source = (*CoinGecko)(nil)

// Name implements Source.
func (g *CoinGecko) Name() string { return nameOr(g.Label, "coingecko") }

// Roles implements Roler.
func (g *CoinGecko) Roles() Role { return RolePrice }

// Fetch implements Source.
func (g *CoinGecko) Fetch(ctx context.Context) ([]Coin, error) {
	u, err := url.Parse(g.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("coingecko: base URL: %w", err)
	}
	ids := make([]string, 0, len(g.IDs))
	for _, id := range g.IDs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	q := u.Query()
	q.Set("ids", strings.Join(ids, ","))
	q.Set("vs_currencies", "usd")
	q.Set("include_last_updated_at", "true")
	u.RawQuery = q.Encode()
	body, err := getJSON(ctx, g.Client, u.String())
	if err != nil {
		return nil, fmt.Errorf("coingecko: %w", err)
	}
	return ParseCoinGecko(body, g.IDs, g.Name(), time.Now())
}

type cgPrice struct {
	USD     flexFloat `json:"usd"`
	Updated flexFloat `json:"last_updated_at"`
}

// ParseCoinGecko decodes a simple/price reply into price-only coins, one per
// tag in ids whose CoinGecko id is present. Tags are returned sorted. A
// rate-limit or error reply ({"status":{"error_code":...}} or
// {"error":...}) is returned as an error.
func ParseCoinGecko(data []byte, ids map[string]string, source string, now time.Time) ([]Coin, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("coingecko: decode: %w", err)
	}
	if st, ok := doc["status"]; ok {
		var s struct {
			Code flexString `json:"error_code"`
			Msg  string     `json:"error_message"`
		}
		if json.Unmarshal(st, &s) == nil && (s.Code != "" || s.Msg != "") {
			return nil, fmt.Errorf("coingecko: site reported error %s: %s", s.Code, s.Msg)
		}
	}
	if e, ok := doc["error"]; ok {
		return nil, fmt.Errorf("coingecko: site reported error: %s", e)
	}
	tags := make([]string, 0, len(ids))
	for t := range ids {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	out := make([]Coin, 0, len(tags))
	for _, tag := range tags {
		r, ok := doc[ids[tag]]
		if !ok {
			continue
		}
		var p cgPrice
		if err := json.Unmarshal(r, &p); err != nil {
			return nil, fmt.Errorf("coingecko: %s: %w", ids[tag], err)
		}
		out = append(out, Coin{
			Tag:       strings.ToLower(tag),
			PriceUSD:  float64(p.USD),
			Source:    source,
			UpdatedAt: unixOr(float64(p.Updated), now),
		})
	}
	return out, nil
}
