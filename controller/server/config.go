package server

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/quarryfleet/quarry/controller/billing"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/gossipd"
	"github.com/quarryfleet/quarry/controller/jobs"
	"github.com/quarryfleet/quarry/controller/notify"
	"github.com/quarryfleet/quarry/controller/switcher"
)

// Config is every controller setting. Defaults let the controller run with
// no flags on one machine.
type Config struct {
	DataDir        string           `yaml:"data_dir" flag:"data-dir" help:"directory for the database, CA and local credentials"`
	GRPCAddr       string           `yaml:"grpc_addr" flag:"grpc-addr" help:"gRPC listen address for agents and quarryctl"`
	HTTPAddr       string           `yaml:"http_addr" flag:"http-addr" help:"HTTP listen address for health, metrics, dashboard and webhooks"`
	ServerNames    []string         `yaml:"server_names" flag:"server-names" help:"extra DNS names or IPs for the server certificate, comma-separated"`
	ReportInterval time.Duration    `yaml:"report_interval" flag:"report-interval" help:"how often agents report"`
	AgentCertTTL   time.Duration    `yaml:"agent_cert_ttl" flag:"agent-cert-ttl" help:"lifetime of rig certificates; agents renew at two thirds"`
	LocalToken     bool             `yaml:"local_token" flag:"local-token" help:"write a join token for an agent on this machine into the data dir"`
	MaxClockSkew   time.Duration    `yaml:"max_clock_skew" help:"how far ahead of the controller's clock a rig's report may be dated; later ones count as received now"`
	Audit          AuditConfig      `yaml:"audit"`
	MaxBatch       int              `yaml:"max_batch" help:"most reports committed in one database transaction"`
	CommitDelay    time.Duration    `yaml:"commit_delay" help:"how long a report waits for others to share its database commit and disk sync, at most 1s (0: commit at once)"`
	LogLevel       string           `yaml:"log_level" flag:"log-level" help:"debug, info, warn or error"`
	ShutdownGrace  time.Duration    `yaml:"shutdown_grace" help:"how long to wait for streams to drain on shutdown"`
	Jobs           jobs.Config      `yaml:"jobs"`
	Billing        billing.Settings `yaml:"billing"`
	Profit         switcher.Config  `yaml:"profit"`
	Web            WebConfig        `yaml:"web"`
	Gossip         gossipd.Config   `yaml:"gossip"`
	Notify         notify.Config    `yaml:"notify"`
	Cluster        ClusterConfig    `yaml:"cluster"`

	// clusterFast shortens the group's timings for tests in one process.
	clusterFast bool
}

// AuditConfig bounds the audit log.
type AuditConfig struct {
	MaxAge     time.Duration `yaml:"max_age" help:"audit entries older than this are dropped"`
	MaxEntries int           `yaml:"max_entries" help:"most audit entries kept; the oldest are dropped first"`
}

// DefaultConfig returns the zero-flag configuration.
func DefaultConfig() Config {
	return Config{
		DataDir:        "./quarry-data",
		GRPCAddr:       "127.0.0.1:7443",
		HTTPAddr:       "127.0.0.1:7080",
		ReportInterval: 10 * time.Second,
		AgentCertTTL:   24 * time.Hour,
		LocalToken:     true,
		MaxBatch:       4096,
		CommitDelay:    10 * time.Millisecond,
		MaxClockSkew:   fleet.DefaultMaxClockSkew,
		Audit:          AuditConfig{MaxAge: fleet.DefaultAuditMaxAge, MaxEntries: fleet.DefaultAuditMaxEntries},
		LogLevel:       "info",
		ShutdownGrace:  10 * time.Second,
		Jobs:           jobs.DefaultConfig(),
		Billing:        billing.DefaultSettings(),
		Profit:         switcher.DefaultConfig(),
		Web:            DefaultWebConfig(),
		Gossip:         gossipd.DefaultConfig(),
		Notify:         notify.DefaultConfig(),
		Cluster:        ClusterConfig{RaftMultiplier: 2},
	}
}

// Validate names the first bad setting of each kind.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
	}
	for name, addr := range map[string]string{"grpc_addr": c.GRPCAddr, "http_addr": c.HTTPAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port: %w", name, addr, err))
		}
	}
	if c.ReportInterval < time.Second {
		errs = append(errs, fmt.Errorf("report_interval: %s is below the 1s minimum", c.ReportInterval))
	}
	if c.AgentCertTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("agent_cert_ttl: %s is too short to renew in time", c.AgentCertTTL))
	}
	if err := c.Billing.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Profit.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxClockSkew < time.Second {
		errs = append(errs, fmt.Errorf("max_clock_skew: %s is below the 1s minimum", c.MaxClockSkew))
	}
	if c.Audit.MaxAge < time.Hour {
		errs = append(errs, fmt.Errorf("audit.max_age: %s is below the 1h minimum", c.Audit.MaxAge))
	}
	if c.Audit.MaxEntries < 1000 {
		errs = append(errs, fmt.Errorf("audit.max_entries: %d is below the minimum of 1000", c.Audit.MaxEntries))
	}
	if c.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("max_batch: must be at least 1, got %d", c.MaxBatch))
	}
	if c.CommitDelay < 0 || c.CommitDelay > time.Second {
		errs = append(errs, fmt.Errorf("commit_delay: %s is outside 0 to 1s", c.CommitDelay))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level: %q is not one of debug, info, warn, error", c.LogLevel))
	}
	if err := c.Jobs.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Web.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Gossip.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Notify.Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Cluster.validate()...)
	return errors.Join(errs...)
}
