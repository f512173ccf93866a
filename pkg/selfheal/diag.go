package selfheal

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Diagnostic is one structured finding parsed from a build log.
type Diagnostic struct {
	Tool     string `json:"tool"` // csc, msbuild, nuget, cmake, gcc, ld, go
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Col      int    `json:"col,omitempty"`
	Code     string `json:"code,omitempty"`
	Severity string `json:"severity"` // error, warning, fatal
	Message  string `json:"message"`
	// Project is the MSBuild project named in a trailing "[...]".
	Project string `json:"project,omitempty"`
	// Subject is the thing the message is about (a type, an assembly, a
	// framework version, a package), pulled out so rules need not re-parse.
	Subject string `json:"subject,omitempty"`
}

// IsError reports whether the diagnostic fails a build.
func (d Diagnostic) IsError() bool { return d.Severity == "error" || d.Severity == "fatal" }

// String renders the diagnostic like a compiler would.
func (d Diagnostic) String() string {
	var b strings.Builder
	if d.File != "" {
		b.WriteString(d.File)
		if d.Line > 0 {
			b.WriteString(":" + strconv.Itoa(d.Line))
			if d.Col > 0 {
				b.WriteString(":" + strconv.Itoa(d.Col))
			}
		}
		b.WriteString(": ")
	}
	b.WriteString(d.Severity)
	if d.Code != "" {
		b.WriteString(" " + d.Code)
	}
	b.WriteString(": " + d.Message)
	return b.String()
}

// Log line shapes. Prefixes added by CI systems (timestamps, "1>", "##[error]")
// are stripped before these run.
var (
	// MSBuild canonical form, used by csc, mcs, msbuild, xbuild, dotnet and NuGet:
	//   Program.cs(9,25): error CS0246: msg [proj]
	//   C:\x\Microsoft.Common.CurrentVersion.targets(1124,5): Error MSB3644: msg
	//   D:\x\a.csproj : error NU1101: msg
	//   Uptime.csproj: error : msg
	//   CSC: error CS0518: msg
	//   error MSB3644: msg
	msbuildRe = regexp.MustCompile(`^(?:(?P<file>(?:[A-Za-z]:)?[^:]*?)(?:\((?P<line>\d+)(?:,(?P<col>\d+))?(?:,\d+,\d+)?\))?\s*:\s*)?(?i:(?P<sev>error|warning))\s*(?P<code>[A-Za-z]{2,4}\d{3,5})?\s*:\s*(?P<msg>.*)$`)
	projRe    = regexp.MustCompile(`^(.*?)\s+\[([^\[\]]+\.(?:csproj|vbproj|fsproj|proj|sln|targets|props|vcxproj|vsmanproj))\]\s*$`)
	// gcc/clang: file:line:col: error: msg (also without col).
	gccRe = regexp.MustCompile(`^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)? (?P<sev>fatal error|error|warning): (?P<msg>.*)$`)
	// go build / go vet: file.go:line:col: msg
	goRe        = regexp.MustCompile(`^(?P<file>[^\s:][^:]*\.go):(?P<line>\d+):(?P<col>\d+): (?P<msg>.*)$`)
	goSumRe     = regexp.MustCompile(`missing go\.sum entry (?:for module providing package (\S+)|for go\.mod file)`)
	goNoModRe   = regexp.MustCompile(`no required module provides package (\S+?);`)
	undefRefRe  = regexp.MustCompile("^(?:(?P<file>[^\\s:][^:]*):(?:\\([^)]*\\)|\\d+):\\s*)?undefined reference to [`'‘\"](?P<sym>[^'’\"]+)['’\"]")
	noLibRe     = regexp.MustCompile(`(?:^|\s)(?:/\S*ld|ld)(?:\.\w+)?: cannot find -l(?P<lib>[^\s:]+)`)
	collect2Re  = regexp.MustCompile(`collect2(?:\.exe)?: (?:fatal )?error: ld returned (\d+) exit status`)
	oomRe       = regexp.MustCompile(`(?:fatal error: \S+ signal terminated program (?P<prog>cc1plus|cc1|lto1|cc1obj|as|ld)|internal compiler error: Killed)`)
	cmakeAtRe   = regexp.MustCompile(`^CMake (Error|Warning)(?: \(dev\))? at (?P<file>[^:]+):(?P<line>\d+)`)
	cmakeNFRe   = regexp.MustCompile(`^(?P<status>--\s*)?.*Could NOT find (?P<pkg>[A-Za-z0-9_.+-]+)(?:\s*\(missing:\s*(?P<missing>[^)]*)\))?`)
	cmakeCfgRe  = regexp.MustCompile(`By not providing "Find(?P<pkg>[^"]+)\.cmake"`)
	cmakeCallRe = regexp.MustCompile(`^\s+(?P<file>\S+):(?P<line>\d+) \(find_package\)`)
	prefixRe    = regexp.MustCompile(`^(?:\d{4}-\d\d-\d\dT[\d:.]+Z\s+)?(?:##\[(?:error|warning)\])?(?:\s*\d+>)?`)
	// Mono and Roslyn quote names differently: `Name' vs 'Name'.
	quotedRe = regexp.MustCompile("[`'‘\"]([^`'’\"]+)['’\"]")
)

