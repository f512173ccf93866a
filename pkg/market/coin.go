package market

import (
	"fmt"
	"math"
	"time"
)

// DifficultyKind says how a coin's difficulty relates to its network hash rate.
type DifficultyKind int

const (
	// NethashBased coins (ethash, randomx, kheavyhash, ...) have
	// nethash = difficulty / block_time.
	NethashBased DifficultyKind = iota
	// BitcoinStyle coins (sha256d, scrypt, equihash on bitcoin-derived
	// chains, ...) have nethash = difficulty × 2^32 / block_time.
	BitcoinStyle
	// EquihashStyle coins (zcash and its forks) count solutions:
	// nethash = difficulty × 8192 / block_time, as getnetworksolps does.
	EquihashStyle
)

// Difficulty-1 work factors for the non-nethash kinds.
const (
	two32     = 4294967296.0
	equihashF = 8192.0
)

// String returns the name used in JSON and in explanations.
func (k DifficultyKind) String() string {
	switch k {
	case BitcoinStyle:
		return "bitcoin"
	case EquihashStyle:
		return "equihash"
	default:
		return "nethash"
	}
}

// factor is the hashes represented by one unit of difficulty.
func (k DifficultyKind) factor() float64 {
	switch k {
	case BitcoinStyle:
		return two32
	case EquihashStyle:
		return equihashF
	default:
		return 1
	}
}

// MarshalText encodes the kind as "nethash", "bitcoin" or "equihash".
func (k DifficultyKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText accepts "nethash", "bitcoin", "equihash" or an empty string
// (nethash).
func (k *DifficultyKind) UnmarshalText(b []byte) error {
	switch string(b) {
	case "", "nethash":
		*k = NethashBased
	case "bitcoin":
		*k = BitcoinStyle
	case "equihash":
		*k = EquihashStyle
	default:
		return fmt.Errorf("market: unknown difficulty kind %q (want nethash, bitcoin or equihash)", b)
	}
	return nil
}

// Coin is one coin's market facts at a moment. Tag is the lower-case ticker
// ("etc"), Algorithm the canonical lower-case algorithm name ("ethash").
type Coin struct {
	Tag         string  `json:"tag"`
	Name        string  `json:"name,omitempty"`
	Algorithm   string  `json:"algorithm"`
	BlockTime   float64 `json:"block_time"`   // seconds
	BlockReward float64 `json:"block_reward"` // coins per block paid to miners
	Difficulty  float64 `json:"difficulty"`
	NetHash     float64 `json:"nethash"` // H/s
	PriceUSD    float64 `json:"price_usd"`
	// PriceBTC is the price in bitcoin when a source quotes only that
	// (WhatToMine's exchange_rate); the merge turns it into PriceUSD.
	PriceBTC  float64        `json:"price_btc,omitempty"`
	Kind      DifficultyKind `json:"difficulty_kind"`
	Source    string         `json:"source,omitempty"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// DerivedNetHash returns the network hash rate implied by difficulty and
// block time, or 0 when either is unusable.
func (c Coin) DerivedNetHash() float64 {
	if !(c.Difficulty > 0) || !(c.BlockTime > 0) || math.IsInf(c.Difficulty, 0) || math.IsInf(c.BlockTime, 0) {
		return 0
	}
	return c.Difficulty * c.Kind.factor() / c.BlockTime
}

// SourceStatus reports how one source did in the fetch that built a snapshot.
type SourceStatus struct {
	Name     string        `json:"name"`
	OK       bool          `json:"ok"`
	Coins    int           `json:"coins"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration"`
}

// Dropped is a coin rejected by validation and why.
type Dropped struct {
	Tag    string `json:"tag"`
	Source string `json:"source,omitempty"`
	Reason string `json:"reason"`
}

// Held is a coin whose new price or difficulty jumped too far from the last
// accepted value; the old value stays in the snapshot until the jump is seen
// in enough consecutive fetches.
type Held struct {
	Tag      string  `json:"tag"`
	Field    string  `json:"field"` // "price_usd" or "difficulty"
	Old      float64 `json:"old"`
	New      float64 `json:"new"`
	Seen     int     `json:"seen"`     // consecutive fetches that showed the jump
	Required int     `json:"required"` // fetches needed to accept it
}

// Snapshot is one validated view of the market. Coins is keyed by Tag.
type Snapshot struct {
	Coins   map[string]Coin `json:"coins"`
	Fetched time.Time       `json:"fetched"`
	Sources []SourceStatus  `json:"sources,omitempty"`
	Dropped []Dropped       `json:"dropped,omitempty"`
	Held    []Held          `json:"held,omitempty"`
	// Origin says where the snapshot came from: "fetch", "bbolt" or "embedded".
	Origin string `json:"origin,omitempty"`
}

// DefaultMaxStaleness is how old a snapshot may be before profit switching
// must pause.
const DefaultMaxStaleness = 2 * time.Hour

// Stale reports whether the snapshot is older than DefaultMaxStaleness at now.
// A zero snapshot is always stale.
func (s Snapshot) Stale(now time.Time) bool { return s.StaleAfter(now, DefaultMaxStaleness) }

// StaleAfter reports whether the snapshot is older than maxAge at now.
func (s Snapshot) StaleAfter(now time.Time, maxAge time.Duration) bool {
	return s.Fetched.IsZero() || now.Sub(s.Fetched) > maxAge
}

// Coin returns the coin with the given tag.
func (s Snapshot) Coin(tag string) (Coin, bool) {
	c, ok := s.Coins[tag]
	return c, ok
}
