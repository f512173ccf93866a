package backtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/quarryfleet/quarry/pkg/profit"
)

// RigProfile is one rig as the backtest sees it: per-algorithm hash rate
// (H/s, Sol/s or graphs/s, in the history's units) and wall power, and
// the electricity it pays for.
type RigProfile struct {
	Name string `yaml:"name" json:"name"`
	Site string `yaml:"site" json:"site"`
	// ElectricityUSD is the flat price in USD/kWh; ignored when Tariff is set.
	ElectricityUSD float64 `yaml:"electricity_usd_kwh" json:"electricity_usd_kwh"`
	// Tariff prices hours of the week; a day costs its 24-hour average.
	Tariff *profit.Tariff `yaml:"tariff,omitempty" json:"tariff,omitempty"`
	// PoolFee is the pool's cut, a fraction (0.01 = 1 %).
	PoolFee    float64             `yaml:"pool_fee" json:"pool_fee"`
	Algorithms map[string]AlgoPerf `yaml:"algorithms" json:"algorithms"`
}

// AlgoPerf is a rig's figures on one algorithm.
type AlgoPerf struct {
	Hashrate float64 `yaml:"hashrate" json:"hashrate"`
	Power    float64 `yaml:"power" json:"power"` // W at the wall
}

// Validate names the first unusable field.
func (r RigProfile) Validate() error {
	fin := func(v float64) bool { return v >= 0 && !math.IsInf(v, 0) }
	if r.Name == "" {
		return errors.New("rig profile without a name")
	}
	if !fin(r.ElectricityUSD) {
		return fmt.Errorf("rig %s: electricity_usd_kwh %v must be >= 0", r.Name, r.ElectricityUSD)
	}
	if r.Tariff != nil {
		if err := r.Tariff.Validate(); err != nil {
			return fmt.Errorf("rig %s: %w", r.Name, err)
		}
	}
	if !(r.PoolFee >= 0 && r.PoolFee < 1) {
		return fmt.Errorf("rig %s: pool_fee %v must be in [0,1)", r.Name, r.PoolFee)
	}
	if len(r.Algorithms) == 0 {
		return fmt.Errorf("rig %s: no algorithms", r.Name)
	}
	for a, p := range r.Algorithms {
		if !fin(p.Hashrate) || !fin(p.Power) || p.Hashrate == 0 {
			return fmt.Errorf("rig %s %s: hashrate %v must be > 0 and power %v >= 0", r.Name, a, p.Hashrate, p.Power)
		}
	}
	return nil
}

// LoadRigs reads rig profiles from a YAML or JSON file (JSON is valid
// YAML), a list under the key "rigs". Unknown fields are errors, so a
// misspelt key cannot silently zero a figure.
func LoadRigs(path string) ([]RigProfile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("backtest: %w", err)
	}
	rigs, err := ParseRigs(b)
	if err != nil {
		return nil, fmt.Errorf("backtest: %s: %w", path, err)
	}
	return rigs, nil
}

// ParseRigs decodes rig profiles from YAML or JSON bytes.
func ParseRigs(b []byte) ([]RigProfile, error) {
	var doc struct {
		Rigs []RigProfile `yaml:"rigs"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(doc.Rigs) == 0 {
		return nil, errors.New("no rigs")
	}
	names := map[string]bool{}
	for _, r := range doc.Rigs {
		if err := r.Validate(); err != nil {
			return nil, err
		}
		if names[r.Name] {
			return nil, fmt.Errorf("rig %s listed twice", r.Name)
		}
		names[r.Name] = true
	}
	return doc.Rigs, nil
}
