// Package flightsheet describes what a rig mines: which miner binary to run
// (pinned by sha256), against which pools in failover order, and how well it
// is expected to do. Flight sheets are YAML documents written by people, so
// parsing is strict and validation names the offending field.
package flightsheet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/quarryfleet/quarry/pkg/minerarchive"
)

// MaxSize bounds the size of a flight sheet document. Real ones are a few
// hundred bytes; the bound keeps a hostile document from costing memory.
const MaxSize = 64 << 10

// FlightSheet is one mining configuration that can be applied to rigs.
type FlightSheet struct {
	Name      string `yaml:"name"`
	Coin      string `yaml:"coin"`
	Algorithm string `yaml:"algorithm"`
	Miner     Miner  `yaml:"miner"`
	// Pools are tried in order; the supervisor moves to the next one when
	// the watchdog decides the current pool is not working.
	Pools     []Pool   `yaml:"pools"`
	ExtraArgs []string `yaml:"extra_args,omitempty"`
	// Overclock names an overclock profile kept elsewhere; empty means
	// leave the cards as they are.
	Overclock string `yaml:"overclock,omitempty"`
	// ExpectedHashrate is what this sheet should reach on the rig, in H/s;
	// zero means unknown and disables the low-hashrate rule.
	ExpectedHashrate Hashrate `yaml:"expected_hashrate,omitempty"`
}

// Miner pins the mining program and tells how to reach its stats API.
// Either Path and SHA256 name a binary already on the rig, or Path is left
// out and Name and Version name a miner in the controller's catalogue,
// which fills SHA256 and Archive when it sends the sheet to rigs.
type Miner struct {
	Name    string   `yaml:"name"` // adapter name, e.g. "xmrig"
	Version string   `yaml:"version,omitempty"`
	Path    string   `yaml:"path,omitempty"`
	SHA256  string   `yaml:"sha256,omitempty"` // of the binary at Path, lower or upper hex
	API     API      `yaml:"api,omitempty"`
	Archive *Archive `yaml:"archive,omitempty"`
}

// Archive is a catalogue miner's archive as the controller pinned it.
type Archive struct {
	SHA256 string `yaml:"sha256"` // of the archive file
	Size   int64  `yaml:"size"`
	Binary string `yaml:"binary"` // the program, slash-separated, inside the archive
}

// FromCatalogue reports whether the miner comes from the controller's
// catalogue rather than a path on the rig: no path, a version, and either
// no sha256 (as written) or the controller's archive pin (as sent).
func (m Miner) FromCatalogue() bool {
	return m.Path == "" && m.Version != "" && (m.SHA256 == "" || m.Archive != nil)
}

// API is where the miner serves its stats. Port 0 means the adapter's
// default port.
type API struct {
	Host  string `yaml:"host,omitempty"`
	Port  int    `yaml:"port,omitempty"`
	Token string `yaml:"token,omitempty"`
}

// Pool is one stratum endpoint with the credentials for it.
type Pool struct {
	URL      string `yaml:"url"`
	User     string `yaml:"user"` // "wallet.worker" or "wallet"
	Password string `yaml:"password,omitempty"`
}

// Wallet is the part of User before the first '.'.
func (p Pool) Wallet() string {
	w, _, _ := strings.Cut(p.User, ".")
	return w
}

// Worker is the part of User after the first '.', empty when absent.
func (p Pool) Worker() string {
	_, w, _ := strings.Cut(p.User, ".")
	return w
}

// Parse decodes one flight sheet. Unknown fields are errors so that a typo
// ("poools") is caught instead of silently ignored. Parse does not validate
// the content; call Validate for that.
func Parse(data []byte) (*FlightSheet, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("flight sheet is %d bytes, more than the %d allowed", len(data), MaxSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var fs FlightSheet
	if err := dec.Decode(&fs); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("flight sheet is empty")
		}
		return nil, fmt.Errorf("parse flight sheet: %w", err)
	}
	// A second document would be silently dropped otherwise.
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse flight sheet: more than one YAML document")
	}
	// "pools: []" and no pools at all mean the same; keep one form so that
	// sheets compare equal after a round trip.
	if len(fs.Pools) == 0 {
		fs.Pools = nil
	}
	if len(fs.ExtraArgs) == 0 {
		fs.ExtraArgs = nil
	}
	return &fs, nil
}

// Marshal encodes the flight sheet as YAML.
func (fs *FlightSheet) Marshal() ([]byte, error) {
	b, err := yaml.Marshal(fs)
	if err != nil {
		return nil, fmt.Errorf("marshal flight sheet: %w", err)
	}
	return b, nil
}

// FieldError is one validation problem, naming the field as it is written
// in YAML, e.g. "pools[1].url".
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// PoolSchemes are the pool URL schemes miners understand.
// Which of them a given miner takes is in miners.go.
var poolSchemes = []string{"stratum+tcp", "stratum+ssl", "stratum2+tcp", "http", "https", SchemeDaemonHTTP, SchemeDaemonHTTPS}

