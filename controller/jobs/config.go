package jobs

import (
	"fmt"
	"os"
)

// Config is the controller's jobs section.
type Config struct {
	RulePackDir   string `yaml:"rule_pack_dir" flag:"jobs-rule-pack-dir" help:"directory of extra self-healing rule packs (*.yaml) for controller jobs"`
	MaxConcurrent int    `yaml:"max_concurrent" flag:"jobs-max-concurrent" help:"most build jobs the controller runs at once (0 means 1); more wait their turn"`
}

// DefaultConfig runs one controller job at a time with the embedded packs.
func DefaultConfig() Config { return Config{MaxConcurrent: 1} }

// Validate names the bad setting.
func (c Config) Validate() error {
	if c.MaxConcurrent < 0 || c.MaxConcurrent > 64 {
		return fmt.Errorf("jobs.max_concurrent: %d is outside 1..64 (0 means 1)", c.MaxConcurrent)
	}
	if c.RulePackDir != "" {
		if st, err := os.Stat(c.RulePackDir); err != nil || !st.IsDir() {
			return fmt.Errorf("jobs.rule_pack_dir: %q is not a directory", c.RulePackDir)
		}
	}
	return nil
}
