package minerapi

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Adapter knows one miner program: how to launch it for a flight sheet and
// how to read its stats API.
type Adapter interface {
	// Name is the registry name, e.g. "xmrig".
	Name() string
	// Launch turns a flight sheet into the miner's arguments and, for
	// miners configured by file, the file's contents.
	Launch(fs FlightSheet) (Launch, error)
	// Stats reads the miner's stats API once. Errors wrap ErrUnreachable,
	// ErrBadReply, ErrAuth or ErrNoHashrate; with ErrNoHashrate the returned Stats is
	// filled as far as the reply allowed.
	Stats(ctx context.Context, ep Endpoint) (Stats, error)
}

// Pool is one pool in a flight sheet.
type Pool struct {
	URL      string // e.g. stratum+tcp://rvn.2miners.com:6060
	User     string // wallet or account
	Password string // often "x"
}

// FlightSheet is what the controller tells a rig to mine, in miner-neutral
// terms.
type FlightSheet struct {
	Algorithm string
	Pools     []Pool // in failover order: the first is preferred
	// Worker, when set, is appended to each pool user as "user.worker",
	// the convention nearly every pool uses to tell rigs apart.
	Worker    string
	ExtraArgs []string // passed through after the generated arguments
	API       Endpoint // where the miner should serve its stats API
	Devices   []int    // device indexes to mine on; empty means all
}

// Launch is how to start a miner: arguments, and optionally a config file
// that must be written to ConfigName in the miner's working directory first.
type Launch struct {
	Args       []string
	ConfigName string
	Config     []byte
}

// Validate reports the first field of fs that no adapter could use.
func (fs FlightSheet) Validate() error {
	if len(fs.Pools) == 0 {
		return configErr("pools: at least one pool is required")
	}
	for i, p := range fs.Pools {
		if strings.TrimSpace(p.URL) == "" {
			return configErr("pools[%d].url is empty", i)
		}
		if strings.ContainsAny(p.URL, " \t\r\n") {
			return configErr("pools[%d].url %q contains whitespace", i, p.URL)
		}
		if strings.TrimSpace(p.User) == "" {
			return configErr("pools[%d].user is empty", i)
		}
	}
	if strings.ContainsAny(fs.Worker, " \t\r\n.") {
		return configErr("worker %q must not contain spaces or dots", fs.Worker)
	}
	for i, d := range fs.Devices {
		if d < 0 {
			return configErr("devices[%d] = %d is negative", i, d)
		}
	}
	return fs.API.validate()
}

// login is the pool user with the worker name appended.
func (fs FlightSheet) login(p Pool) string {
	if fs.Worker == "" {
		return p.User
	}
	return p.User + "." + fs.Worker
}

func (fs FlightSheet) password(p Pool) string {
	if p.Password == "" {
		return "x"
	}
	return p.Password
}

func (fs FlightSheet) needAlgorithm() error {
	if strings.TrimSpace(fs.Algorithm) == "" {
		return configErr("algorithm is empty")
	}
	return nil
}

func (fs FlightSheet) deviceList(sep string) string {
	s := make([]string, len(fs.Devices))
	for i, d := range fs.Devices {
		s[i] = fmt.Sprint(d)
	}
	return strings.Join(s, sep)
}

func (fs FlightSheet) apiHost() string {
	if fs.API.Host == "" {
		return "127.0.0.1"
	}
	return fs.API.Host
}

// hostPort splits "stratum+tcp://host:port" for miners that want host and
// port apart. A URL without scheme is taken as host:port.
func hostPort(raw string) (string, error) {
	s := raw
	if !strings.Contains(s, "://") {
		s = "stratum+tcp://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Port() == "" {
		return "", configErr("pool url %q: want [scheme://]host:port", raw)
	}
	return u.Host, nil
}

