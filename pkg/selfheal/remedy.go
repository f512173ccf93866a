package selfheal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Change is what one remediation did.
type Change struct {
	Description string `json:"description"`
	// Diff is a unified diff of every file edited, empty if none.
	Diff string `json:"diff,omitempty"`
	// Files lists paths edited (relative to the job dir) or removed.
	Files []string `json:"files,omitempty"`
}

// errNotApplicable means a rule matched but its remediation has nothing safe
// to do here; the engine then tries the next rule.
var errNotApplicable = errors.New("remediation not applicable")

// workspace is the mutable state of one job: its tree, the backup journal
// and the overrides remediations put on later builds.
type workspace struct {
	dir      string
	realDir  string // dir with symlinks resolved; every edit stays inside it
	monoRoot string
	journal  *journal
	env      map[string]string // added by set-env and run-whitelisted
	baseEnv  []string
	serial   bool // lower-parallelism applied
	runTool  func(ctx context.Context, argv []string, env []string) (string, int, error)
	fx       frameworkIndex

	diff  strings.Builder
	files []string
}

func (w *workspace) rel(p string) string {
	if inside(p, w.realDir) {
		if r, err := filepath.Rel(w.realDir, p); err == nil {
			return filepath.ToSlash(r)
		}
	}
	r, err := filepath.Rel(w.dir, p)
	if err != nil {
		return p
	}
	return filepath.ToSlash(r)
}

// errOutsideJobDir is a remediation that would read or write outside the
// job directory.
var errOutsideJobDir = errors.New("outside the job directory")

// confine resolves path's symlinks (those of its nearest existing parent
// when it does not exist yet) and returns the result if it lies inside the
// job directory; otherwise it refuses.
func (w *workspace) confine(path string) (string, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(w.dir, path)
	}
	real, err := resolveExisting(filepath.Clean(path))
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", path, err)
	}
	if !inside(real, w.realDir) {
		return "", fmt.Errorf("refused: %s resolves to %s, %w %s", path, real, errOutsideJobDir, w.realDir)
	}
	return real, nil
}

