package market

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Minerstat reads a minerstat-format coin list
// ([{coin,algorithm,network_hashrate,difficulty,reward,reward_block,price,...}]),
// where -1 means unknown. It supplies chain facts and a USD price.
type Minerstat struct {
	URL    string
	Client *http.Client // nil: http.DefaultClient
	Label  string       // Name(); default "minerstat"
}

var _ Source = (*Minerstat)(nil)

// Name implements Source.
func (m *Minerstat) Name() string { return nameOr(m.Label, "minerstat") }

// Roles implements Roler.
func (m *Minerstat) Roles() Role { return RoleChain | RolePrice }

// Fetch implements Source.
func (m *Minerstat) Fetch(ctx context.Context) ([]Coin, error) {
	body, err := getJSON(ctx, m.Client, m.URL)
	if err != nil {
		return nil, fmt.Errorf("minerstat: %w", err)
	}
	return ParseMinerstat(body, m.Name(), time.Now())
}

type msCoin struct {
	Coin        flexString `json:"coin"`
	Name        flexString `json:"name"`
	Type        flexString `json:"type"`
	Algorithm   flexString `json:"algorithm"`
	NetHash     flexFloat  `json:"network_hashrate"`
	Difficulty  flexFloat  `json:"difficulty"`
	Reward      flexFloat  `json:"reward"` // coins per 1 H/s per hour
	RewardBlock flexFloat  `json:"reward_block"`
	Price       flexFloat  `json:"price"`
	Updated     flexFloat  `json:"updated"`
}

// ParseMinerstat decodes a minerstat coin list. minerstat publishes no block
// time; it is derived from the hourly reward per H/s
// (block_time = 3600 × reward_block / (reward × network_hashrate)) and left
// zero when any of those is unknown, so another chain source can fill it.
// Entries whose type is not "coin" (pools, markets) are skipped, as are
// later duplicates of a tag.
func ParseMinerstat(data []byte, source string, now time.Time) ([]Coin, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("minerstat: site reported error: %s", e.Error)
		}
		return nil, fmt.Errorf("minerstat: decode: %w", err)
	}
	out := make([]Coin, 0, len(raw))
	seen := make(map[string]bool, len(raw))
	for i, r := range raw {
		var m msCoin
		if err := json.Unmarshal(r, &m); err != nil {
			return nil, fmt.Errorf("minerstat: entry %d: %w", i, err)
		}
		if t := strings.ToLower(string(m.Type)); t != "" && t != "coin" {
			continue
		}
		tag := strings.ToLower(strings.TrimSpace(string(m.Coin)))
		if seen[tag] {
			continue
		}
		seen[tag] = true
		c := Coin{
			Tag:         tag,
			Name:        string(m.Name),
			Algorithm:   CanonicalAlgorithm(string(m.Algorithm)),
			BlockReward: unknownNeg(m.RewardBlock),
			Difficulty:  unknownNeg(m.Difficulty),
			NetHash:     unknownNeg(m.NetHash),
			PriceUSD:    unknownNeg(m.Price),
			Source:      source,
			UpdatedAt:   unixOr(float64(m.Updated), now),
		}
		if rw := unknownNeg(m.Reward); finite(rw) && finite(c.NetHash) && finite(c.BlockReward) {
			c.BlockTime = 3600 * c.BlockReward / (rw * c.NetHash)
		}
		c.Kind = inferKind(c.Algorithm, c.Difficulty, c.NetHash, c.BlockTime)
		out = append(out, c)
	}
	return out, nil
}
