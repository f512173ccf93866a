package jobs

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/quarryfleet/quarry/pkg/selfheal"
)

// DefaultWorkspace is where controller jobs' directories live unless
// jobs.workspace says otherwise: outside the controller's data dir.
const DefaultWorkspace = "/var/lib/quarry-jobs"

// Config is the controller's jobs section.
type Config struct {
	RulePackDir   string `yaml:"rule_pack_dir" flag:"jobs-rule-pack-dir" help:"directory of extra self-healing rule packs (*.yaml) for controller jobs"`
	MaxConcurrent int    `yaml:"max_concurrent" flag:"jobs-max-concurrent" help:"most build jobs the controller runs at once (0 means 1); more wait their turn"`
	// ControllerJobs is off by default: a build job runs whatever its spec
	// says, so running one on the controller is only allowed to admins and
	// only when turned on here.
	ControllerJobs bool   `yaml:"controller_jobs" flag:"jobs-controller-jobs" help:"allow build jobs on the controller itself (where: controller), for admins only; needs run_as"`
	RunAs          string `yaml:"run_as" flag:"jobs-run-as" help:"unprivileged user (name or uid) controller jobs run as; never root or the controller's own user"`
	Workspace      string `yaml:"workspace" flag:"jobs-workspace" help:"directory holding controller jobs' directories; must be outside data_dir"`
}

// DefaultConfig runs one controller job at a time with the embedded packs;
// jobs on the controller itself are off.
func DefaultConfig() Config { return Config{MaxConcurrent: 1, Workspace: DefaultWorkspace} }

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
	if c.ControllerJobs {
		if _, _, err := c.jobUser(); err != nil {
			return err
		}
		if strings.TrimSpace(c.Workspace) == "" {
			return errors.New("jobs.workspace: is required with jobs.controller_jobs")
		}
	}
	return nil
}

// jobUser resolves run_as to the unprivileged user controller jobs run as,
// refusing root and the controller's own user: either could read the data
// dir with its CA key and admin token. home is the user's home directory.
func (c Config) jobUser() (_ *selfheal.User, home string, _ error) {
	name := strings.TrimSpace(c.RunAs)
	if name == "" {
		return nil, "", errors.New("jobs.run_as: is required with jobs.controller_jobs (an unprivileged user such as nobody)")
	}
	u, err := user.Lookup(name)
	if err != nil {
		if u, err = user.LookupId(name); err != nil {
			return nil, "", fmt.Errorf("jobs.run_as: no user %q on this machine", name)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, "", fmt.Errorf("jobs.run_as: user %q has a non-numeric uid or gid", name)
	}
	switch {
	case uid == 0:
		return nil, "", fmt.Errorf("jobs.run_as: %q is root; controller jobs must run as an unprivileged user", name)
	case gid == 0:
		return nil, "", fmt.Errorf("jobs.run_as: %q has group root; controller jobs must run as an unprivileged user and group", name)
	case int(uid) == os.Geteuid():
		return nil, "", fmt.Errorf("jobs.run_as: %q is the controller's own user, which can read the data dir; use another unprivileged user", name)
	}
	return &selfheal.User{UID: uint32(uid), GID: uint32(gid)}, u.HomeDir, nil
}

// within reports whether path is dir or below it; both must be clean and
// absolute.
func within(path, dir string) bool {
	if path == dir {
		return true
	}
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// realPath resolves symlinks of path, or of its nearest existing parent
// when path does not exist yet.
func realPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	rest := ""
	for p := abs; ; {
		r, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}
