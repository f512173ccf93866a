package switcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/profit"
	"github.com/quarryfleet/quarry/pkg/store"
)

// bucketSettings holds the versions of the profit settings, by version
// number.
const bucketSettings = "profit_settings"

// SeedAuthor is the author of the version stored from the configuration
// file on first start.
const SeedAuthor = "config file (seed)"

// Errors the API maps to gRPC codes.
var (
	// ErrConflict: the settings changed since the version a change was
	// made from.
	ErrConflict = errors.New("profit settings changed meanwhile")
	// ErrInvalidSettings: the settings fail validation.
	ErrInvalidSettings = errors.New("invalid profit settings")
	// ErrNoVersion: no such version is stored.
	ErrNoVersion = errors.New("no such profit settings version")
)

// Settings are the part of the profit section kept in the database and
// changed through ProfitService: what rigs may mine, electricity, pins and
// exclusions, and the policy. Market, tick and batching stay in the file.
type Settings struct {
	Policy      profit.Policy         `json:"policy"`
	DefaultSite string                `json:"default_site"`
	Sites       map[string]SiteConfig `json:"sites,omitempty"`
	Rigs        map[string]RigConfig  `json:"rigs,omitempty"`
	Rules       profit.Rules          `json:"rules"`
	Options     []OptionConfig        `json:"options,omitempty"`
}

// Editable returns the part of the file's section that is stored.
func (c Config) Editable() Settings {
	return Settings{Policy: c.Policy, DefaultSite: c.DefaultSite, Sites: c.Sites, Rigs: c.Rigs, Rules: c.Rules, Options: c.Options}
}

// with returns c with the editable part replaced by st.
func (c Config) with(st Settings) Config {
	c.Policy, c.DefaultSite, c.Sites, c.Rigs, c.Rules, c.Options = st.Policy, st.DefaultSite, st.Sites, st.Rigs, st.Rules, st.Options
	return c
}

// validate checks the settings with the rules the configuration file has
// always been held to; the file loader and the API both call it. With
// sheet nil, options naming a stored flight sheet are not checked.
func (c Settings) validate(sheet sheetFunc) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("profit."+format, a...)) }
	if err := c.Policy.Validate(); err != nil {
		bad("policy: %w", err)
	}
	if c.DefaultSite == "" {
		bad("default_site: must not be empty")
	}
	if _, err := c.sites(); err != nil {
		bad("sites: %w", err)
	}
	for name, r := range c.Rigs {
		if r.Site != "" && r.Site != c.DefaultSite {
			if _, ok := c.Sites[r.Site]; !ok {
				bad("rigs.%s.site: unknown site %q", name, r.Site)
			}
		}
		if err := r.Profile.validate(); err != nil {
			bad("rigs.%s.profile: %w", name, err)
		}
	}
	if _, _, err := c.options(sheet); err != nil {
		bad("options: %w", err)
	}
	return errors.Join(errs...)
}

// SettingsVersion is one stored version of the settings.
type SettingsVersion struct {
	Version  uint64    `json:"version"`
	Author   string    `json:"author"`
	Time     time.Time `json:"time"`
	Summary  string    `json:"summary"`
	Seed     bool      `json:"seed,omitempty"`
	Settings Settings  `json:"settings"`
}

func readVersion(b *store.Bucket, k, v []byte) (SettingsVersion, error) {
	var sv SettingsVersion
	if err := json.Unmarshal(v, &sv); err != nil {
		return sv, fmt.Errorf("profit settings version %d: %w", store.ParseU64(k), err)
	}
	return sv, nil
}

// latestVersion returns the newest stored version; ok is false when none
// is stored.
func (s *Switcher) latestVersion() (sv SettingsVersion, ok bool, err error) {
	err = s.db.View(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(bucketSettings))
		k, v := b.Cursor().Last()
		if k == nil {
			return nil
		}
		ok = true
		sv, err = readVersion(b, k, v)
		return err
	})
	return sv, ok, err
}

// SettingsAt returns a stored version.
func (s *Switcher) SettingsAt(version uint64) (SettingsVersion, error) {
	var sv SettingsVersion
	err := s.db.View(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(bucketSettings))
		v := b.Get(store.U64(version))
		if v == nil {
			return fmt.Errorf("%w: %d", ErrNoVersion, version)
		}
		var err error
		sv, err = readVersion(b, store.U64(version), v)
		return err
	})
	return sv, err
}

// SettingsVersions lists stored versions newest first, without their
// documents: at most limit, older than before (0: from the newest).
func (s *Switcher) SettingsVersions(before uint64, limit int) ([]SettingsVersion, error) {
	var out []SettingsVersion
	err := s.db.View(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(bucketSettings))
		c := b.Cursor()
		var k, v []byte
		if before == 0 {
			k, v = c.Last()
		} else {
			k, v = c.Seek(store.U64(before))
			if k == nil {
				k, v = c.Last()
			}
			if k != nil && store.ParseU64(k) >= before {
				k, v = c.Prev()
			}
		}
		for ; k != nil && len(out) < limit; k, v = c.Prev() {
			sv, err := readVersion(b, k, v)
			if err != nil {
				return err
			}
			sv.Settings = Settings{}
			out = append(out, sv)
		}
		return nil
	})
	return out, err
}