var (
	sha256Re = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	nameRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._ -]{0,127}$`)
)

// Validate checks the flight sheet and returns every problem found, joined,
// each a *FieldError. knownMiners is the set of miner adapter names this
// build supports; a miner not in it is refused.
func (fs *FlightSheet) Validate(knownMiners []string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case fs.Name == "":
		bad("name", "is required")
	case !nameRe.MatchString(fs.Name):
		bad("name", "%q must start with a letter or digit and hold only letters, digits, '.', '_', '-' or spaces (at most 128)", fs.Name)
	}
	if fs.Coin == "" {
		bad("coin", "is required")
	}
	if fs.Algorithm == "" {
		bad("algorithm", "is required")
	}

	m := fs.Miner
	switch {
	case m.Name == "":
		bad("miner.name", "is required")
	case !slices.Contains(knownMiners, m.Name):
		known := "none"
		if len(knownMiners) > 0 {
			sorted := slices.Clone(knownMiners)
			slices.Sort(sorted)
			known = strings.Join(sorted, ", ")
		}
		bad("miner.name", "unknown miner %q (known: %s)", m.Name, known)
	}
	cat := m.FromCatalogue()
	switch {
	case cat:
		validateArchive(m.Archive, bad)
	case m.Archive != nil:
		bad("miner.archive", "is filled by the controller for catalogue miners; leave it out when miner.path is set")
	case m.Path == "":
		bad("miner.path", "is required (or leave it out and give miner.version to use the controller's catalogue)")
	case !filepath.IsAbs(m.Path):
		// Relative paths would depend on the agent's working directory.
		bad("miner.path", "%q must be an absolute path", m.Path)
	case IsInterpreter(m.Path):
		bad("miner.path", "%s is a shell or interpreter, which never runs as a miner; name the miner binary in the rig's miners directory", m.Path)
	}
	switch {
	case m.SHA256 == "" && cat:
		// The controller pins it from the catalogue at apply.
	case m.SHA256 == "":
		bad("miner.sha256", "is required: agents only run pinned binaries")
	case !sha256Re.MatchString(m.SHA256):
		bad("miner.sha256", "must be 64 hex digits, got %d characters", len(m.SHA256))
	}
	if m.API.Port < 0 || m.API.Port > 65535 {
		bad("miner.api.port", "%d is out of range 1-65535 (0 = miner's default)", m.API.Port)
	}
	if strings.ContainsAny(m.API.Host, "/ ") {
		bad("miner.api.host", "%q must be a host name or address, not a URL", m.API.Host)
	}

	if len(fs.Pools) == 0 {
		bad("pools", "at least one pool is required")
	}
	for i, p := range fs.Pools {
		field := fmt.Sprintf("pools[%d]", i)
		if err := validatePoolURL(p.URL); err != nil {
			bad(field+".url", "%v", err)
		} else if m.Name != "" {
			u, _ := url.Parse(p.URL) // parsed above
			if err := checkMinerScheme(m.Name, u.Scheme); err != nil {
				bad(field+".url", "%v", err)
			}
		}
		switch {
		case strings.TrimSpace(p.User) == "":
			bad(field+".user", "wallet is missing (want wallet.worker)")
		case strings.TrimSpace(p.Wallet()) == "":
			bad(field+".user", "%q has a worker but no wallet (want wallet.worker)", p.User)
		case strings.ContainsAny(p.User, " \t\r\n"):
			bad(field+".user", "%q must not contain whitespace", p.User)
		}
	}
	for i, a := range fs.ExtraArgs {
		if strings.ContainsAny(a, "\x00\n") {
			bad(fmt.Sprintf("extra_args[%d]", i), "must not contain NUL or newline")
		} else if err := checkExtraArg(m.Name, a); err != nil {
			bad(fmt.Sprintf("extra_args[%d]", i), "%v", err)
		}
	}
	if h := float64(fs.ExpectedHashrate); h < 0 || math.IsNaN(h) || math.IsInf(h, 0) {
		bad("expected_hashrate", "must be a positive rate or left out")
	}
	return errors.Join(errs...)
}

func validateArchive(a *Archive, bad func(field, format string, args ...any)) {
	if a == nil {
		return
	}
	if !sha256Re.MatchString(a.SHA256) {
		bad("miner.archive.sha256", "must be 64 hex digits, got %d characters", len(a.SHA256))
	}
	if a.Size <= 0 {
		bad("miner.archive.size", "must be positive")
	}
	if c, err := minerarchive.CleanName(a.Binary); err != nil || c == "" || c != a.Binary {
		bad("miner.archive.binary", "%q must be a clean relative path inside the archive", a.Binary)
	}
}

func validatePoolURL(raw string) error {
	if raw == "" {
		return errors.New("is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	if !slices.Contains(poolSchemes, strings.ToLower(u.Scheme)) {
		return fmt.Errorf("scheme %q is not one of %s", u.Scheme, strings.Join(poolSchemes, ", "))
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%q has no host", raw)
	}
	if s := strings.ToLower(u.Scheme); strings.HasPrefix(s, "stratum") || s == SchemeDaemonHTTP || s == SchemeDaemonHTTPS {
		// Stratum has no default port, and coin daemons each have their
		// own; a missing one is always a mistake.
		_, port, err := net.SplitHostPort(u.Host)
		if err != nil || port == "" {
			return fmt.Errorf("%q needs a port (host:port)", raw)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q has an invalid port %q", raw, port)
		}
	}
	return nil
}
