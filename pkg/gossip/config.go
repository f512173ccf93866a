package gossip

import (
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// Profile names a set of failure-detection timings.
type Profile string

const (
	// ProfileLAN is serf's stock LAN configuration (memberlist DefaultLANConfig):
	// conservative, about 5-20 s to declare a node failed depending on size.
	ProfileLAN Profile = "lan"
	// ProfileTuned detects a dead rig within roughly 3 s in fleets of a few
	// hundred nodes while still riding out 5% packet loss without false
	// failures (see the benchmarks).
	ProfileTuned Profile = "tuned"
	// ProfileCustom starts from ProfileLAN and requires Config.Timings.
	ProfileCustom Profile = "custom"
)

// DefaultPort is serf's conventional LAN port; stock serf agents use it too.
const DefaultPort = 7946

// Timings overrides failure-detection and housekeeping timings. Zero fields
// keep the profile's value.
type Timings struct {
	GossipInterval          time.Duration
	GossipNodes             int
	ProbeInterval           time.Duration
	ProbeTimeout            time.Duration
	SuspicionMult           int
	SuspicionMaxTimeoutMult int
	TCPTimeout              time.Duration
	PushPullInterval        time.Duration
	ReapInterval            time.Duration
	ReconnectInterval       time.Duration
	ReconnectTimeout        time.Duration
	TombstoneTimeout        time.Duration
	LeavePropagateDelay     time.Duration
	BroadcastTimeout        time.Duration
	// QueryTimeoutMult scales serf's default query (and key operation)
	// timeout: GossipInterval × mult × ceil(log10(N+1)).
	QueryTimeoutMult int
}

// TunedTimings returns the timings of ProfileTuned.
//
// Memberlist's suspicion timeout is SuspicionMult × log10(N) × ProbeInterval
// at its minimum; with 250 ms probes and a multiplier of 3 that is ≈1.7 s at
// 200 nodes, leaving room for the probe round and gossip within 3 s. The probe
// timeout stays well above a 20 ms-per-hop WAN-ish delay so lossy links cause
// indirect probes, not suspicion.
func TunedTimings() Timings {
	return Timings{
		GossipInterval:          100 * time.Millisecond,
		GossipNodes:             4,
		ProbeInterval:           250 * time.Millisecond,
		ProbeTimeout:            150 * time.Millisecond,
		SuspicionMult:           3,
		SuspicionMaxTimeoutMult: 3,
		PushPullInterval:        15 * time.Second,
		ReconnectInterval:       5 * time.Second,
	}
}

// Backoff bounds the delay between join attempts.
type Backoff struct {
	Initial time.Duration // default 500ms
	Max     time.Duration // default 30s
}

// Config configures a Node. NodeName and Keys are required.
type Config struct {
	// NodeName is the rig id on agents and the controller id on controllers.
	NodeName string
	// BindAddr is the IP to listen on (default 0.0.0.0).
	BindAddr string
	// BindPort is the UDP+TCP port (default DefaultPort). Use -1 for a random
	// free port; Node.Addr reports the one chosen.
	BindPort int
	// AdvertiseAddr/AdvertisePort are what other nodes dial, for NAT.
	AdvertiseAddr string
	AdvertisePort int

	// Join lists host:port addresses tried in the background after Start
	// until one succeeds (see Node.Joined).
	Join        []string
	JoinBackoff Backoff

	Tags Tags

	// Keys are base64 AES keys (16, 24 or 32 bytes); the first is primary
	// (used to encrypt), the rest are accepted for decryption during rotation.
	Keys []string
	// KeyringFile, when set, persists keyring changes made through
	// SetKeyring; if it exists at start it wins over Keys so a restarted
	// node keeps a rotated key. Serf itself never writes it: keyring
	// queries from other members are undone, not persisted.
	KeyringFile string
	// KeyringCheck is how often the live keyring is compared with the one
	// this node holds to (default 500ms); serf's key queries also trigger
	// a check at once.
	KeyringCheck time.Duration
	// OnKeyringTamper, if set, is called (off the event loop) after a
	// keyring change by another member was undone.
	OnKeyringTamper func(KeyringTamper)

	Profile Profile
	Timings *Timings

	// Identity, when set (agents: the rig certificate's key), signs this
	// member's name, address and tags (TagSig) and its query answers, so
	// the controller can tell the rig from a node merely named after it.
	Identity crypto.Signer

	// SigningKey signs fleet events and queries (controller only).
	SigningKey ed25519.PrivateKey
	// TrustedKeys verify fleet events and queries (agents; more than one
	// while the controller key is rotated).
	TrustedKeys []ed25519.PublicKey
	// EventWindow is the maximum age of an accepted event (default 2m).
	EventWindow time.Duration
	// ClockSkew is how far in the future an event may be dated (default 30s).
	ClockSkew time.Duration
	// ReplayCacheSize bounds remembered event ids (default 4096).
	ReplayCacheSize int
	// FailureGrace holds a member's "failed" event this long and drops it
	// if the member is alive again by then (default 500ms; negative
	// reports at once). After a partition heals, memberlist accepts the
	// cut-off side's stale "dead" verdicts about healthy members until
	// they refute them a few gossip rounds later; without the grace those
	// healthy members would be reported failed.
	FailureGrace time.Duration

	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.BindAddr == "" {
		c.BindAddr = "0.0.0.0"
	}
	if c.BindPort == 0 {
		c.BindPort = DefaultPort
	}
	if c.Profile == "" {
		c.Profile = ProfileLAN
	}
	if c.JoinBackoff.Initial <= 0 {
		c.JoinBackoff.Initial = 500 * time.Millisecond
	}
	if c.JoinBackoff.Max <= 0 {
		c.JoinBackoff.Max = 30 * time.Second
	}
	if c.EventWindow <= 0 {
		c.EventWindow = 2 * time.Minute
	}
	if c.ClockSkew <= 0 {
		c.ClockSkew = 30 * time.Second
	}
	if c.ReplayCacheSize <= 0 {
		c.ReplayCacheSize = 4096
	}
	if c.KeyringCheck <= 0 {
		c.KeyringCheck = 500 * time.Millisecond
	}
	if c.FailureGrace == 0 {
		c.FailureGrace = 500 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first invalid field. It is called by New.
func (c *Config) Validate() error {
	if c.NodeName == "" {
		return errors.New("gossip: NodeName is required")
	}
	if ip := net.ParseIP(c.BindAddr); c.BindAddr != "" && ip == nil {
		return fmt.Errorf("gossip: BindAddr %q is not an IP address", c.BindAddr)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		return fmt.Errorf("gossip: AdvertiseAddr %q is not an IP address", c.AdvertiseAddr)
	}
	if c.BindPort < -1 || c.BindPort > 65535 {
		return fmt.Errorf("gossip: BindPort %d out of range", c.BindPort)
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return fmt.Errorf("gossip: AdvertisePort %d out of range", c.AdvertisePort)
	}
	if len(c.Keys) == 0 && c.KeyringFile == "" {
		return errors.New("gossip: Keys is required: unencrypted gossip is refused")
	}
	for i, k := range c.Keys {
		if _, err := DecodeKey(k); err != nil {
			return fmt.Errorf("gossip: Keys[%d]: %w", i, err)
		}
	}
	switch c.Profile {
	case "", ProfileLAN, ProfileTuned:
	case ProfileCustom:
		if c.Timings == nil {
			return errors.New("gossip: Profile custom needs Timings")
		}
	default:
		return fmt.Errorf("gossip: unknown Profile %q (want lan, tuned or custom)", c.Profile)
	}
	if c.SigningKey != nil && len(c.SigningKey) != ed25519.PrivateKeySize {
		return fmt.Errorf("gossip: SigningKey has %d bytes, want %d", len(c.SigningKey), ed25519.PrivateKeySize)
	}
	for i, k := range c.TrustedKeys {
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("gossip: TrustedKeys[%d] has %d bytes, want %d", i, len(k), ed25519.PublicKeySize)
		}
	}
	if err := c.Tags.validate(); err != nil {
		return fmt.Errorf("gossip: Tags: %w", err)
	}
	return nil
}

// serfConfig translates c (already defaulted and validated) to serf's config.
// onLog sees every line serf and memberlist log.
func (c *Config) serfConfig(keyring *memberlist.Keyring, events chan<- serf.Event, onLog func(string)) *serf.Config {
	sc := serf.DefaultConfig()
	sc.Init()
	sc.NodeName = c.NodeName
	sc.Tags = c.Tags.Map()
	sc.EventCh = events
	// Serf would persist keyring changes requested by any member; the node
	// persists only its own (see SetKeyring).
	sc.KeyringFile = ""
	sc.ValidateNodeNames = true
	sc.UserEventSizeLimit = 2048
	sc.QuerySizeLimit = 2048
	sc.QueryResponseSizeLimit = 1024

	mc := sc.MemberlistConfig
	mc.Name = c.NodeName
	mc.BindAddr = c.BindAddr
	mc.BindPort = c.BindPort
	if c.BindPort == -1 {
		mc.BindPort = 0
	}
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	mc.Keyring = keyring
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true

	var t Timings
	if c.Profile == ProfileTuned {
		t = TunedTimings()
	}
	if c.Timings != nil {
		t = mergeTimings(t, *c.Timings)
	}
	applyTimings(sc, t)

	lw := &logWriter{log: c.Logger.With("component", "serf", "node", c.NodeName), onLine: onLog}
	logger := newStdLogger(lw)
	sc.Logger = logger
	mc.Logger = logger
	return sc
}

func mergeTimings(base, over Timings) Timings {
	pick := func(b, o time.Duration) time.Duration {
		if o != 0 {
			return o
		}
		return b
	}
	pickI := func(b, o int) int {
		if o != 0 {
			return o
		}
		return b
	}
	return Timings{
		GossipInterval:          pick(base.GossipInterval, over.GossipInterval),
		GossipNodes:             pickI(base.GossipNodes, over.GossipNodes),
		ProbeInterval:           pick(base.ProbeInterval, over.ProbeInterval),
		ProbeTimeout:            pick(base.ProbeTimeout, over.ProbeTimeout),
		SuspicionMult:           pickI(base.SuspicionMult, over.SuspicionMult),
		SuspicionMaxTimeoutMult: pickI(base.SuspicionMaxTimeoutMult, over.SuspicionMaxTimeoutMult),
		TCPTimeout:              pick(base.TCPTimeout, over.TCPTimeout),
		PushPullInterval:        pick(base.PushPullInterval, over.PushPullInterval),
		ReapInterval:            pick(base.ReapInterval, over.ReapInterval),
		ReconnectInterval:       pick(base.ReconnectInterval, over.ReconnectInterval),
		ReconnectTimeout:        pick(base.ReconnectTimeout, over.ReconnectTimeout),
		TombstoneTimeout:        pick(base.TombstoneTimeout, over.TombstoneTimeout),
		LeavePropagateDelay:     pick(base.LeavePropagateDelay, over.LeavePropagateDelay),
		BroadcastTimeout:        pick(base.BroadcastTimeout, over.BroadcastTimeout),
		QueryTimeoutMult:        pickI(base.QueryTimeoutMult, over.QueryTimeoutMult),
	}
}

func applyTimings(sc *serf.Config, t Timings) {
	mc := sc.MemberlistConfig
	setD := func(dst *time.Duration, v time.Duration) {
		if v != 0 {
			*dst = v
		}
	}
	setI := func(dst *int, v int) {
		if v != 0 {
			*dst = v
		}
	}
	setD(&mc.GossipInterval, t.GossipInterval)
	setI(&mc.GossipNodes, t.GossipNodes)
	setD(&mc.ProbeInterval, t.ProbeInterval)
	setD(&mc.ProbeTimeout, t.ProbeTimeout)
	setI(&mc.SuspicionMult, t.SuspicionMult)
	setI(&mc.SuspicionMaxTimeoutMult, t.SuspicionMaxTimeoutMult)
	setD(&mc.TCPTimeout, t.TCPTimeout)
	setD(&mc.PushPullInterval, t.PushPullInterval)
	setD(&sc.ReapInterval, t.ReapInterval)
	setD(&sc.ReconnectInterval, t.ReconnectInterval)
	setD(&sc.ReconnectTimeout, t.ReconnectTimeout)
	setD(&sc.TombstoneTimeout, t.TombstoneTimeout)
	setD(&sc.LeavePropagateDelay, t.LeavePropagateDelay)
	setD(&sc.BroadcastTimeout, t.BroadcastTimeout)
	setI(&sc.QueryTimeoutMult, t.QueryTimeoutMult)
}