// Origin says where the settings in force come from, for operators:
// "seeded from config file at …, N edits since".
func (s *Switcher) Origin() string {
	if s.db == nil {
		return "config file (no database)"
	}
	first, err := s.SettingsAt(1)
	if err != nil {
		return "unknown: " + err.Error()
	}
	last, _, err := s.latestVersion()
	if err != nil {
		return "unknown: " + err.Error()
	}
	edits := last.Version - 1
	word := "edits"
	if edits == 1 {
		word = "edit"
	}
	if first.Seed {
		return fmt.Sprintf("seeded from config file at %s, %d %s since", first.Time.UTC().Format(time.RFC3339), edits, word)
	}
	return fmt.Sprintf("stored %s by %s, %d %s since", first.Time.UTC().Format(time.RFC3339), first.Author, edits, word)
}

// UpdateSettings validates st and stores it as the version after base,
// which must be the current one; the switcher uses it from its next tick,
// which it asks for now.
func (s *Switcher) UpdateSettings(base uint64, author string, st Settings) (SettingsVersion, error) {
	return s.store(base, author, st, "")
}

// RestoreSettings stores a new version equal to an earlier one.
func (s *Switcher) RestoreSettings(base, version uint64, author string) (SettingsVersion, error) {
	old, err := s.SettingsAt(version)
	if err != nil {
		return SettingsVersion{}, err
	}
	return s.store(base, author, old.Settings, fmt.Sprintf("restored version %d", version))
}

func (s *Switcher) store(base uint64, author string, st Settings, why string) (SettingsVersion, error) {
	if s.db == nil {
		return SettingsVersion{}, errors.New("profit settings need the controller's database")
	}
	st = st.canonical()
	if err := st.validate(s.sheet); err != nil {
		return SettingsVersion{}, fmt.Errorf("%w: %w", ErrInvalidSettings, err)
	}
	var sv SettingsVersion
	err := s.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(bucketSettings))
		k, v := b.Cursor().Last()
		if k == nil {
			return errors.New("profit settings were never seeded")
		}
		cur, err := readVersion(b, k, v)
		if err != nil {
			return err
		}
		if cur.Version != base {
			return fmt.Errorf("%w: the change was made from version %d but version %d (by %s, %s) is current; get the settings again and reapply the change",
				ErrConflict, base, cur.Version, cur.Author, cur.Summary)
		}
		summary := diffSettings(cur.Settings, st)
		if why != "" {
			summary = why + ": " + summary
		}
		sv = SettingsVersion{Version: cur.Version + 1, Author: author, Time: s.now().UTC(), Summary: summary, Settings: st}
		return putVersion(b, sv)
	})
	if err != nil {
		return SettingsVersion{}, err
	}
	s.log.Info("profit settings changed", "version", sv.Version, "by", author, "summary", sv.Summary)
	s.Kick()
	return sv, nil
}

func putVersion(b *store.Bucket, sv SettingsVersion) error {
	v, err := json.Marshal(sv)
	if err != nil {
		return err
	}
	return b.Put(store.U64(sv.Version), v)
}

// canonical sorts what order does not matter in and drops empty maps, so
// that equal settings compare equal.
func (c Settings) canonical() Settings {
	if len(c.Sites) == 0 {
		c.Sites = nil
	}
	if len(c.Rigs) == 0 {
		c.Rigs = nil
	}
	if len(c.Options) == 0 {
		c.Options = nil
	}
	return c
}

// seedOrLoad stores the file's settings as version 1 when none are stored,
// flight sheets given inline going to the flight sheet store, and returns
// the version in force.
func (s *Switcher) seedOrLoad(fileCfg Config) (SettingsVersion, error) {
	sv, ok, err := s.latestVersion()
	if err != nil || ok {
		if ok {
			s.log.Info("profit: the settings stored in the database are in force; the config file's options, sites, rigs, rules and policy only seeded them",
				"version", sv.Version, "origin", s.Origin())
		}
		return sv, err
	}
	st := fileCfg.Editable()
	if s.sheets != nil {
		st.Options = slices.Clone(st.Options)
		for i, oc := range st.Options {
			if oc.FlightSheet == nil {
				continue
			}
			name, err := s.seedSheet(oc)
			if err != nil {
				return sv, fmt.Errorf("profit.options: %d: storing its flight sheet: %w", i, err)
			}
			oc.Sheet, oc.FlightSheet = name, nil
			st.Options[i] = oc
		}
	}
	st = st.canonical()
	if err := st.validate(s.sheet); err != nil {
		return sv, err
	}
	sv = SettingsVersion{Version: 1, Author: SeedAuthor, Time: s.now().UTC(), Summary: "seeded from the config file: " + describe(st), Seed: true, Settings: st}
	if err := s.db.Update(func(tx *store.Tx) error { return putVersion(tx.Bucket([]byte(bucketSettings)), sv) }); err != nil {
		return sv, err
	}
	s.log.Info("profit: settings seeded from the config file", "version", 1, "summary", sv.Summary)
	return sv, nil
}

