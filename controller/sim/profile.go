// Package sim runs simulated rigs against a real controller. Each rig is
// enrolled with a join token and its own key and certificate, keeps its
// reports in a durable buffer and speaks the agent's own link code over
// mutual TLS, so the controller cannot tell a simulated rig from a real one
// except by its name and its "simulated" tag. The hardware behind each rig
// comes from a profile: GPU models with a hash rate and power per
// algorithm, measurement noise, temperatures that follow power, and
// occasional miner crashes and lost GPUs.
package sim

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/market"
)

//go:embed default_profile.yaml
var defaultProfileYAML []byte

// maxProfileSize bounds a profile file; real ones are a few KiB.
const maxProfileSize = 1 << 20

// Profile is the simulated hardware of a fleet.
type Profile struct {
	GPUModels map[string]GPUModel `yaml:"gpu_models"`
	Rigs      []RigType           `yaml:"rigs"`
	// Noise is the relative standard deviation of hash rate and power
	// readings.
	Noise float64 `yaml:"noise"`
	// AmbientC and ThermalCPerW give a GPU's steady temperature:
	// ambient plus this many degrees per watt it draws. ThermalTau is how
	// fast it gets there.
	AmbientC     float64       `yaml:"ambient_c"`
	ThermalCPerW float64       `yaml:"thermal_c_per_w"`
	ThermalTau   time.Duration `yaml:"thermal_tau"`
	// CrashesPerHour and GPULossesPerHour are per rig; GPULostFor is how
	// long a lost GPU stays lost.
	CrashesPerHour   float64       `yaml:"crashes_per_hour"`
	GPULossesPerHour float64       `yaml:"gpu_losses_per_hour"`
	GPULostFor       time.Duration `yaml:"gpu_lost_for"`
	// Initial is what a new rig mines before the controller tells it
	// otherwise; empty means idle.
	Initial *Initial `yaml:"initial"`
	// MinerAPIs says whether each rig's miner serves its stats API on
	// loopback from the miner's recorded replies, read back through the
	// agent's adapters: "on", "off", or "auto" (the default): on for
	// fleets of at most MaxMinerAPIRigs rigs.
	MinerAPIs string `yaml:"miner_apis"`
}

// MaxMinerAPIRigs is the largest fleet that gets miner APIs with
// miner_apis "auto": beyond it the listeners and loopback reads cost more
// of the machine than the controller under test.
const MaxMinerAPIRigs = 300

// minerAPIs reports whether a fleet of n rigs serves miner APIs.
func (p *Profile) minerAPIs(n int) bool {
	switch p.MinerAPIs {
	case "on":
		return true
	case "off":
		return false
	}
	return n <= MaxMinerAPIRigs
}

// Mines reports whether any card in the profile has figures for the
// algorithm, in any of its spellings.
func (p *Profile) Mines(algorithm string) bool {
	algo := market.CanonicalAlgorithm(algorithm)
	for _, m := range p.GPUModels {
		if _, ok := m.Algorithms[algo]; ok {
			return true
		}
	}
	return false
}

// GPUModel is one card's figures.
type GPUModel struct {
	IdlePowerW  float64                `yaml:"idle_power"`
	PowerLimitW float64                `yaml:"power_limit"`
	MemoryBytes uint64                 `yaml:"memory_bytes"`
	Algorithms  map[string]AlgoFigures `yaml:"algorithms"`
}

// AlgoFigures are a card's hash rate and board power on one algorithm.
type AlgoFigures struct {
	Hashrate flightsheet.Hashrate `yaml:"hashrate"`
	PowerW   float64              `yaml:"power"`
}

// RigType is one kind of rig; rigs are dealt out by weight.
type RigType struct {
	Name   string         `yaml:"name"`
	GPUs   map[string]int `yaml:"gpus"`
	Weight int            `yaml:"weight"`
}

// Initial is a starting job.
type Initial struct {
	Coin      string `yaml:"coin"`
	Algorithm string `yaml:"algorithm"`
	Miner     string `yaml:"miner"`
	Pool      string `yaml:"pool"`
}

// DefaultProfile is the profile built into the binary.
func DefaultProfile() (*Profile, error) { return ParseProfile(defaultProfileYAML) }

// LoadProfile reads a profile file.
func LoadProfile(path string) (*Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	p, err := ParseProfile(b)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", path, err)
	}
	return p, nil
}