// maxParseLine keeps one pathological line (minified output, binary junk)
// from costing more than it is worth.
const maxParseLine = 64 << 10

// ParseLog turns build output into diagnostics, in order of first
// appearance and without duplicates (MSBuild prints every error twice).
func ParseLog(log string) []Diagnostic {
	var out []Diagnostic
	seen := map[string]bool{}
	var ctx projectContext
	add := func(d Diagnostic) {
		d.Subject = subjectOf(d)
		if d.Project == "" && (d.Tool == "csc" || d.Tool == "msbuild" || d.Tool == "nuget") {
			d.Project = ctx.current()
		}
		k := d.Tool + "\x00" + d.File + "\x00" + strconv.Itoa(d.Line) + "\x00" + strconv.Itoa(d.Col) + "\x00" + d.Code + "\x00" + d.Message + "\x00" + d.Project
		if seen[k] {
			return
		}
		seen[k] = true
		out = append(out, d)
	}
	lines := splitLines(log)
	var cmakeFile string
	var cmakeLine int
	cmakeSev := "error"
	for i, raw := range lines {
		ln := strings.TrimRight(prefixRe.ReplaceAllString(raw, ""), "\r")
		t := strings.TrimSpace(ln)
		if ctx.observe(t) {
			continue
		}
		if t == "" || !mayBeDiagnostic(t) {
			continue
		}
		if m := cmakeAtRe.FindStringSubmatch(t); m != nil {
			cmakeFile, cmakeLine = m[2], atoi(m[3])
			cmakeSev = strings.ToLower(m[1])
			continue
		}
		if m := cmakeCfgRe.FindStringSubmatch(t); m != nil {
			add(Diagnostic{Tool: "cmake", File: cmakeFile, Line: cmakeLine, Code: "package-config-not-found",
				Severity: cmakeSev, Message: "could not find a package configuration file provided by " + strconv.Quote(m[1]), Subject: m[1]})
			continue
		}
		if m := cmakeNFRe.FindStringSubmatch(t); m != nil {
			d := Diagnostic{Tool: "cmake", Code: "package-not-found", Severity: "error", Message: strings.TrimSpace(strings.TrimPrefix(t, "--")), Subject: m[2]}
			if m[1] != "" {
				d.Severity = "warning"
			}
			// The call site is in the stack trace below, not in "CMake Error at".
			for j := i + 1; j < len(lines) && j < i+12; j++ {
				if c := cmakeCallRe.FindStringSubmatch(lines[j]); c != nil {
					d.File, d.Line = c[1], atoi(c[2])
					break
				}
			}
			if d.File == "" && cmakeFile != "" {
				d.File, d.Line = cmakeFile, cmakeLine
			}
			add(d)
			continue
		}
		if m := oomRe.FindStringSubmatch(t); m != nil {
			prog := m[1]
			if prog == "" {
				prog = "cc1plus"
			}
			add(Diagnostic{Tool: "gcc", Code: "oom-killed", Severity: "fatal", Message: t, Subject: prog})
			continue
		}
		if m := collect2Re.FindStringSubmatch(t); m != nil {
			add(Diagnostic{Tool: "ld", Code: "ld-failed", Severity: "error", Message: t})
			continue
		}
		if m := noLibRe.FindStringSubmatch(t); m != nil {
			add(Diagnostic{Tool: "ld", Code: "missing-library", Severity: "error", Message: t, Subject: m[1]})
			continue
		}
		if m := undefRefRe.FindStringSubmatch(t); m != nil {
			add(Diagnostic{Tool: "ld", File: m[1], Code: "undefined-reference", Severity: "error", Message: "undefined reference to " + m[2], Subject: m[2]})
			continue
		}
		if m := goRe.FindStringSubmatch(t); m != nil {
			d := Diagnostic{Tool: "go", File: m[1], Line: atoi(m[2]), Col: atoi(m[3]), Severity: "error", Message: m[4]}
			if g := goSumRe.FindStringSubmatch(m[4]); g != nil {
				d.Code, d.Subject = "missing-go-sum", g[1]
			} else if g := goNoModRe.FindStringSubmatch(m[4]); g != nil {
				d.Code, d.Subject = "missing-module", g[1]
			}
			add(d)
			continue
		}
		if g := goSumRe.FindStringSubmatch(t); g != nil && strings.HasPrefix(t, "go: ") {
			add(Diagnostic{Tool: "go", Code: "missing-go-sum", Severity: "error", Message: strings.TrimPrefix(t, "go: "), Subject: g[1]})
			continue
		}
		if m := gccRe.FindStringSubmatch(t); m != nil && !strings.HasSuffix(m[1], ".go") {
			sev := m[4]
			if sev == "fatal error" {
				sev = "fatal"
			}
			add(Diagnostic{Tool: "gcc", File: m[1], Line: atoi(m[2]), Col: atoi(m[3]), Severity: sev, Message: m[5]})
			continue
		}
		if d, ok := parseMSBuild(t); ok {
			add(d)
		}
	}
	return out
}

