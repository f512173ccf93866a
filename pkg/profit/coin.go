package profit

import (
	"errors"
	"fmt"
	"math"
)

// SecondsPerDay is the length of the accounting day used throughout.
const SecondsPerDay = 86400

// BitcoinHashesPerDifficulty is the expected number of hashes per unit of
// difficulty for Bitcoin-style targets (difficulty 1 = 2^32 hashes).
const BitcoinHashesPerDifficulty = 4294967296.0

// DifficultyKind says which network figure earnings are derived from.
type DifficultyKind int

const (
	// NetHash derives earnings from the network hash rate: a rig's share of
	// the network times the blocks per day. Used by Ethash, RandomX and
	// Equihash coins whose sources publish a hash rate.
	NetHash DifficultyKind = iota
	// Difficulty derives earnings from the block difficulty and the expected
	// hashes per unit of difficulty (Coin.HashesPerDifficulty, 2^32 when 0,
	// as in Bitcoin and its forks). Block time cancels out of this form, so
	// it is the right choice where no hash rate is published.
	Difficulty
)

// String returns the kind's name as used in configuration.
func (k DifficultyKind) String() string {
	switch k {
	case NetHash:
		return "nethash"
	case Difficulty:
		return "difficulty"
	}
	return fmt.Sprintf("DifficultyKind(%d)", int(k))
}

// Coin holds one coin's network and market figures. It is the engine's own
// input shape, so profit does not depend on any market source's types.
type Coin struct {
	Tag         string  // ticker, lower case: "etc"
	Algorithm   string  // canonical algorithm name the coin is mined with
	BlockTime   float64 // seconds per block
	BlockReward float64 // coins paid to miners per block, fees included
	Difficulty  float64 // network difficulty in the coin's native units
	NetHash     float64 // network hash rate, H/s (or Sol/s, graphs/s)
	PriceUSD    float64 // USD per coin
	Kind        DifficultyKind
	// HashesPerDifficulty is the expected work per unit of difficulty for
	// Kind == Difficulty; 0 means BitcoinHashesPerDifficulty. Grin's
	// Cuckatoo31 is 42/7936: a graph holds a 42-cycle with probability
	// about 1/42 and a C31 solution is weighted 7936.
	HashesPerDifficulty float64
}

// ErrBadCoin is wrapped by every error Coin.Validate returns.
var ErrBadCoin = errors.New("invalid coin figures")

// Validate reports the first figure that makes the coin unusable.
func (c Coin) Validate() error {
	bad := func(field string, v float64) error {
		return fmt.Errorf("%w: %s %s = %v", ErrBadCoin, c.Tag, field, v)
	}
	pos := func(v float64) bool { return v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }
	if c.Tag == "" {
		return fmt.Errorf("%w: empty tag", ErrBadCoin)
	}
	if !pos(c.BlockReward) {
		return bad("block reward", c.BlockReward)
	}
	if !(c.PriceUSD >= 0) || math.IsInf(c.PriceUSD, 0) {
		return bad("price", c.PriceUSD)
	}
	switch c.Kind {
	case NetHash:
		if !pos(c.NetHash) {
			return bad("network hash rate", c.NetHash)
		}
		if !pos(c.BlockTime) {
			return bad("block time", c.BlockTime)
		}
	case Difficulty:
		if !pos(c.Difficulty) {
			return bad("difficulty", c.Difficulty)
		}
		if c.HashesPerDifficulty != 0 && !pos(c.HashesPerDifficulty) {
			return bad("hashes per difficulty", c.HashesPerDifficulty)
		}
	default:
		return fmt.Errorf("%w: %s unknown difficulty kind %d", ErrBadCoin, c.Tag, int(c.Kind))
	}
	return nil
}

// CoinsPerHashDay returns the coins one H/s earns per day on average:
//
//	nethash:    86400 / block_time × block_reward / nethash
//	difficulty: 86400 × block_reward / (difficulty × hashes_per_difficulty)
//
// It returns 0 for figures that fail Validate, so a bad source row can never
// make an option look profitable.
func (c Coin) CoinsPerHashDay() float64 {
	if c.Validate() != nil {
		return 0
	}
	if c.Kind == Difficulty {
		hpd := c.HashesPerDifficulty
		if hpd == 0 {
			hpd = BitcoinHashesPerDifficulty
		}
		return SecondsPerDay * c.BlockReward / (c.Difficulty * hpd)
	}
	return SecondsPerDay / c.BlockTime * c.BlockReward / c.NetHash
}

// CoinsPerDay returns the coins a hash rate of h H/s earns per day.
func (c Coin) CoinsPerDay(h float64) float64 { return h * c.CoinsPerHashDay() }

// Option is one way a rig can mine: a coin on a pool with a miner program.
type Option struct {
	Coin      string
	Algorithm string
	Pool      string
	PoolFee   float64 // fraction, 0.01 = 1 %
	Miner     string
	MinerFee  float64 // the miner program's dev fee, fraction
}

// String names the option compactly for reasons and tables.
func (o Option) String() string {
	s := o.Coin
	if o.Pool != "" {
		s += "@" + o.Pool
	}
	if o.Miner != "" {
		s += "/" + o.Miner
	}
	return s
}

// Validate rejects options that cannot be priced.
func (o Option) Validate() error {
	if o.Coin == "" || o.Algorithm == "" {
		return fmt.Errorf("option %q: coin and algorithm are required", o.String())
	}
	if !(o.PoolFee >= 0 && o.PoolFee < 1) || !(o.MinerFee >= 0 && o.MinerFee < 1) {
		return fmt.Errorf("option %s: fees must be in [0,1), got pool %v miner %v", o, o.PoolFee, o.MinerFee)
	}
	return nil
}

// RevenuePerHashDay is the USD per day one H/s earns on this option after
// pool and miner fees.
func (o Option) RevenuePerHashDay(c Coin) float64 {
	return c.CoinsPerHashDay() * c.PriceUSD * (1 - o.PoolFee) * (1 - o.MinerFee)
}

// PowerCostPerDay is the USD a load of watts costs per day at a price per
// kWh held for the whole day.
func PowerCostPerDay(watts, usdPerKWh float64) float64 { return watts * 24 / 1000 * usdPerKWh }

// Figures is one rig's economics on one option, USD per day.
type Figures struct {
	CoinsPerDay float64
	Revenue     float64
	PowerCost   float64
	Profit      float64
}

// Evaluate prices one option for a rig running at hashrate H/s and watts W
// with electricity at usdPerKWh.
func Evaluate(c Coin, o Option, hashrate, watts, usdPerKWh float64) Figures {
	f := Figures{CoinsPerDay: c.CoinsPerDay(hashrate)}
	f.Revenue = hashrate * o.RevenuePerHashDay(c)
	f.PowerCost = PowerCostPerDay(watts, usdPerKWh)
	f.Profit = f.Revenue - f.PowerCost
	return f
}