// ParseProfile decodes and validates a profile; unknown fields are errors
// so a typo is not silently ignored.
func ParseProfile(b []byte) (*Profile, error) {
	if len(b) > maxProfileSize {
		return nil, fmt.Errorf("profile is %d bytes, more than %d", len(b), maxProfileSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	p := &Profile{AmbientC: 25, ThermalCPerW: 0.25, ThermalTau: time.Minute, GPULostFor: 5 * time.Minute}
	if err := dec.Decode(p); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return p, p.validate()
}

func (p *Profile) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(p.GPUModels) == 0 {
		bad("gpu_models: at least one is required")
	}
	for name, m := range p.GPUModels {
		if len(m.Algorithms) == 0 {
			bad("gpu_models.%s: no algorithms", name)
		}
		if m.IdlePowerW < 0 || m.PowerLimitW < 0 {
			bad("gpu_models.%s: negative power", name)
		}
		canon := make(map[string]AlgoFigures, len(m.Algorithms))
		for algo, f := range m.Algorithms {
			if !(f.Hashrate > 0) || math.IsInf(float64(f.Hashrate), 0) || !(f.PowerW > 0) || f.PowerW > 10000 {
				bad("gpu_models.%s.algorithms.%s: hashrate %v must be positive and power %v in (0, 10000] W", name, algo, f.Hashrate, f.PowerW)
			}
			canon[market.CanonicalAlgorithm(algo)] = f
		}
		m.Algorithms = canon
		p.GPUModels[name] = m
	}
	if len(p.Rigs) == 0 {
		bad("rigs: at least one rig type is required")
	}
	for i, r := range p.Rigs {
		n := 0
		for model, c := range r.GPUs {
			if _, ok := p.GPUModels[model]; !ok {
				bad("rigs[%d] (%s): unknown GPU model %q", i, r.Name, model)
			}
			if c < 0 || c > 32 {
				bad("rigs[%d] (%s): %d cards of %s: want 0 to 32", i, r.Name, c, model)
			}
			n += c
		}
		if n == 0 {
			bad("rigs[%d] (%s): no GPUs", i, r.Name)
		}
		if r.Weight < 0 {
			bad("rigs[%d] (%s): negative weight", i, r.Name)
		}
		if r.Weight == 0 {
			p.Rigs[i].Weight = 1
		}
	}
	if p.Noise < 0 || p.Noise > 0.5 {
		bad("noise: %v must be in [0, 0.5]", p.Noise)
	}
	if p.ThermalTau <= 0 || p.ThermalCPerW < 0 {
		bad("thermal_tau must be positive and thermal_c_per_w not negative")
	}
	if p.CrashesPerHour < 0 || p.GPULossesPerHour < 0 || p.GPULostFor <= 0 {
		bad("crashes_per_hour and gpu_losses_per_hour must not be negative, gpu_lost_for must be positive")
	}
	switch p.MinerAPIs {
	case "", "auto", "on", "off":
	default:
		bad("miner_apis: %q must be auto, on or off", p.MinerAPIs)
	}
	if p.Initial != nil && (p.Initial.Coin == "" || p.Initial.Algorithm == "" || p.Initial.Miner == "") {
		bad("initial: coin, algorithm and miner are required")
	}
	return errors.Join(errs...)
}

// rigType deals rig i its type: weighted round robin, so the mix is the
// same in every run and a restarted simulator gives each rig its old
// hardware.
func (p *Profile) rigType(i int) RigType {
	total := 0
	for _, r := range p.Rigs {
		total += r.Weight
	}
	k := i % total
	for _, r := range p.Rigs {
		if k < r.Weight {
			return r
		}
		k -= r.Weight
	}
	return p.Rigs[0]
}

// cards lists a rig type's GPU models, one entry per card, in a stable
// order.
func (r RigType) cards() []string {
	models := make([]string, 0, len(r.GPUs))
	for m := range r.GPUs {
		models = append(models, m)
	}
	slices.Sort(models)
	var out []string
	for _, m := range models {
		for range r.GPUs[m] {
			out = append(out, m)
		}
	}
	return out
}

// Fingerprint is what the controller's profit switcher calls a rig's
// hardware: its GPU models, sorted and comma-separated.
func (r RigType) Fingerprint() string { return strings.Join(r.cards(), ",") }