// resolveExisting is filepath.EvalSymlinks for a path whose last elements
// may not exist yet.
func resolveExisting(path string) (string, error) {
	rest := ""
	for p := path; ; {
		r, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return path, nil
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// inside reports whether path is below dir (not dir itself); both clean
// and absolute.
func inside(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// writeFile backs the file up, writes it atomically and records the diff.
// The file must resolve inside the job directory.
func (w *workspace) writeFile(path string, data []byte) error {
	path, err := w.confine(path)
	if err != nil {
		return err
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := w.journal.save(path); err != nil {
		return err
	}
	data = keepLineEndings(old, data)
	mode := fs.FileMode(0o644)
	owner, err := os.Stat(path)
	if err == nil {
		mode = owner.Mode().Perm()
	} else {
		owner, _ = os.Stat(filepath.Dir(path))
	}
	if err := writeFileAtomic(path, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// A controller that edits a job user's tree leaves the file that user's,
	// so its next build can still rewrite it.
	sameOwner(path, owner)
	w.diff.WriteString(UnifiedDiff(w.rel(path), string(old), string(data)))
	w.files = append(w.files, w.rel(path))
	return nil
}

// apply runs one closed-set action. Unknown actions never reach here.
func (w *workspace) apply(ctx context.Context, r *Rule, d Diagnostic) (Change, error) {
	w.diff.Reset()
	w.files = nil
	var desc string
	var err error
	switch r.Action {
	case ActionCsprojAddCompile:
		desc, err = w.addCompile(d)
	case ActionCsprojAddReference:
		desc, err = w.addReference(d)
	case ActionCsprojAddProjectRef:
		desc, err = w.addProjectReference(d)
	case ActionCsprojFixCase:
		desc, err = w.fixCompileCase(d)
	case ActionNuGetRestoreLocal:
		desc, err = w.restoreLocal(d)
	case ActionPackageRefRestore:
		desc, err = w.restorePackageReferences(d)
	case ActionCsprojRepointHint:
		desc, err = w.repointHintPath(d)
	case ActionCsprojSetFramework:
		desc, err = w.setFramework(d)
	case ActionXMLRepair:
		desc, err = w.repairXML(d)
	case ActionCleanOutput:
		desc, err = w.cleanOutput()
	case ActionLowerParallelism:
		if w.serial {
			return Change{}, fmt.Errorf("%w: already building with one job", errNotApplicable)
		}
		w.serial = true
		desc = "the compiler was killed for lack of memory; rebuilding with one job at a time (-j1, /m:1, MAKEFLAGS=-j1, CMAKE_BUILD_PARALLEL_LEVEL=1)"
	case ActionRunWhitelisted:
		desc, err = w.runWhitelisted(ctx, r.Params)
	case ActionSetEnv:
		desc, err = w.setEnv(r.Params)
	default:
		return Change{}, fmt.Errorf("action %q is not in the safe set", r.Action)
	}
	if err != nil {
		return Change{}, err
	}
	return Change{Description: desc, Diff: w.diff.String(), Files: w.files}, nil
}

// cleanOutput removes build output only where it is certainly build output:
// bin/ and obj/ beside a project file, and CMake's cache files.
func (w *workspace) cleanOutput() (string, error) {
	var removed []string
	const maxDepth = 4
	err := filepath.WalkDir(w.dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		depth := strings.Count(w.rel(p), "/")
		if de.IsDir() && p != w.dir && (strings.HasPrefix(de.Name(), ".") || depth >= maxDepth) {
			return filepath.SkipDir
		}
		name := de.Name()
		switch {
		case de.IsDir() && (name == "bin" || name == "obj") && hasProjectFile(filepath.Dir(p)):
		case de.IsDir() && name == "CMakeFiles":
		case !de.IsDir() && name == "CMakeCache.txt":
		default:
			return nil
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("remove %s: %w", p, err)
		}
		removed = append(removed, w.rel(p))
		if de.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("clean output: %w", err)
	}
	if len(removed) == 0 {
		return "", fmt.Errorf("%w: no bin/, obj/ or CMake cache to remove", errNotApplicable)
	}
	w.files = append(w.files, removed...)
	return "removed stale build output so it is regenerated: " + strings.Join(removed, ", "), nil
}

func hasProjectFile(dir string) bool {
	for _, pat := range []string{"*.csproj", "*.vbproj", "*.fsproj", "*.sln"} {
		if m, _ := filepath.Glob(filepath.Join(dir, pat)); len(m) > 0 {
			return true
		}
	}
	return false
}

// whitelist is the complete list of commands a rule may run; the rule names
// the command, never its arguments.
func whitelist(name string) ([]string, []string, bool) {
	switch strings.Join(strings.Fields(name), " ") {
	case "go mod tidy":
		return []string{"go", "mod", "tidy"}, []string{"GOFLAGS=-mod=mod"}, true
	case "go mod download":
		return []string{"go", "mod", "download"}, nil, true
	case "nuget restore":
		return []string{"nuget", "restore", "-NonInteractive"}, nil, true
	case "dotnet restore":
		return []string{"dotnet", "restore"}, nil, true
	}
	return nil, nil, false
}

func (w *workspace) runWhitelisted(ctx context.Context, params map[string]string) (string, error) {
	name := params["command"]
	argv, extraEnv, ok := whitelist(name)
	if !ok {
		return "", fmt.Errorf("command %q is not on the whitelist (go mod tidy, go mod download, nuget restore, dotnet restore); not run", name)
	}
	// Snapshot the files the tool rewrites so the change shows as a diff
	// and can be reverted.
	snap := map[string][]byte{}
	for _, f := range strings.Fields(params["snapshot"]) {
		p, err := w.confine(filepath.Join(w.dir, filepath.FromSlash(f)))
		if err != nil || filepath.IsAbs(filepath.FromSlash(f)) {
			return "", fmt.Errorf("snapshot path %q leaves the job directory; not run", f)
		}
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("snapshot %s: %w", f, err)
		}
		if err := w.journal.save(p); err != nil {
			return "", err
		}
		snap[p] = b
	}
	out, code, err := w.runTool(ctx, argv, append(w.environ(), extraEnv...))
	if err != nil {
		return "", fmt.Errorf("run %s: %w", strings.Join(argv, " "), err)
	}
	if code != 0 {
		return "", fmt.Errorf("%s exited %d: %s", strings.Join(argv, " "), code, tail(out, 2048))
	}
	keys := make([]string, 0, len(snap))
	for p := range snap {
		keys = append(keys, p)
	}
	sort.Strings(keys)
	for _, p := range keys {
		now, _ := os.ReadFile(p)
		if d := UnifiedDiff(w.rel(p), string(snap[p]), string(now)); d != "" {
			w.diff.WriteString(d)
			w.files = append(w.files, w.rel(p))
		}
	}
	return "ran whitelisted command: " + strings.Join(argv, " "), nil
}

var (
	boolRe   = regexp.MustCompile(`^(0|1|true|false)$`)
	countRe  = regexp.MustCompile(`^[0-9]{1,4}$`)
	localeRe = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)
	// goFlagsRe admits only go flags that change how modules are used,
	// never -toolexec, -exec, -overlay or -ldflags, which run or inject code.
	goFlagsRe = regexp.MustCompile(`^(-mod=(mod|readonly|vendor)|-modcacherw|-buildvcs=(true|false)|-trimpath|-p=[0-9]{1,3})( (-mod=(mod|readonly|vendor)|-modcacherw|-buildvcs=(true|false)|-trimpath|-p=[0-9]{1,3}))*$`)
	proxyRe   = regexp.MustCompile(`^(off|direct|https://[A-Za-z0-9.:/_~-]+)([,|](off|direct|https://[A-Za-z0-9.:/_~-]+))*$`)
)

// setEnvAllowed is every variable a set-env rule may set, with the values
// each may take: build knobs that cannot make a tool load or run other
// code. Anything else (PATH, LD_*, BASH_ENV, MAKEFLAGS, a GOFLAGS with
// -toolexec, ...) is refused.
var setEnvAllowed = map[string]*regexp.Regexp{
	"GOFLAGS":                           goFlagsRe,
	"GOPROXY":                           proxyRe,
	"GOTOOLCHAIN":                       regexp.MustCompile(`^local$`),
	"GO111MODULE":                       regexp.MustCompile(`^(on|off|auto)$`),
	"CGO_ENABLED":                       regexp.MustCompile(`^[01]$`),
	"GOMAXPROCS":                        countRe,
	"GOGC":                              regexp.MustCompile(`^([0-9]{1,4}|off)$`),
	"CMAKE_BUILD_PARALLEL_LEVEL":        countRe,
	"CMAKE_BUILD_TYPE":                  regexp.MustCompile(`^(Debug|Release|RelWithDebInfo|MinSizeRel)$`),
	"DOTNET_CLI_TELEMETRY_OPTOUT":       boolRe,
	"DOTNET_NOLOGO":                     boolRe,
	"DOTNET_SKIP_FIRST_TIME_EXPERIENCE": boolRe,
	"MSBUILDDISABLENODEREUSE":           boolRe,
	"NUGET_XMLDOC_MODE":                 regexp.MustCompile(`^(skip|none|compress)$`),
	"LANG":                              localeRe,
	"LC_ALL":                            localeRe,
	"SOURCE_DATE_EPOCH":                 regexp.MustCompile(`^[0-9]{1,12}$`),
}

// SetEnvAllowed lists the variables a set-env rule may set, sorted.
func SetEnvAllowed() []string {
	out := make([]string, 0, len(setEnvAllowed))
	for k := range setEnvAllowed {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (w *workspace) setEnv(params map[string]string) (string, error) {
	name, value := params["name"], params["value"]
	if !envKeyRe.MatchString(name) {
		return "", fmt.Errorf("set-env: %q is not a variable name", name)
	}
	re, ok := setEnvAllowed[name]
	if !ok {
		return "", fmt.Errorf("set-env: %s is not on the allowlist (%s); not set", name, strings.Join(SetEnvAllowed(), ", "))
	}
	if !re.MatchString(value) {
		return "", fmt.Errorf("set-env: %q is not an allowed value for %s; not set", value, name)
	}
	if cur, ok := w.env[name]; ok && cur == value {
		return "", fmt.Errorf("%w: %s is already %q", errNotApplicable, name, value)
	}
	w.env[name] = value
	return fmt.Sprintf("set %s=%s for the following builds", name, value), nil
}

func (w *workspace) environ() []string {
	env := append([]string(nil), w.baseEnv...)
	keys := make([]string, 0, len(w.env))
	for k := range w.env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+w.env[k])
	}
	if w.serial {
		env = append(env, "MAKEFLAGS=-j1", "CMAKE_BUILD_PARALLEL_LEVEL=1")
	}
	return env
}

var (
	jobsFlagRe  = regexp.MustCompile(`^(-j\d*|--jobs(=\d+)?|--parallel(=\d+)?)$`)
	msbuildMRe  = regexp.MustCompile(`(?i)^[/-](m|maxcpucount)(:\d+)?$`)
	shellJobsRe = regexp.MustCompile(`(\s)(-j\s*\d+|-j|--jobs(=|\s+)\d+|--parallel(=|\s+)\d+)(\s|$)`)
	shellMRe    = regexp.MustCompile(`(?i)(\s)[/-](m|maxcpucount)(:\d+)?(\s|$)`)
)

// serialStep rewrites a step to use one job when lower-parallelism applied.
func serialStep(s Step) Step {
	if s.Shell != "" {
		sh := shellJobsRe.ReplaceAllString(s.Shell, "${1}-j1${5}")
		sh = shellMRe.ReplaceAllString(sh, "${1}/m:1${4}")
		return Step{Shell: sh}
	}
	tool := filepath.Base(s.Argv[0])
	var argv []string
	skipNext := false
	for i, a := range s.Argv {
		if skipNext {
			skipNext = false
			continue
		}
		if i > 0 && jobsFlagRe.MatchString(a) {
			// "-j 8" and "--parallel 8" take the count as the next word.
			if (a == "-j" || a == "--parallel" || a == "--jobs") && i+1 < len(s.Argv) && isDigits(s.Argv[i+1]) {
				skipNext = true
			}
			continue
		}
		if i > 0 && msbuildMRe.MatchString(a) {
			continue
		}
		argv = append(argv, a)
	}
	switch tool {
	case "make", "gmake", "ninja":
		argv = append(argv, "-j1")
	case "msbuild", "dotnet":
		argv = append(argv, "/m:1")
	case "cmake":
		if contains(argv, "--build") {
			argv = append(argv, "--parallel", "1")
		}
	}
	return Step{Argv: argv}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
