package switcher

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/market"
	"github.com/quarryfleet/quarry/pkg/profit"
)

// Config is the controller's `profit:` section. With no options the
// switcher only keeps the market cache; it never sends a command. With a
// database, policy, default_site, sites, rigs, rules and options only seed
// the stored Settings on first start.
//
//	profit:
//	  tick: 1m
//	  dry_run: false
//	  batch_size: 50
//	  batch_spacing: 2s
//	  market:
//	    ttl: 5m
//	    max_staleness: 2h
//	    offline: false            # true: switch on a fixed snapshot, fetch nothing
//	    snapshot: ""              # with offline: a market file; empty = built in
//	    sources:
//	      - {kind: whattomine, url: https://whattomine.com/coins.json}
//	      - {kind: coingecko, url: https://api.coingecko.com/api/v3/simple/price}
//	    coingecko_ids: {btc: bitcoin, etc: ethereum-classic, rvn: ravencoin}
//	  policy: {relative_threshold: 0.05, absolute_threshold: 0.10, min_dwell: 30m, switch_downtime: 2m}
//	  default_site: home
//	  sites:
//	    home: {default: 0.12, timezone: Europe/Berlin, rules: [{from: 22, to: 6, price: 0.07}]}
//	  rigs:
//	    rig-7: {site: home, pin: etc, profile: {etchash: {hashrate: 366e6, power: 720}}}
//	  options:
//	    - coin: etc
//	      pool: 2miners
//	      pool_fee: 0.01
//	      flight_sheet: {name: etc-lolminer, coin: etc, algorithm: etchash, miner: {...}, pools: [...]}
type Config struct {
	Tick         time.Duration `yaml:"tick" help:"how often every rig is ranked and the policy applied"`
	DryRun       bool          `yaml:"dry_run" flag:"profit-dry-run" help:"decide and record, but send no switching commands"`
	BatchSize    int           `yaml:"batch_size" help:"most switching commands queued at once"`
	BatchSpacing time.Duration `yaml:"batch_spacing" help:"pause between batches of switching commands"`
	CommandTTL   time.Duration `yaml:"command_ttl" help:"how long a switching command waits for an offline rig"`
	// Smoothing is the weight of the newest report in measured hash rate
	// and power (exponential moving average).
	Smoothing   float64                 `yaml:"smoothing" help:"weight of the newest report in measured hash rate and power"`
	Market      MarketConfig            `yaml:"market"`
	Policy      profit.Policy           `yaml:"policy"`
	DefaultSite string                  `yaml:"default_site" help:"site of rigs that name none (rig tag 'site' or rigs.<rig>.site); seed only, see options"`
	Sites       map[string]SiteConfig   `yaml:"sites" help:"electricity per site; seed only, see options"`
	Rigs        map[string]RigConfig    `yaml:"rigs" help:"per-rig site, pins, exclusions and profiles, by rig id or name; seed only, see options"`
	Rules       profit.Rules            `yaml:"rules" help:"fleet-wide pins and exclusions; seed only, see options"`
	Options     []OptionConfig          `yaml:"options" help:"what rigs may mine: one flight sheet per coin, pool and miner. Options, default_site, sites, rigs, rules and policy are stored in the database on first start and ignored afterwards: change them with quarryctl profit options|sites|rules|policy"`
	Profiles    map[string]AlgoProfiles `yaml:"profiles" help:"figures per hardware fingerprint (GPU models, comma-separated, sorted)"`
}

// AlgoProfiles are figures per algorithm.
type AlgoProfiles map[string]AlgoProfile

// AlgoProfile is a hash rate (H/s) and wall power (W) on one algorithm.
type AlgoProfile struct {
	Hashrate float64 `yaml:"hashrate" json:"hashrate"`
	Power    float64 `yaml:"power" json:"power"`
}

// MarketConfig configures the market cache.
type MarketConfig struct {
	Sources        []SourceConfig    `yaml:"sources" help:"market sources in precedence order"`
	CoinGeckoIDs   map[string]string `yaml:"coingecko_ids" help:"coin tag to CoinGecko id; include btc: bitcoin for WhatToMine's BTC prices"`
	TTL            time.Duration     `yaml:"ttl" help:"how long a market snapshot is fresh"`
	MaxStaleness   time.Duration     `yaml:"max_staleness" help:"market age beyond which switching pauses"`
	SourceTimeout  time.Duration     `yaml:"source_timeout" help:"time limit of one source fetch"`
	JumpFactor     float64           `yaml:"jump_factor" help:"price or difficulty move that is held back until confirmed"`
	ConfirmFetches int               `yaml:"confirm_fetches" help:"fetches that must show a jump before it is accepted; 1 accepts at once"`
	// Offline serves one fixed snapshot and switches on it whatever its
	// age: for sites without internet, and demos.
	Offline  bool   `yaml:"offline" help:"switch on a fixed market snapshot whatever its age, fetching nothing (sites without internet, demos)"`
	Snapshot string `yaml:"snapshot" help:"with offline: a market file (quarry-market/v1) to use instead of the built-in snapshot"`
}

