package market

import (
	"fmt"
	"math"
)

// Validate returns why c is unusable for profit math, or "" when it is
// usable. Every number the profit formula divides by or multiplies with
// must be finite and positive.
func Validate(c Coin) string {
	if c.Tag == "" {
		return "missing tag"
	}
	if c.Algorithm == "" {
		return "missing algorithm"
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"difficulty", c.Difficulty},
		{"nethash", c.NetHash},
		{"block_reward", c.BlockReward},
		{"block_time", c.BlockTime},
		{"price_usd", c.PriceUSD},
	} {
		switch {
		case math.IsNaN(f.v):
			return f.name + " is not a number"
		case math.IsInf(f.v, 0):
			return f.name + " is infinite"
		case f.v == 0:
			return f.name + " is missing or zero"
		case f.v < 0:
			return fmt.Sprintf("%s is negative (%g)", f.name, f.v)
		}
	}
	return ""
}

type holdKey struct{ tag, field string }

type pendingJump struct {
	value float64
	seen  int
}

// jumpGuard holds back a price or difficulty that moved more than factor
// against the last accepted value until confirm consecutive fetches show
// it. One bad tick from a site must not make the whole fleet switch coins.
type jumpGuard struct {
	factor  float64
	confirm int
	pending map[holdKey]pendingJump
}

func newJumpGuard(factor float64, confirm int) *jumpGuard {
	return &jumpGuard{factor: factor, confirm: confirm, pending: make(map[holdKey]pendingJump)}
}

// within reports whether a and b differ by at most the guard's factor.
func (g *jumpGuard) within(a, b float64) bool {
	r := a / b
	return r <= g.factor && r >= 1/g.factor
}

// check returns whether the new value v for key k may replace old now, and
// how many consecutive fetches have shown the jump so far.
func (g *jumpGuard) check(k holdKey, old, v float64) (accept bool, seen int) {
	if !finite(old) || g.within(v, old) {
		delete(g.pending, k)
		return true, 0
	}
	p, ok := g.pending[k]
	if ok && g.within(v, p.value) {
		p.seen++
		p.value = v
	} else {
		p = pendingJump{value: v, seen: 1}
	}
	if p.seen >= g.confirm {
		delete(g.pending, k)
		return true, p.seen
	}
	g.pending[k] = p
	return false, p.seen
}

// apply compares c with the previous accepted coin and returns the coin to
// publish, with held-back fields restored to their old values.
func (g *jumpGuard) apply(prev Coin, hadPrev bool, c Coin) (Coin, []Held) {
	if !hadPrev || g.confirm <= 1 || g.factor <= 1 {
		return c, nil
	}
	var held []Held
	if ok, seen := g.check(holdKey{c.Tag, "price_usd"}, prev.PriceUSD, c.PriceUSD); !ok {
		held = append(held, Held{Tag: c.Tag, Field: "price_usd", Old: prev.PriceUSD, New: c.PriceUSD, Seen: seen, Required: g.confirm})
		c.PriceUSD = prev.PriceUSD
	}
	if ok, seen := g.check(holdKey{c.Tag, "difficulty"}, prev.Difficulty, c.Difficulty); !ok {
		held = append(held, Held{Tag: c.Tag, Field: "difficulty", Old: prev.Difficulty, New: c.Difficulty, Seen: seen, Required: g.confirm})
		// Nethash moves with difficulty; keeping one without the other would
		// let the jump through the profit formula anyway.
		c.Difficulty, c.NetHash, c.Kind = prev.Difficulty, prev.NetHash, prev.Kind
	}
	return c, held
}