// projectContext follows which project MSBuild or xbuild is building, so a
// diagnostic printed with a path relative to its project (xbuild names no
// project on the line) is attributed to it. At normal verbosity both print
// `Project "X" (default target(s)):` ... `Done building project "X"`, and
// the error summary names the project in an `X (default targets) ->` line.
type projectContext struct {
	stack   []string
	summary string
}

var (
	ctxStartRe   = regexp.MustCompile(`^Project "([^"]+)" \(.*\):$`)
	ctxDoneRe    = regexp.MustCompile(`^Done building project "([^"]+)"`)
	ctxSummaryRe = regexp.MustCompile(`^(\S.*?) \([^()]*targets?\) ->$`)
	projExtRe    = regexp.MustCompile(`(?i)\.(cs|vb|fs)proj$`)
)

// observe consumes a context line and reports whether t was one.
func (c *projectContext) observe(t string) bool {
	if !strings.HasPrefix(t, "Project \"") && !strings.HasPrefix(t, "Done building project") && !strings.HasSuffix(t, "->") {
		return false
	}
	if m := ctxStartRe.FindStringSubmatch(t); m != nil {
		c.stack = append(c.stack, m[1])
		return true
	}
	if m := ctxDoneRe.FindStringSubmatch(t); m != nil {
		for i := len(c.stack) - 1; i >= 0; i-- {
			if c.stack[i] == m[1] {
				c.stack = c.stack[:i]
				break
			}
		}
		return true
	}
	if m := ctxSummaryRe.FindStringSubmatch(t); m != nil {
		if projExtRe.MatchString(m[1]) {
			c.summary = m[1]
		}
		return true
	}
	return false
}

// current is the innermost project file (not a solution) being built.
func (c *projectContext) current() string {
	for i := len(c.stack) - 1; i >= 0; i-- {
		if projExtRe.MatchString(c.stack[i]) {
			return c.stack[i]
		}
	}
	return c.summary
}

// mayBeDiagnostic is a cheap filter: most build output is progress chatter,
// and running every pattern over it dominates parsing time.
func mayBeDiagnostic(t string) bool {
	for _, k := range []string{"rror", "arning", "ERROR", "WARNING", ".go:", "Could NOT find", "By not providing", "undefined reference", "cannot find -l", "Killed", "collect2"} {
		if strings.Contains(t, k) {
			return true
		}
	}
	return false
}

