// Package agentd wires the rig agent together: configuration, enrollment,
// telemetry sampling into the durable buffer, the controller link, and the
// commands the controller may send.
package agentd

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
)

// Config is every agent setting. Defaults run against a controller on the
// same machine with no flags.
type Config struct {
	DataDir        string        `yaml:"data_dir" flag:"data-dir" help:"directory for the rig's identity, certificate and report buffer"`
	Controller     string        `yaml:"controller" flag:"controller" help:"controller gRPC address host:port, or several comma-separated: the agent moves between them when one is down or not the leader (default 127.0.0.1:7443 when controllers is empty too)"`
	Controllers    []string      `yaml:"controllers" help:"controller gRPC addresses host:port, tried after those of controller"`
	ServerName     string        `yaml:"server_name" flag:"server-name" help:"name to verify in the controller's certificate (default: host of the controller address dialled)"`
	Token          string        `yaml:"token" flag:"token" help:"join token from 'quarryctl token create', used once to enroll"`
	TokenFile      string        `yaml:"token_file" flag:"token-file" help:"file holding a join token, used when --token is empty"`
	ReportInterval time.Duration `yaml:"report_interval" flag:"report-interval" help:"report period; 0 takes the controller's setting"`
	BufferSize     int           `yaml:"buffer_size" flag:"buffer-size" help:"most unacknowledged reports kept while the controller is away"`
	LogLevel       string        `yaml:"log_level" flag:"log-level" help:"debug, info, warn or error"`
	Insecure       bool          `yaml:"insecure" help:"plaintext with a self-declared rig id (load benchmarks only)"`
	RigID          string        `yaml:"rig_id" help:"rig id to claim, only with insecure"`
	SysfsRoot      string        `yaml:"sysfs_root" flag:"path.sysfs" help:"sysfs mount point read for AMD GPUs and sensors (default /sys)"`
	ProcfsRoot     string        `yaml:"procfs_root" flag:"path.procfs" help:"procfs mount point read for host figures (default /proc)"`
	OCProfiles     string        `yaml:"oc_profiles" flag:"oc-profiles" help:"overclock profile file applied at start until the controller sends one"`
	CPUPowerW      float64       `yaml:"cpu_power_w" flag:"cpu-power-w" help:"CPU package power in watts, reported when RAPL cannot be read (no powercap, or a kernel that lets only root read it); 0 = unknown"`
	MinersDir      string        `yaml:"miners_dir" flag:"miners-dir" help:"directory of the miner binaries flight sheets may run; anything outside it (symlinks resolved), or any shell or interpreter, is refused"`
	Miners         MinersConfig  `yaml:"miners"`
	Gossip         GossipConfig  `yaml:"gossip"`
}

// DefaultConfig returns the zero-flag configuration.
func DefaultConfig() Config {
	return Config{
		DataDir:    "./quarry-agent-data",
		TokenFile:  "./quarry-data/agent.token",
		BufferSize: 100000,
		LogLevel:   "info",
		MinersDir:  flightsheet.DefaultMinersDir,
		Gossip:     DefaultGossipConfig(),
	}
}

// DefaultController is where the agent looks with no controller set: a
// controller on the same machine.
const DefaultController = "127.0.0.1:7443"

// ControllerAddrs is every configured controller address in order: those
// of controller (comma-separated), then those of controllers, without
// repeats; DefaultController when neither is set.
func (c Config) ControllerAddrs() []string {
	var out []string
	add := func(a string) {
		if a = strings.TrimSpace(a); a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for a := range strings.SplitSeq(c.Controller, ",") {
		add(a)
	}
	for _, a := range c.Controllers {
		add(a)
	}
	if len(out) == 0 {
		out = append(out, DefaultController)
	}
	return out
}

// Validate names the bad setting.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
	}
	addrs := c.ControllerAddrs()
	for _, a := range addrs {
		if err := link.CheckAddr(a); err != nil {
			errs = append(errs, fmt.Errorf("controller: %q is not host:port: %w", a, err))
		}
	}
	if len(addrs) > link.MaxControllers {
		errs = append(errs, fmt.Errorf("controllers: %d addresses, at most %d", len(addrs), link.MaxControllers))
	}
	if !(c.CPUPowerW >= 0 && c.CPUPowerW <= 10000) {
		errs = append(errs, fmt.Errorf("cpu_power_w: %v must be between 0 and 10000 watts", c.CPUPowerW))
	}
	if c.ReportInterval != 0 && c.ReportInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("report_interval: %s is too short", c.ReportInterval))
	}
	if c.MinersDir == "" || !filepath.IsAbs(c.MinersDir) {
		errs = append(errs, fmt.Errorf("miners_dir: %q must be an absolute path", c.MinersDir))
	}
	if c.BufferSize < 1 {
		errs = append(errs, fmt.Errorf("buffer_size: must be at least 1, got %d", c.BufferSize))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level: %q is not one of debug, info, warn, error", c.LogLevel))
	}
	if err := c.Miners.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Gossip.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Insecure && c.RigID == "" {
		errs = append(errs, errors.New("rig_id: required with insecure"))
	}
	return errors.Join(errs...)
}
