// Package overclock keeps named GPU overclock profiles on the controller
// and sends them to rigs. Every value is checked against the limits the
// rig's own cards report before a command is queued, so a typo is refused
// where it was typed; the agent checks again against the card itself.
package overclock

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/pkg/ocprofile"
	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/telemetry"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

const bucketProfiles = "oc_profiles"

// Limits on what callers may store and send.
const (
	MaxProfiles      = 1000 // stored
	MaxApplied       = 32   // sent to one rig at once
	maxMatchEntries  = 64
	maxNameLen       = 64
	maxModelLen      = 128
	maxMatchEntryLen = 128
)

// Errors the service maps to gRPC codes.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid")
	// ErrOutOfRange marks a value beyond what one of the rig's cards
	// reports it allows.
	ErrOutOfRange = errors.New("outside the card's limits")
	// ErrNoCards is a rig that has reported no card to check against.
	ErrNoCards = errors.New("rig reports no GPUs")
	ErrFull    = errors.New("too many profiles")
)

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Store keeps profiles in the controller's database.
type Store struct {
	db *store.DB
}

// Open makes sure the profiles' bucket exists.
func Open(db *store.DB) (*Store, error) {
	if err := db.EnsureBuckets(bucketProfiles); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Validate checks a profile as written, each problem as "field: message"
// on its own line so a form can show it at the field.
func Validate(p *quarryv1.OverclockProfile) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	switch {
	case p.GetName() == "":
		bad("name", "is required")
	case len(p.Name) > maxNameLen || !nameRe.MatchString(p.Name):
		bad("name", "%q: letters, digits, '.', '_' or '-', starting with a letter or digit, at most %d", p.Name, maxNameLen)
	}
	m := p.GetMatch()
	if m == nil || (len(m.Uuid) == 0 && len(m.BusId) == 0 && len(m.Index) == 0 && m.Model == "") {
		bad("match", "pick the cards: a model, GPU indexes, bus ids or UUIDs")
	}
	if m != nil {
		for field, list := range map[string][]string{"match.uuid": m.Uuid, "match.bus_id": m.BusId} {
			if len(list) > maxMatchEntries {
				bad(field, "at most %d entries", maxMatchEntries)
			}
			for _, s := range list {
				if s == "" || len(s) > maxMatchEntryLen {
					bad(field, "entries must be 1 to %d characters", maxMatchEntryLen)
					break
				}
			}
		}
		for _, b := range m.BusId {
			if _, err := telemetry.NormalizeBusID(b); err != nil {
				bad("match.bus_id", "%q: %v", b, err)
			}
		}
		if len(m.Index) > maxMatchEntries {
			bad("match.index", "at most %d entries", maxMatchEntries)
		}
		if slices.ContainsFunc(m.Index, func(i int32) bool { return i < 0 }) {
			bad("match.index", "indexes are 0 or more")
		}
		if len(m.Model) > maxModelLen {
			bad("match.model", "at most %d characters", maxModelLen)
		}
	}
	if p.PowerLimitW != nil && *p.PowerLimitW <= 0 {
		bad("power_limit_w", "%d W: must be positive", *p.PowerLimitW)
	}
	for field, r := range map[string]*quarryv1.OCRange{"gpu_clock_mhz": p.GpuClockMhz, "mem_clock_mhz": p.MemClockMhz} {
		if r != nil && (r.Min <= 0 || r.Max < r.Min) {
			bad(field, "%d..%d MHz: want 0 < min <= max", r.Min, r.Max)
		}
	}
	if p.FanPercent != nil && (*p.FanPercent < 0 || *p.FanPercent > 100) {
		bad("fan_percent", "%d%%: want 0 to 100", *p.FanPercent)
	}
	if p.PowerLimitW == nil && p.GpuClockMhz == nil && p.MemClockMhz == nil && p.FanPercent == nil {
		bad("settings", "the profile sets nothing: give a power limit, a clock range or a fan speed")
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	if len(errs) > 0 {
		return fmt.Errorf("%w profile:\n%w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// Profile converts to the file format rigs take.
func Profile(p *quarryv1.OverclockProfile) ocprofile.Profile {
	out := ocprofile.Profile{Name: p.Name}
	if m := p.Match; m != nil {
		out.Match = ocprofile.Match{UUID: slices.Clone(m.Uuid), BusID: slices.Clone(m.BusId), Model: m.Model}
		for _, i := range m.Index {
			out.Match.Index = append(out.Match.Index, int(i))
		}
	}
	if p.PowerLimitW != nil {
		v := int(*p.PowerLimitW)
		out.PowerLimitW = &v
	}
	if p.FanPercent != nil {
		v := int(*p.FanPercent)
		out.FanPercent = &v
	}
	if r := p.GpuClockMhz; r != nil {
		out.GPUClockMHz = &ocprofile.Range{Min: int(r.Min), Max: int(r.Max)}
	}
	if r := p.MemClockMhz; r != nil {
		out.MemClockMHz = &ocprofile.Range{Min: int(r.Min), Max: int(r.Max)}
	}
	return out
}

// Put validates and stores p, stamped with who and when.
func (s *Store) Put(p *quarryv1.OverclockProfile, who string, nowNano int64) (*quarryv1.OverclockProfile, error) {
	if err := Validate(p); err != nil {
		return nil, err
	}
	// The shared file format's own checks, so the rig will accept it.
	f := ocprofile.File{Profiles: []ocprofile.Profile{Profile(p)}}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	rec := proto.Clone(p).(*quarryv1.OverclockProfile)
	rec.UpdatedUnixNano, rec.UpdatedBy = nowNano, who
	b, err := proto.Marshal(rec)
	if err != nil {
		return nil, err
	}
	err = s.db.Update(func(tx *store.Tx) error {
		bk := tx.Bucket([]byte(bucketProfiles))
		if bk.Get([]byte(rec.Name)) == nil && bk.Stats().KeyN >= MaxProfiles {
			return fmt.Errorf("%w: %d stored; delete one first", ErrFull, MaxProfiles)
		}
		return bk.Put([]byte(rec.Name), b)
	})
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// Get returns one stored profile.
func (s *Store) Get(name string) (*quarryv1.OverclockProfile, error) {
	var p *quarryv1.OverclockProfile
	err := s.db.View(func(tx *store.Tx) error {
		v := tx.Bucket([]byte(bucketProfiles)).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("overclock profile %q: %w", name, ErrNotFound)
		}
		p = &quarryv1.OverclockProfile{}
		return proto.Unmarshal(v, p)
	})
	return p, err
}

// List returns every stored profile by name.
func (s *Store) List() ([]*quarryv1.OverclockProfile, error) {
	var out []*quarryv1.OverclockProfile
	err := s.db.View(func(tx *store.Tx) error {
		return tx.Bucket([]byte(bucketProfiles)).ForEach(func(_, v []byte) error {
			p := &quarryv1.OverclockProfile{}
			if err := proto.Unmarshal(v, p); err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// Delete removes a stored profile.
func (s *Store) Delete(name string) error {
	return s.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(bucketProfiles))
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("overclock profile %q: %w", name, ErrNotFound)
		}
		return b.Delete([]byte(name))
	})
}

// Plan picks each of the rig's cards' profile from f, as the agent will,
// and checks the profile's values against the limits the card reported.
// Every problem is returned, each "field: message"; any one refuses the
// whole file, as on the rig.
func Plan(f *ocprofile.File, gpus []*quarryv1.GPUStats) ([]*quarryv1.OCCard, error) {
	var cards []*quarryv1.OCCard
	var errs []error
	live := 0
	for _, g := range gpus {
		if g.Lost {
			continue
		}
		live++
		bus, err := telemetry.NormalizeBusID(g.BusId)
		if err != nil {
			bus = ""
		}
		p, err := f.Select(ocprofile.Card{Index: int(g.Index), UUID: g.Uuid, Name: g.Name, BusID: bus})
		if err != nil {
			errs = append(errs, fmt.Errorf("match: %w", err))
			continue
		}
		c := &quarryv1.OCCard{Index: g.Index, Name: g.Name}
		cards = append(cards, c)
		if p == nil {
			continue
		}
		c.Profile = p.Name
		errs = append(errs, checkCard(p, g)...)
	}
	if live == 0 {
		return nil, fmt.Errorf("%w: nothing to check the profiles against; wait for a report with its cards", ErrNoCards)
	}
	if len(errs) > 0 {
		return cards, fmt.Errorf("%w:\n%w", ErrOutOfRange, errors.Join(errs...))
	}
	return cards, nil
}

func checkCard(p *ocprofile.Profile, g *quarryv1.GPUStats) []error {
	var errs []error
	card := fmt.Sprintf("GPU %d (%s)", g.Index, g.Name)
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: profile %s on %s: "+format, append([]any{field, p.Name, card}, args...)...))
	}
	if v := p.PowerLimitW; v != nil {
		switch {
		case g.PowerLimitMinW == nil || g.PowerLimitMaxW == nil:
			bad("power_limit_w", "the card reports no adjustable power limit")
		case float64(*v) < *g.PowerLimitMinW || float64(*v) > *g.PowerLimitMaxW:
			bad("power_limit_w", "%d W is outside the allowed %.0f..%.0f W", *v, *g.PowerLimitMinW, *g.PowerLimitMaxW)
		}
	}
	for _, x := range []struct {
		field string
		r     *ocprofile.Range
		max   *uint32
	}{{"gpu_clock_mhz", p.GPUClockMHz, g.SmClockMaxMhz}, {"mem_clock_mhz", p.MemClockMHz, g.MemoryClockMaxMhz}} {
		switch {
		case x.r == nil:
		case x.max == nil:
			bad(x.field, "the card reports no clock limit")
		case x.r.Max > int(*x.max):
			bad(x.field, "%d MHz is above the card's maximum %d MHz", x.r.Max, *x.max)
		}
	}
	if v := p.FanPercent; v != nil && len(g.FanPercent) == 0 {
		bad("fan_percent", "the card reports no fan")
	}
	return errs
}

// File builds the profile file to send from stored profiles, by name.
func (s *Store) File(names []string) (*ocprofile.File, []byte, error) {
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("%w: name at least one profile (or clear the rig's overclock)", ErrInvalid)
	}
	if len(names) > MaxApplied {
		return nil, nil, fmt.Errorf("%w: at most %d profiles at once", ErrInvalid, MaxApplied)
	}
	f := &ocprofile.File{}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		p, err := s.Get(n)
		if err != nil {
			return nil, nil, err
		}
		f.Profiles = append(f.Profiles, Profile(p))
	}
	sort.Slice(f.Profiles, func(i, j int) bool { return f.Profiles[i].Name < f.Profiles[j].Name })
	if err := f.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	b, err := yaml.Marshal(f)
	if err != nil {
		return nil, nil, err
	}
	return f, b, nil
}
