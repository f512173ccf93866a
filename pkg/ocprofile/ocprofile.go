// Package ocprofile is the overclock profile file format — power limit,
// locked GPU and memory clock ranges, fan speed, and which GPUs each
// profile targets — shared by quarryctl, which validates a file before
// sending it, and the agent, which applies it.
//
// Profile file (YAML):
//
//	profiles:
//	  - name: eth-3090            # required, unique
//	    match:                    # at least one; most specific wins:
//	      uuid: [GPU-5f0c...]     #   uuid > bus_id > index > model
//	      bus_id: ["0000:0a:00.0"]
//	      index: [0, 1]
//	      model: NVIDIA GeForce RTX 3090
//	    power_limit_w: 280        # each setting optional
//	    gpu_clock_mhz: {min: 210, max: 1500}
//	    mem_clock_mhz: {min: 405, max: 9251}
//	    fan_percent: 70
package ocprofile

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/quarryfleet/quarry/pkg/telemetry"
)

// File is a parsed profile file.
type File struct {
	Profiles []Profile `yaml:"profiles"`
}

// Profile is one set of overclock settings and the GPUs it targets.
type Profile struct {
	Name        string `yaml:"name" json:"name"`
	Match       Match  `yaml:"match" json:"match"`
	PowerLimitW *int   `yaml:"power_limit_w,omitempty" json:"power_limit_w,omitempty"`
	GPUClockMHz *Range `yaml:"gpu_clock_mhz,omitempty" json:"gpu_clock_mhz,omitempty"`
	MemClockMHz *Range `yaml:"mem_clock_mhz,omitempty" json:"mem_clock_mhz,omitempty"`
	FanPercent  *int   `yaml:"fan_percent,omitempty" json:"fan_percent,omitempty"`
}

// Range is an inclusive MHz range.
type Range struct {
	Min int `yaml:"min" json:"min"`
	Max int `yaml:"max" json:"max"`
}

// Match selects GPUs. Lists match any of their entries.
type Match struct {
	UUID  []string `yaml:"uuid,omitempty" json:"uuid,omitempty"`
	BusID []string `yaml:"bus_id,omitempty" json:"bus_id,omitempty"`
	Index []int    `yaml:"index,omitempty" json:"index,omitempty"`
	Model string   `yaml:"model,omitempty" json:"model,omitempty"`
}

// Parse reads and validates a profile file; unknown keys are errors so a
// typo cannot silently leave a card at stock settings.
func Parse(r io.Reader) (*File, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("oc profiles: %w", err)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Validate checks what can be checked without a card; limits of the
// card itself are checked when applying.
func (f *File) Validate() error {
	seen := map[string]bool{}
	for i, p := range f.Profiles {
		at := fmt.Sprintf("profiles[%d]", i)
		if p.Name == "" {
			return fmt.Errorf("oc profiles: %s.name is empty", at)
		}
		if seen[p.Name] {
			return fmt.Errorf("oc profiles: %s.name %q used twice", at, p.Name)
		}
		seen[p.Name] = true
		m := p.Match
		if len(m.UUID) == 0 && len(m.BusID) == 0 && len(m.Index) == 0 && m.Model == "" {
			return fmt.Errorf("oc profiles: %s (%s).match selects nothing", at, p.Name)
		}
		for j, b := range m.BusID {
			n, err := telemetry.NormalizeBusID(b)
			if err != nil {
				return fmt.Errorf("oc profiles: %s.match.bus_id[%d]: %w", at, j, err)
			}
			f.Profiles[i].Match.BusID[j] = n
		}
		if slices.ContainsFunc(m.Index, func(i int) bool { return i < 0 }) {
			return fmt.Errorf("oc profiles: %s.match.index has a negative index", at)
		}
		if p.PowerLimitW != nil && *p.PowerLimitW <= 0 {
			return fmt.Errorf("oc profiles: %s.power_limit_w = %d, must be positive", at, *p.PowerLimitW)
		}
		for name, r := range map[string]*Range{"gpu_clock_mhz": p.GPUClockMHz, "mem_clock_mhz": p.MemClockMHz} {
			if r != nil && (r.Min <= 0 || r.Max < r.Min) {
				return fmt.Errorf("oc profiles: %s.%s = %d..%d, want 0 < min <= max", at, name, r.Min, r.Max)
			}
		}
		if p.FanPercent != nil && (*p.FanPercent < 0 || *p.FanPercent > 100) {
			return fmt.Errorf("oc profiles: %s.fan_percent = %d, want 0..100", at, *p.FanPercent)
		}
		if p.PowerLimitW == nil && p.GPUClockMHz == nil && p.MemClockMHz == nil && p.FanPercent == nil {
			return fmt.Errorf("oc profiles: %s (%s) sets nothing", at, p.Name)
		}
	}
	return nil
}

// Card is what a profile can match a GPU by.
type Card struct {
	Index int
	UUID  string
	Name  string // model
	BusID string // normalised, as telemetry.NormalizeBusID
}

// specificity ranks how p matched card; 0 means it does not.
func (p *Profile) specificity(c Card) int {
	switch {
	case slices.Contains(p.Match.UUID, c.UUID):
		return 4
	case c.BusID != "" && slices.Contains(p.Match.BusID, c.BusID):
		return 3
	case slices.Contains(p.Match.Index, c.Index):
		return 2
	case p.Match.Model != "" && p.Match.Model == c.Name:
		return 1
	}
	return 0
}

// Select picks the profile for card: the most specific match, or nil.
// Two profiles matching equally specifically is an error rather than a
// guess.
func (f *File) Select(c Card) (*Profile, error) {
	var best *Profile
	bestRank := 0
	for i := range f.Profiles {
		p := &f.Profiles[i]
		r := p.specificity(c)
		switch {
		case r == 0 || r < bestRank:
		case r == bestRank:
			return nil, fmt.Errorf("oc: GPU %d (%s) matched equally by profiles %q and %q", c.Index, c.UUID, best.Name, p.Name)
		default:
			best, bestRank = p, r
		}
	}
	return best, nil
}
