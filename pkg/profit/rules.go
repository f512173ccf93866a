package profit

import "slices"

// Rules restrict which options a rig may mine. A pin forces one coin; the
// exclusions remove coins, pools or algorithms. The zero value allows all.
type Rules struct {
	Pin               string   `json:"pin,omitempty" yaml:"pin,omitempty"`
	ExcludeCoins      []string `json:"exclude_coins,omitempty" yaml:"exclude_coins,omitempty"`
	ExcludePools      []string `json:"exclude_pools,omitempty" yaml:"exclude_pools,omitempty"`
	ExcludeAlgorithms []string `json:"exclude_algorithms,omitempty" yaml:"exclude_algorithms,omitempty"`
}

// IsZero reports whether the rules allow every option.
func (r Rules) IsZero() bool {
	return r.Pin == "" && len(r.ExcludeCoins) == 0 && len(r.ExcludePools) == 0 && len(r.ExcludeAlgorithms) == 0
}

// Check reports whether o is allowed and, when it is not, why, in words
// fit for a decision's reason.
func (r Rules) Check(o Option) (bool, string) {
	switch {
	case r.Pin != "" && o.Coin != r.Pin:
		return false, "pinned to " + r.Pin
	case slices.Contains(r.ExcludeCoins, o.Coin):
		return false, "coin " + o.Coin + " excluded"
	case slices.Contains(r.ExcludePools, o.Pool):
		return false, "pool " + o.Pool + " excluded"
	case slices.Contains(r.ExcludeAlgorithms, o.Algorithm):
		return false, "algorithm " + o.Algorithm + " excluded"
	}
	return true, ""
}

// Merge returns rules that apply both r and o; o's pin wins when both pin.
func (r Rules) Merge(o Rules) Rules {
	m := Rules{Pin: r.Pin}
	if o.Pin != "" {
		m.Pin = o.Pin
	}
	m.ExcludeCoins = append(slices.Clip(r.ExcludeCoins), o.ExcludeCoins...)
	m.ExcludePools = append(slices.Clip(r.ExcludePools), o.ExcludePools...)
	m.ExcludeAlgorithms = append(slices.Clip(r.ExcludeAlgorithms), o.ExcludeAlgorithms...)
	return m
}