// offlineSnapshot loads the snapshot offline mode serves: the file named
// by market.snapshot, else the one built into the binary.
func (m MarketConfig) offlineSnapshot() (*market.Snapshot, error) {
	if !m.Offline {
		return nil, nil
	}
	var s market.Snapshot
	var err error
	if m.Snapshot != "" {
		s, err = market.LoadSnapshotFile(m.Snapshot)
	} else {
		s, err = market.DefaultSnapshot()
	}
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// Mode describes where market data comes from, for operators.
func (m MarketConfig) Mode() string {
	switch {
	case m.Offline && m.Snapshot != "":
		return "offline: file " + m.Snapshot
	case m.Offline:
		return "offline: embedded snapshot"
	case len(m.Sources) == 0:
		return "built-in snapshot only (no sources; switching pauses when it is stale)"
	}
	return "live"
}

// SourceConfig is one market source.
type SourceConfig struct {
	Kind string `yaml:"kind"` // whattomine, minerstat, coingecko, file, offline, demo
	URL  string `yaml:"url"`
	Path string `yaml:"path"` // file
	Name string `yaml:"name"` // label; default the kind
	// Swing and Period move the demo market's prices: a sine wave of
	// relative amplitude Swing (default 0.4) and the given period (default
	// 5m), each coin at its own phase.
	Swing  float64       `yaml:"swing"`
	Period time.Duration `yaml:"period"`
}

// SiteConfig is a site's electricity tariff in USD/kWh.
type SiteConfig struct {
	Default  float64             `yaml:"default" json:"default"`
	Rules    []profit.TariffRule `yaml:"rules" json:"rules,omitempty"`
	Timezone string              `yaml:"timezone" json:"timezone,omitempty"`
}

// RigConfig is one rig's settings.
type RigConfig struct {
	Site    string       `yaml:"site" json:"site,omitempty"`
	Rules   profit.Rules `yaml:",inline" json:"rules"`
	Profile AlgoProfiles `yaml:"profile" json:"profile,omitempty"`
}

// OptionConfig is one thing rigs may mine. Coin and algorithm default
// from the flight sheet, which is what APPLY_FLIGHT_SHEET carries.
type OptionConfig struct {
	Coin      string  `yaml:"coin" json:"coin,omitempty"`
	Algorithm string  `yaml:"algorithm" json:"algorithm,omitempty"`
	Pool      string  `yaml:"pool" json:"pool,omitempty"` // short name; default the first pool's host
	PoolFee   float64 `yaml:"pool_fee" json:"pool_fee"`
	// MinerFee is the miner program's dev fee; unset takes the fee the
	// miner is known to keep (flightsheet.DevFee).
	MinerFee *float64 `yaml:"miner_fee" json:"miner_fee,omitempty"`
	// Sheet names a flight sheet stored with MinerService. The stored
	// settings' options name one; the file's may give FlightSheet inline
	// instead, which the first start stores under its name.
	Sheet       string                   `yaml:"sheet" json:"sheet,omitempty"`
	FlightSheet *flightsheet.FlightSheet `yaml:"flight_sheet" json:"inline_sheet,omitempty"`
}

// DefaultConfig is the profit section with no file: no sources (the
// embedded snapshot only), no options, default policy.
func DefaultConfig() Config {
	return Config{
		Tick:         time.Minute,
		BatchSize:    50,
		BatchSpacing: 2 * time.Second,
		CommandTTL:   10 * time.Minute,
		Smoothing:    0.3,
		Policy:       profit.DefaultPolicy(),
		DefaultSite:  "default",
		Market: MarketConfig{
			TTL:            market.DefaultTTL,
			MaxStaleness:   market.DefaultMaxStaleness,
			SourceTimeout:  market.DefaultSourceTimeout,
			JumpFactor:     market.DefaultJumpFactor,
			ConfirmFetches: market.DefaultConfirmFetches,
		},
	}
}

// Validate names the first bad setting of each kind.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("profit."+format, a...)) }
	if c.Tick < 10*time.Millisecond {
		bad("tick: %s is too short", c.Tick)
	}
	if c.BatchSize < 1 {
		bad("batch_size: must be at least 1, got %d", c.BatchSize)
	}
	if c.BatchSpacing < 0 {
		bad("batch_spacing: %s must not be negative", c.BatchSpacing)
	}
	if !(c.Smoothing > 0 && c.Smoothing <= 1) {
		bad("smoothing: %v must be in (0,1]", c.Smoothing)
	}
	if _, err := c.MarketSources(nil); err != nil {
		bad("market.sources: %w", err)
	}
	switch {
	case c.Market.Offline && len(c.Market.Sources) > 0:
		bad("market.offline: offline mode fetches nothing; remove market.sources (a local file goes in market.snapshot)")
	case c.Market.Snapshot != "" && !c.Market.Offline:
		bad("market.snapshot: only used with market.offline: true; for a file refreshed live use sources: [{kind: file, path: ...}]")
	case c.Market.Offline:
		if _, err := c.Market.offlineSnapshot(); err != nil {
			bad("market.snapshot: %w", err)
		}
	}
	if c.Market.TTL <= 0 || c.Market.MaxStaleness <= 0 {
		bad("market: ttl %s and max_staleness %s must be positive", c.Market.TTL, c.Market.MaxStaleness)
	}
	for fp, p := range c.Profiles {
		if err := p.validate(); err != nil {
			bad("profiles.%s: %w", fp, err)
		}
	}
	// Options naming a stored flight sheet are checked when the switcher
	// opens with the flight sheet store.
	if err := c.Editable().validate(nil); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (p AlgoProfiles) validate() error {
	for algo, f := range p {
		if !(f.Hashrate > 0) || !(f.Power >= 0) || f.Hashrate > 1e30 || f.Power > 1e9 {
			return fmt.Errorf("%s: hashrate %v must be positive and power %v non-negative", algo, f.Hashrate, f.Power)
		}
	}
	return nil
}

// sites turns the site settings into profit sites; the default site
// exists even when not listed (free power until configured).
func (c Settings) sites() ([]profit.Site, error) {
	out := make([]profit.Site, 0, len(c.Sites)+1)
	if _, ok := c.Sites[c.DefaultSite]; !ok {
		out = append(out, profit.Site{Name: c.DefaultSite})
	}
	for name, s := range c.Sites {
		t := profit.Tariff{Default: s.Default, Rules: s.Rules}
		if s.Timezone != "" {
			loc, err := time.LoadLocation(s.Timezone)
			if err != nil {
				return nil, fmt.Errorf("%s.timezone: %w", name, err)
			}
			t.Location = loc
		}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, profit.Site{Name: name, Tariff: t})
	}
	return out, nil
}