// Options are what factories may need to build an adapter.
type Options struct {
	// Client fetches replies; nil means NewClient().
	Client *Client
	// Custom is the mapping for the "custom" adapter; other adapters
	// ignore it.
	Custom *CustomMapping
	// Algorithm is the flight sheet's algorithm. ASIC firmware of the
	// cgminer family names its rate fields "GHS"/"MHS" whatever it hashes;
	// when the miner does not name its model, the algorithm picks the
	// units (scrypt and X11: MH/s in GHS fields; Equihash: Sol/s in MHS).
	Algorithm string
}

func (o Options) client() *Client {
	if o.Client == nil {
		return NewClient()
	}
	return o.Client
}

// Factory builds an adapter.
type Factory func(Options) (Adapter, error)

// Registry maps adapter names to factories. Build one with Default or
// NewRegistry; there is no package-level registry.
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Default returns a registry with every built-in adapter: xmrig, wildrig,
// trex, lolminer, gminer, nbminer, nanominer, miniz, srbminer, rigel, the Claymore
// protocol (claymore, phoenixminer, ttminer), the ccminer text API (ccminer,
// cpuminer-opt), the cgminer API (cgminer, teamredminer, bmminer, bosminer,
// whatsminer) and custom.
func Default() *Registry {
	r := NewRegistry()
	for name, f := range map[string]Factory{
		"xmrig":        newXmrig,
		"wildrig":      newWildrig,
		"claymore":     claymoreFactory("claymore", claymoreArgs),
		"phoenixminer": claymoreFactory("phoenixminer", phoenixArgs),
		"ttminer":      claymoreFactory("ttminer", ttminerArgs),
		"ccminer":      ccminerFactory("ccminer", ccminerArgs, "threads", "pool", "hwinfo"),
		"cpuminer-opt": ccminerFactory("cpuminer-opt", cpuminerArgs, "threads"),
		"srbminer":     jsonMinerFactory(jsonMiner{name: "srbminer", path: "/", launch: srbminerArgs, parse: ParseSRBMiner}),
		"rigel":        jsonMinerFactory(jsonMiner{name: "rigel", path: "/", launch: rigelArgs, parse: ParseRigel}),
		"nbminer":      jsonMinerFactory(jsonMiner{name: "nbminer", path: "/api/v1/status", launch: nbminerArgs, parse: ParseNBMiner}),
		"nanominer":    jsonMinerFactory(jsonMiner{name: "nanominer", path: "/stats", launch: nanominerArgs, parse: ParseNanominer}),
		"miniz": jsonMinerFactory(jsonMiner{name: "miniz", request: []byte(`{"id":"0", "method":"getstat"}` + "\n"),
			launch: minizArgs, parse: ParseMiniZ}),
		"trex":         newTrex,
		"lolminer":     newLolminer,
		"gminer":       newGminer,
		"cgminer":      cgminerFactory(cgminerFlavour),
		"teamredminer": cgminerFactory(teamRedFlavour),
		"bmminer":      cgminerFactory(bmminerFlavour),
		"bosminer":     cgminerFactory(bosminerFlavour),
		"whatsminer":   cgminerFactory(whatsminerFlavour),
		"custom":       newCustom,
	} {
		_ = r.Register(name, f) // names above are distinct
	}
	return r
}

// Register adds a factory under name; a name can be registered once.
func (r *Registry) Register(name string, f Factory) error {
	if name == "" || f == nil {
		return configErr("register: empty name or nil factory")
	}
	if _, dup := r.factories[name]; dup {
		return configErr("adapter %q registered twice", name)
	}
	r.factories[name] = f
	return nil
}

// New builds the adapter registered under name.
func (r *Registry) New(name string, opts Options) (Adapter, error) {
	f, ok := r.factories[name]
	if !ok {
		return nil, configErr("unknown miner %q (known: %s)", name, strings.Join(r.Names(), ", "))
	}
	return f(opts)
}

// Names lists registered adapter names in sorted order.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