// seedSheet stores an option's inline flight sheet under its name, or
// under name-seed when another sheet already has the name, and returns the
// name used.
func (s *Switcher) seedSheet(oc OptionConfig) (string, error) {
	fs := *oc.FlightSheet
	fillSheet(&fs, strings.ToLower(firstNonEmpty(oc.Coin, fs.Coin)), firstNonEmpty(oc.Algorithm, fs.Algorithm))
	y, err := fs.Marshal()
	if err != nil {
		return "", err
	}
	name := fs.Name
	if rec, err := s.sheets.Sheet(name); err == nil {
		if old, perr := flightsheet.Parse(rec.Yaml); perr == nil && reflect.DeepEqual(*old, fs) {
			return name, nil
		}
		fs.Name = name + "-seed"
		s.log.Warn("profit: a different flight sheet is stored under the option's name; storing the config file's as another", "name", name, "stored_as", fs.Name)
		if y, err = fs.Marshal(); err != nil {
			return "", err
		}
	}
	rec, err := s.sheets.PutSheet(y, SeedAuthor)
	if err != nil {
		return "", err
	}
	return rec.Name, nil
}

// describe sums settings up in one line.
func describe(c Settings) string {
	return fmt.Sprintf("%d options, %d sites, %d rigs with settings", len(c.Options), len(c.Sites), len(c.Rigs))
}

// diffSettings says in one line what changed from a to b, naming options,
// sites and rigs; it never includes flight sheet contents.
func diffSettings(a, b Settings) string {
	var parts []string
	if a.DefaultSite != b.DefaultSite {
		parts = append(parts, fmt.Sprintf("default site %s → %s", a.DefaultSite, b.DefaultSite))
	}
	if p := diffPolicy(a.Policy, b.Policy); p != "" {
		parts = append(parts, "policy "+p)
	}
	if !reflect.DeepEqual(a.Rules, b.Rules) {
		parts = append(parts, "fleet rules "+describeRules(b.Rules))
	}
	if d := diffMap("site", a.Sites, b.Sites); d != "" {
		parts = append(parts, d)
	}
	if d := diffMap("rig", a.Rigs, b.Rigs); d != "" {
		parts = append(parts, d)
	}
	key := func(o OptionConfig) string {
		n := o.Sheet
		if n == "" && o.FlightSheet != nil {
			n = o.FlightSheet.Name
		}
		if o.Coin != "" {
			n = o.Coin + " " + n
		}
		if o.Pool != "" {
			n += "@" + o.Pool
		}
		return n
	}
	ao, bo := map[string]OptionConfig{}, map[string]OptionConfig{}
	for _, o := range a.Options {
		ao[key(o)] = o
	}
	for _, o := range b.Options {
		bo[key(o)] = o
	}
	if d := diffMap("option", ao, bo); d != "" {
		parts = append(parts, d)
	}
	if len(parts) == 0 {
		return "no change"
	}
	out := strings.Join(parts, "; ")
	if len(out) > 400 {
		out = out[:397] + "..."
	}
	return out
}

func diffMap[V any](what string, a, b map[string]V) string {
	var add, del, chg []string
	for _, k := range slices.Sorted(maps.Keys(b)) {
		old, ok := a[k]
		switch {
		case !ok:
			add = append(add, k)
		case !reflect.DeepEqual(old, b[k]):
			chg = append(chg, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if _, ok := b[k]; !ok {
			del = append(del, k)
		}
	}
	var out []string
	if len(add) > 0 {
		out = append(out, what+" added "+strings.Join(add, ", "))
	}
	if len(chg) > 0 {
		out = append(out, what+" changed "+strings.Join(chg, ", "))
	}
	if len(del) > 0 {
		out = append(out, what+" removed "+strings.Join(del, ", "))
	}
	return strings.Join(out, "; ")
}

func diffPolicy(a, b profit.Policy) string {
	var out []string
	f := func(name string, x, y any) {
		if x != y {
			out = append(out, fmt.Sprintf("%s %v → %v", name, x, y))
		}
	}
	f("relative_threshold", a.RelativeThreshold, b.RelativeThreshold)
	f("absolute_threshold", a.AbsoluteThreshold, b.AbsoluteThreshold)
	f("min_dwell", a.MinDwell, b.MinDwell)
	f("switch_downtime", a.SwitchDowntime, b.SwitchDowntime)
	f("curtail_below", a.CurtailBelow, b.CurtailBelow)
	f("smoothing", a.Smoothing, b.Smoothing)
	return strings.Join(out, ", ")
}

func describeRules(r profit.Rules) string {
	if r.IsZero() {
		return "cleared"
	}
	var out []string
	if r.Pin != "" {
		out = append(out, "pin "+r.Pin)
	}
	for _, x := range []struct {
		what string
		list []string
	}{{"coins", r.ExcludeCoins}, {"pools", r.ExcludePools}, {"algorithms", r.ExcludeAlgorithms}} {
		if len(x.list) > 0 {
			out = append(out, "exclude "+x.what+" "+strings.Join(x.list, ","))
		}
	}
	return strings.Join(out, ", ")
}