// sheetFunc returns a stored flight sheet parsed and the payload rigs get
// for it; nil when no store is at hand.
type sheetFunc func(name string) (*flightsheet.FlightSheet, []byte, error)

// options builds the engine's options and each one's flight sheet payload,
// indexed like the engine. Options naming a stored sheet take it from
// sheet; with sheet nil they are left out (checked later).
func (c Settings) options(sheet sheetFunc) (*profit.Engine, [][]byte, error) {
	if len(c.Options) == 0 {
		return nil, nil, nil
	}
	opts := make([]profit.Option, 0, len(c.Options))
	byOpt := make(map[profit.Option][]byte, len(c.Options))
	for i, oc := range c.Options {
		var fs flightsheet.FlightSheet
		var payload []byte
		switch {
		case oc.Sheet != "" && oc.FlightSheet != nil:
			return nil, nil, fmt.Errorf("%d: give a stored flight sheet's name (sheet) or an inline flight_sheet, not both", i)
		case oc.Sheet != "" && sheet == nil:
			continue
		case oc.Sheet != "":
			got, p, err := sheet(oc.Sheet)
			if err != nil {
				return nil, nil, fmt.Errorf("%d: flight sheet %q: %w", i, oc.Sheet, err)
			}
			fs, payload = *got, p
		case oc.FlightSheet != nil:
			fs = *oc.FlightSheet
		}
		coin := strings.ToLower(firstNonEmpty(oc.Coin, fs.Coin))
		algo := market.CanonicalAlgorithm(firstNonEmpty(oc.Algorithm, fs.Algorithm))
		if coin == "" || algo == "" {
			return nil, nil, fmt.Errorf("%d: coin and algorithm are required (here or in the flight sheet)", i)
		}
		if len(fs.Pools) == 0 || fs.Miner.Name == "" {
			return nil, nil, fmt.Errorf("%d (%s): flight_sheet needs a miner and at least one pool", i, coin)
		}
		if payload == nil {
			fillSheet(&fs, coin, algo)
			p, err := fs.Marshal()
			if err != nil {
				return nil, nil, fmt.Errorf("%d (%s): flight sheet: %w", i, coin, err)
			}
			payload = p
		}
		pool := oc.Pool
		if pool == "" {
			pool = poolHost(fs.Pools[0].URL)
		}
		minerFee := flightsheet.DevFee(fs.Miner.Name, algo, fs.ExtraArgs)
		if oc.MinerFee != nil {
			minerFee = *oc.MinerFee
		}
		o := profit.Option{Coin: coin, Algorithm: algo, Pool: pool, PoolFee: oc.PoolFee, Miner: fs.Miner.Name, MinerFee: minerFee}
		if _, dup := byOpt[o]; dup {
			return nil, nil, fmt.Errorf("%d: %s is listed twice", i, o)
		}
		opts, byOpt[o] = append(opts, o), payload
	}
	if len(opts) == 0 {
		return nil, nil, nil
	}
	e, err := profit.NewEngine(opts)
	if err != nil {
		return nil, nil, err
	}
	payloads := make([][]byte, e.Len())
	for i := range payloads {
		payloads[i] = byOpt[e.Option(i)]
	}
	return e, payloads, nil
}