func parseMSBuild(t string) (Diagnostic, bool) {
	m := msbuildRe.FindStringSubmatch(t)
	if m == nil {
		return Diagnostic{}, false
	}
	file := strings.TrimSpace(m[1])
	code := strings.ToUpper(m[5])
	// Without a code and a file, "error: x" is too generic to attribute to MSBuild.
	if code == "" && file == "" {
		return Diagnostic{}, false
	}
	// Guard against prose such as "Build error: ..." by requiring a path-like file.
	if file != "" && strings.ContainsAny(file, " \t") && !strings.ContainsAny(file, `\/`) {
		return Diagnostic{}, false
	}
	d := Diagnostic{File: file, Line: atoi(m[2]), Col: atoi(m[3]), Code: code, Severity: strings.ToLower(m[4]), Message: strings.TrimSpace(m[6])}
	if p := projRe.FindStringSubmatch(d.Message); p != nil {
		d.Message, d.Project = strings.TrimSpace(p[1]), p[2]
	}
	switch {
	case strings.HasPrefix(code, "CS"):
		d.Tool = "csc"
	case strings.HasPrefix(code, "NU"):
		d.Tool = "nuget"
	default:
		d.Tool = "msbuild"
	}
	if d.File == "CSC" {
		d.File = ""
	}
	return d, true
}

var (
	fwVersionRe  = regexp.MustCompile(`(?:TargetFrameworkVersion '|Version=)(v\d+(?:\.\d+)*)`)
	nuPkgRe      = regexp.MustCompile(`Unable to find package '?([^\s.']+(?:\.[^\s.']+)*?)'?(?:\.\s|\s|$)`)
	missingRefRe = regexp.MustCompile("(?:Are you missing [`'‘]([^'’]+)['’] assembly reference|Consider adding a reference to assembly [`'‘]([^,'’]+))")
	notResolvRe  = regexp.MustCompile(`^Reference '([^']+)' not resolved`)
)

// subjectOf pulls the entity a rule needs out of the message.
func subjectOf(d Diagnostic) string {
	if d.Subject != "" {
		return d.Subject
	}
	q := quotedRe.FindAllStringSubmatch(d.Message, -1)
	switch d.Code {
	case "CS0246", "CS0103", "CS0426":
		if len(q) > 0 {
			return q[0][1]
		}
	case "CS0234", "CS0012":
		if m := missingRefRe.FindStringSubmatch(d.Message); m != nil {
			return m[1] + m[2]
		}
		if len(q) >= 2 {
			return q[1][1] + "." + q[0][1]
		}
	case "CS2001", "CS0009":
		if len(q) > 0 {
			return q[0][1]
		}
	case "MSB3245", "MSB3246":
		if len(q) > 0 {
			name, _, _ := strings.Cut(q[0][1], ",")
			return strings.TrimSpace(name)
		}
	case "MSB3644":
		if m := fwVersionRe.FindStringSubmatch(d.Message); m != nil {
			return m[1]
		}
	case "NU1101", "NU1102", "NU1103":
		if m := nuPkgRe.FindStringSubmatch(d.Message); m != nil {
			return m[1]
		}
	case "":
		if m := notResolvRe.FindStringSubmatch(d.Message); m != nil {
			name, _, _ := strings.Cut(m[1], ",")
			return strings.TrimSpace(name)
		}
		if d.Tool == "msbuild" {
			if m := fwVersionRe.FindStringSubmatch(d.Message); m != nil {
				return m[1]
			}
		}
	}
	return ""
}

func splitLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 4096), maxParseLine)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	// A line longer than maxParseLine stops the scanner; the rest is still
	// worth a look, so fall back to a plain split of what remains.
	if sc.Err() != nil {
		for _, l := range strings.Split(s, "\n") {
			if len(l) > maxParseLine {
				l = l[:maxParseLine]
			}
			out = append(out, l)
		}
	}
	return out
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}

var (
	tmpNameRe = regexp.MustCompile(`/tmp/[^\s:'"]+`)
	hexRe     = regexp.MustCompile(`0x[0-9a-fA-F]+`)
	spaceRe   = regexp.MustCompile(`\s+`)
)

// Fingerprint identifies a failure independent of where the tree lives and
// of temporary names, so that the same failure after a remediation is
// recognised. Only errors count; warnings come and go with remediations.
func Fingerprint(ds []Diagnostic) string {
	var keys []string
	for _, d := range ds {
		if !d.IsError() {
			continue
		}
		msg := tmpNameRe.ReplaceAllString(d.Message, "TMP")
		msg = hexRe.ReplaceAllString(msg, "0x")
		msg = spaceRe.ReplaceAllString(msg, " ")
		file := path.Base(strings.ReplaceAll(d.File, `\`, "/"))
		keys = append(keys, strings.Join([]string{d.Tool, d.Code, file, strconv.Itoa(d.Line), msg}, "|"))
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
