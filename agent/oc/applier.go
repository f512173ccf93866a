package oc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/quarryfleet/quarry/pkg/ocprofile"
	"github.com/quarryfleet/quarry/pkg/telemetry"
)

// StateFile is the name of the applied-profile record in the data dir.
const StateFile = "oc-applied.json"

// ErrOutOfRange marks a setting beyond the card's own limits. Such a
// profile is refused whole; values are never clamped.
var ErrOutOfRange = errors.New("outside the card's limits")

// Applied is what the applier set on one card.
type Applied struct {
	UUID    string            `json:"uuid"`
	Index   int               `json:"index"`
	Profile ocprofile.Profile `json:"profile"`
}

// Applier applies profile files to cards and remembers what it did.
type Applier struct {
	backend Backend
	path    string
	logger  *slog.Logger

	mu      sync.Mutex
	applied map[string]Applied // by UUID
}

var _ telemetry.OCSource = (*Applier)(nil)

// NewApplier loads the record left in dataDir by a previous run, so cards
// a crashed agent left overclocked are reset if the new profiles no longer
// target them.
func NewApplier(backend Backend, dataDir string, logger *slog.Logger) (*Applier, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Applier{backend: backend, path: filepath.Join(dataDir, StateFile), logger: logger, applied: map[string]Applied{}}
	b, err := os.ReadFile(a.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("oc: read %s: %w", a.path, err)
	default:
		var list []Applied
		if err := json.Unmarshal(b, &list); err != nil {
			return nil, fmt.Errorf("oc: %s is corrupt: %w", a.path, err)
		}
		for _, x := range list {
			a.applied[x.UUID] = x
		}
	}
	return a, nil
}

// Applied reports the profile in force on the card with uuid, for telemetry.
func (a *Applier) Applied(uuid string) *telemetry.AppliedOC {
	a.mu.Lock()
	x, ok := a.applied[uuid]
	a.mu.Unlock()
	if !ok {
		return nil
	}
	p := x.Profile
	out := &telemetry.AppliedOC{Profile: p.Name, PowerLimitW: p.PowerLimitW, FanPercent: p.FanPercent}
	if r := p.GPUClockMHz; r != nil {
		out.GPUClockMinMHz, out.GPUClockMaxMHz = &r.Min, &r.Max
	}
	if r := p.MemClockMHz; r != nil {
		out.MemClockMinMHz, out.MemClockMaxMHz = &r.Min, &r.Max
	}
	return out
}

// Check validates p against card limits without touching the card.
func Check(p *ocprofile.Profile, c CardInfo) error {
	bad := func(what string, v any, lim string) error {
		return fmt.Errorf("oc: profile %q on GPU %d (%s): %s %v %w (%s)", p.Name, c.Index, c.Name, what, v, ErrOutOfRange, lim)
	}
	if p.PowerLimitW != nil {
		mw := uint64(*p.PowerLimitW) * 1000
		if c.PowerMinMW == nil || c.PowerMaxMW == nil {
			return bad("power_limit_w", *p.PowerLimitW, "card has no adjustable power limit")
		}
		if mw < uint64(*c.PowerMinMW) || mw > uint64(*c.PowerMaxMW) {
			return bad("power_limit_w", *p.PowerLimitW, fmt.Sprintf("allowed %d..%d W", *c.PowerMinMW/1000, *c.PowerMaxMW/1000))
		}
	}
	for _, x := range []struct {
		name string
		r    *ocprofile.Range
		max  *uint32
	}{{"gpu_clock_mhz", p.GPUClockMHz, c.GPUClockMaxMHz}, {"mem_clock_mhz", p.MemClockMHz, c.MemClockMaxMHz}} {
		if x.r == nil {
			continue
		}
		if x.max == nil {
			return bad(x.name, *x.r, "card reports no clock limit")
		}
		if uint64(x.r.Max) > uint64(*x.max) {
			return bad(x.name, *x.r, fmt.Sprintf("max %d MHz", *x.max))
		}
	}
	if p.FanPercent != nil {
		if c.Fans == 0 {
			return bad("fan_percent", *p.FanPercent, "card has no controllable fans")
		}
		if c.FanMin != nil && c.FanMax != nil && (*p.FanPercent < *c.FanMin || *p.FanPercent > *c.FanMax) {
			return bad("fan_percent", *p.FanPercent, fmt.Sprintf("allowed %d..%d%%", *c.FanMin, *c.FanMax))
		}
	}
	return nil
}