// fillSheet gives an inline sheet the option's coin and algorithm and a
// name when it has none, as the sheet rigs get.
func fillSheet(fs *flightsheet.FlightSheet, coin, algo string) {
	if fs.Coin == "" {
		fs.Coin = coin
	}
	if fs.Algorithm == "" {
		fs.Algorithm = algo
	}
	if fs.Name == "" {
		fs.Name = coin + "-" + fs.Miner.Name
	}
}

func poolHost(u string) string {
	if p, err := url.Parse(u); err == nil && p.Hostname() != "" {
		return p.Hostname()
	}
	return u
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// MarketSources builds the configured sources; client may be nil.
func (c Config) MarketSources(client *http.Client) ([]market.Source, error) {
	var out []market.Source
	for i, s := range c.Market.Sources {
		name := firstNonEmpty(s.Name, s.Kind)
		need := func(v, what string) error {
			if v == "" {
				return fmt.Errorf("%d (%s): %s is required", i, s.Kind, what)
			}
			return nil
		}
		switch s.Kind {
		case "whattomine":
			if err := need(s.URL, "url"); err != nil {
				return nil, err
			}
			out = append(out, &market.WhatToMine{URL: s.URL, Label: name, Client: client})
		case "minerstat":
			if err := need(s.URL, "url"); err != nil {
				return nil, err
			}
			out = append(out, &market.Minerstat{URL: s.URL, Label: name, Client: client})
		case "coingecko":
			if err := need(s.URL, "url"); err != nil {
				return nil, err
			}
			if len(c.Market.CoinGeckoIDs) == 0 {
				return nil, fmt.Errorf("%d (coingecko): market.coingecko_ids is empty", i)
			}
			out = append(out, &market.CoinGecko{BaseURL: s.URL, IDs: c.Market.CoinGeckoIDs, Label: name, Client: client})
		case "file":
			if err := need(s.Path, "path"); err != nil {
				return nil, err
			}
			out = append(out, &market.File{Path: s.Path, Label: name})
		case "offline":
			// The built-in snapshot as today's market: switching works
			// without network, and every view marks the data offline.
			out = append(out, &market.Offline{Label: name})
		case "demo":
			swing := s.Swing
			if swing == 0 {
				swing = 0.4
			}
			if !(swing > 0 && swing <= 0.9) || s.Period < 0 {
				return nil, fmt.Errorf("%d (demo): swing %v must be in (0, 0.9] and period %s not negative", i, s.Swing, s.Period)
			}
			out = append(out, &market.Offline{Label: name, Swing: swing, Period: s.Period})
		default:
			return nil, fmt.Errorf("%d: kind %q is not whattomine, minerstat, coingecko, file, offline or demo", i, s.Kind)
		}
	}
	return out, nil
}