// Apply brings every card in line with f: targeted cards get their
// profile, cards no longer targeted go back to defaults. Every targeted
// card is checked first and any out-of-range value refuses the whole file,
// so a typo cannot leave half the rig changed.
func (a *Applier) Apply(ctx context.Context, f *ocprofile.File) error {
	cards, err := a.backend.Cards(ctx)
	if err != nil {
		return fmt.Errorf("oc: list cards: %w", err)
	}
	type plan struct {
		card Card
		info CardInfo
		p    *ocprofile.Profile
	}
	plans := make([]plan, 0, len(cards))
	for _, c := range cards {
		info := c.Info()
		p, err := f.Select(ocprofile.Card{Index: info.Index, UUID: info.UUID, Name: info.Name, BusID: info.BusID})
		if err != nil {
			return err
		}
		if p != nil {
			if err := Check(p, info); err != nil {
				return err
			}
		}
		plans = append(plans, plan{c, info, p})
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for _, pl := range plans {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		prev, had := a.applied[pl.info.UUID]
		if had {
			// Reset first so a setting dropped from the profile does not linger.
			if pl.p != nil && equalProfile(prev.Profile, *pl.p) {
				continue
			}
			if err := restore(pl.card, pl.info, &prev.Profile); err != nil {
				errs = append(errs, err)
				continue
			}
			delete(a.applied, pl.info.UUID)
		}
		if pl.p == nil {
			continue
		}
		if err := set(pl.card, pl.info, pl.p); err != nil {
			// Leave the card at defaults rather than half-applied.
			errs = append(errs, err, restore(pl.card, pl.info, pl.p))
			continue
		}
		a.applied[pl.info.UUID] = Applied{UUID: pl.info.UUID, Index: pl.info.Index, Profile: *pl.p}
		a.logger.Info("overclock applied", "gpu", pl.info.Index, "uuid", pl.info.UUID, "profile", pl.p.Name)
	}
	errs = append(errs, a.save())
	return errors.Join(errs...)
}

// Restore puts every card the applier changed back to defaults; call it on
// clean stop.
func (a *Applier) Restore(ctx context.Context) error {
	return a.Apply(ctx, &ocprofile.File{})
}

func equalProfile(a, b ocprofile.Profile) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func set(c Card, info CardInfo, p *ocprofile.Profile) error {
	wrap := func(what string, err error) error {
		if err == nil {
			return nil
		}
		return fmt.Errorf("oc: GPU %d %s: %w", info.Index, what, err)
	}
	if p.PowerLimitW != nil {
		if err := c.SetPowerLimit(uint32(*p.PowerLimitW) * 1000); err != nil {
			return wrap("set power limit", err)
		}
	}
	if r := p.GPUClockMHz; r != nil {
		if err := c.SetGPULockedClocks(uint32(r.Min), uint32(r.Max)); err != nil {
			return wrap("lock gpu clocks", err)
		}
	}
	if r := p.MemClockMHz; r != nil {
		if err := c.SetMemLockedClocks(uint32(r.Min), uint32(r.Max)); err != nil {
			return wrap("lock memory clocks", err)
		}
	}
	if p.FanPercent != nil {
		for fan := range info.Fans {
			if err := c.SetFanSpeed(fan, *p.FanPercent); err != nil {
				return wrap("set fan speed", err)
			}
		}
	}
	return nil
}

// restore undoes what p set; every step is tried even if one fails.
func restore(c Card, info CardInfo, p *ocprofile.Profile) error {
	var errs []error
	wrap := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("oc: GPU %d %s: %w", info.Index, what, err))
		}
	}
	if p.PowerLimitW != nil && info.PowerDefaultMW != nil {
		wrap("restore power limit", c.SetPowerLimit(*info.PowerDefaultMW))
	}
	if p.GPUClockMHz != nil {
		wrap("reset gpu clocks", c.ResetGPULockedClocks())
	}
	if p.MemClockMHz != nil {
		wrap("reset memory clocks", c.ResetMemLockedClocks())
	}
	if p.FanPercent != nil {
		for fan := range info.Fans {
			wrap("restore fan control", c.SetDefaultFanSpeed(fan))
		}
	}
	return errors.Join(errs...)
}

// save writes the record atomically: a crash mid-write must not lose
// which cards were left overclocked.
func (a *Applier) save() error {
	list := make([]Applied, 0, len(a.applied))
	for _, x := range a.applied {
		list = append(list, x)
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return fmt.Errorf("oc: encode state: %w", err)
	}
	tmp := a.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("oc: write state: %w", err)
	}
	if err := os.Rename(tmp, a.path); err != nil {
		return fmt.Errorf("oc: write state: %w", err)
	}
	return nil
}
