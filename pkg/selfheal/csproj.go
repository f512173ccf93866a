package selfheal

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Project files are edited as text, never re-serialised, so that a fix is a
// one-line diff a person can review and the rest of the file is untouched.

// findProject picks the project a diagnostic belongs to and refuses one
// that resolves outside the job directory (a "../" path in the build output
// or a symlinked project file): remediations read and edit only the job's
// own tree.
func (w *workspace) findProject(d Diagnostic) (string, error) {
	p, err := w.projectCandidate(d)
	if err != nil {
		return "", err
	}
	return w.confine(p)
}

// projectInTree is findProject for rules that also need the scanned tree:
// the tree is walked once, for both.
func (w *workspace) projectInTree(d Diagnostic) (string, *csTree, *csProject, error) {
	tree, err := scanTree(w.realDir)
	if err != nil {
		return "", nil, nil, err
	}
	p, err := w.projectCandidateIn(d, tree)
	if err != nil {
		return "", nil, nil, err
	}
	if p, err = w.confine(p); err != nil {
		return "", nil, nil, err
	}
	self := tree.projectAt(p)
	if self == nil {
		return "", nil, nil, fmt.Errorf("%w: %s was not found in the tree", errNotApplicable, w.rel(p))
	}
	return p, tree, self, nil
}

func (w *workspace) projectCandidate(d Diagnostic) (string, error) {
	return w.projectCandidateIn(d, nil)
}

// projectCandidateIn finds the diagnostic's project, scanning the tree only
// when it needs one and none was given.
func (w *workspace) projectCandidateIn(d Diagnostic, tree *csTree) (string, error) {
	if d.Project != "" {
		p := filepath.FromSlash(strings.ReplaceAll(d.Project, `\`, "/"))
		if !filepath.IsAbs(p) {
			p = filepath.Join(w.dir, p)
		}
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if strings.HasSuffix(strings.ToLower(d.File), "proj") {
		p := d.File
		if !filepath.IsAbs(p) {
			p = filepath.Join(w.dir, p)
		}
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if tree == nil {
		var err error
		if tree, err = scanTree(w.realDir); err != nil {
			return "", err
		}
	}
	switch len(tree.projects) {
	case 0:
		return "", fmt.Errorf("%w: no .csproj in %s", errNotApplicable, w.dir)
	case 1:
		return tree.projects[0].path, nil
	}
	// Several projects and no project named: xbuild at minimal verbosity
	// prints the file relative to its project, so the project is the one
	// whose folder holds that relative path, preferring one that lists it.
	if d.File == "" {
		return "", fmt.Errorf("%w: %d projects and the diagnostic names neither a project nor a file; build at normal verbosity so the project is named", errNotApplicable, len(tree.projects))
	}
	rel := filepath.FromSlash(strings.ReplaceAll(d.File, `\`, "/"))
	if filepath.IsAbs(rel) {
		if p := tree.projectOf(filepath.Clean(rel)); p != nil {
			return p.path, nil
		}
	}
	var holds, lists []*csProject
	for _, p := range tree.projects {
		f := rel
		if !filepath.IsAbs(f) {
			f = filepath.Join(p.dir, rel)
		}
		if _, err := os.Stat(f); err != nil {
			continue
		}
		holds = append(holds, p)
		if p.compiles[strings.ToLower(f)] {
			lists = append(lists, p)
		}
	}
	switch {
	case len(lists) == 1:
		return lists[0].path, nil
	case len(holds) == 1:
		return holds[0].path, nil
	}
	// Same relative name in several projects: the one whose file has the
	// name the compiler could not resolve at the line and column it gave.
	if name, _ := typeSubject(d.Subject); name != "" && d.Line > 0 {
		if i := strings.LastIndexByte(d.Subject, '.'); d.Code == "CS0234" && i >= 0 {
			name = d.Subject[i+1:]
		}
		var at []*csProject
		for _, p := range holds {
			if tokenAt(filepath.Join(p.dir, rel), d.Line, d.Col, name) {
				at = append(at, p)
			}
		}
		if len(at) == 1 {
			return at[0].path, nil
		}
	}
	return "", fmt.Errorf("%w: %d projects hold %s and the log does not say which one failed; build at normal verbosity so the project is named", errNotApplicable, len(holds), d.File)
}

var (
	compileItemRe = regexp.MustCompile(`(?m)^([ \t]*)<Compile\s+Include="([^"]+)"[^>]*/?>.*$`)
	refItemRe     = regexp.MustCompile(`(?m)^([ \t]*)<Reference\s+Include="([^"]+)"[^>]*/?>.*$`)
	importRe      = regexp.MustCompile(`(?m)^[ \t]*<Import\s`)
	projectEndRe  = regexp.MustCompile(`(?m)^[ \t]*</Project>`)
)

// insertItem adds line after the last match of itemRe, or in a new
// ItemGroup before the first Import (or </Project>).
func insertItem(src string, itemRe *regexp.Regexp, item string) (string, error) {
	if locs := itemRe.FindAllStringSubmatchIndex(src, -1); len(locs) > 0 {
		last := locs[len(locs)-1]
		indent := src[last[2]:last[3]]
		// Items with metadata end on a later line; insert after their close tag.
		end := last[1]
		line := src[last[0]:last[1]]
		if !strings.Contains(line, "/>") && !strings.Contains(line, "</") {
			name := strings.Fields(strings.TrimSpace(line))[0][1:]
			if i := strings.Index(src[end:], "</"+name+">"); i >= 0 {
				end += i + len("</"+name+">")
				if nl := strings.IndexByte(src[end:], '\n'); nl >= 0 {
					end += nl
				}
			}
		}
		return src[:end] + "\n" + indent + item + src[end:], nil
	}
	loc := importRe.FindStringIndex(src)
	if loc == nil {
		loc = projectEndRe.FindStringIndex(src)
	}
	if loc == nil {
		return "", fmt.Errorf("%w: project has no Import or </Project> to anchor a new ItemGroup", errNotApplicable)
	}
	group := "  <ItemGroup>\n    " + item + "\n  </ItemGroup>\n"
	return src[:loc[0]] + group + src[loc[0]:], nil
}

var lineCommentRe = regexp.MustCompile(`(?m)//.*$`)

// stripComments keeps a commented-out class from counting as a definition.
func stripComments(b []byte) []byte {
	s := lineCommentRe.ReplaceAll(b, nil)
	for {
		i := strings.Index(string(s), "/*")
		if i < 0 {
			return s
		}
		j := strings.Index(string(s[i:]), "*/")
		if j < 0 {
			return s[:i]
		}
		s = append(s[:i:i], s[i+j+2:]...)
	}
}

func xmlAttr(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return strings.ReplaceAll(b.String(), `"`, "&#34;")
}

var frameworkRe = regexp.MustCompile(`<TargetFrameworkVersion>\s*(v[0-9.]+)\s*</TargetFrameworkVersion>`)

// addReference adds a framework assembly reference, for the assembly the
// installed reference assemblies say defines the missing namespace.
func (w *workspace) addReference(d Diagnostic) (string, error) {
	subject := d.Subject
	if subject == "" || strings.ContainsAny(subject, `/\"<>`) {
		return "", fmt.Errorf("%w: diagnostic names no namespace or assembly", errNotApplicable)
	}
	proj, err := w.findProject(d)
	if err != nil {
		return "", err
	}
	src, err := os.ReadFile(proj)
	if err != nil {
		return "", fmt.Errorf("read project: %w", err)
	}
	referenced := map[string]bool{}
	for _, m := range refItemRe.FindAllStringSubmatch(string(src), -1) {
		n, _, _ := strings.Cut(m[2], ",")
		referenced[strings.ToLower(strings.TrimSpace(n))] = true
	}
	dirs := w.apiDirs(string(src))
	if len(dirs) == 0 {
		return "", fmt.Errorf("%w: no reference assemblies installed under %s", errNotApplicable, w.monoRoot)
	}
	dir := dirs[0]
	var asm, why string
	if m := missingRefRe.FindStringSubmatch(d.Message); m != nil {
		// The compiler named the assembly itself.
		asm = m[1] + m[2]
		if _, err := os.Stat(filepath.Join(dir, asm+".dll")); err != nil {
			return "", fmt.Errorf("%w: %s.dll is not a framework assembly in %s", errNotApplicable, asm, dir)
		}
		why = "the compiler asked for it"
	} else {
		file := w.diagSource(d, proj)
		ns := usingNamespace(file, d.Line, subject)
		var cands []string
		for _, a := range w.fx.lookup(dir, ns) {
			if !referenced[strings.ToLower(a)] && !strings.EqualFold(a, "mscorlib") {
				cands = append(cands, a)
			}
		}
		if len(cands) > 1 {
			// Several assemblies add types to the namespace: keep those
			// defining a type the failing file names.
			cands = definingUsedTypes(file, cands, w.fx.types(dir, ns))
		}
		switch len(cands) {
		case 0:
			return "", fmt.Errorf("%w: no unreferenced assembly in %s defines namespace %s", errNotApplicable, dir, ns)
		case 1:
		default:
			return "", fmt.Errorf("%w: namespace %s is defined in several framework assemblies (%s); a person must choose", errNotApplicable, ns, strings.Join(cands, ", "))
		}
		asm = cands[0]
		why = "its reference assembly defines namespace " + ns
	}
	if referenced[strings.ToLower(asm)] {
		return "", fmt.Errorf("%w: %s is already referenced", errNotApplicable, asm)
	}
	out, err := insertItem(string(src), refItemRe, `<Reference Include="`+xmlAttr(asm)+`" />`)
	if err != nil {
		return "", err
	}
	if err := w.writeFile(proj, []byte(out)); err != nil {
		return "", err
	}
	return fmt.Sprintf("the code uses %s from framework assembly %s (%s, in %s), which the project did not reference; added <Reference Include=%q /> to %s", subject, asm, why, dir, asm, w.rel(proj)), nil
}

// usingNamespace returns the namespace of the using directive on line of
// file when it starts with subject (the compiler names only the first
// missing part), else subject.
func usingNamespace(file string, line int, subject string) string {
	b, err := os.ReadFile(file)
	if err != nil || line < 1 {
		return subject
	}
	lines := strings.Split(string(b), "\n")
	if line > len(lines) {
		return subject
	}
	if m := usingRe.FindStringSubmatch(lines[line-1]); m != nil && (m[1] == subject || strings.HasPrefix(m[1], subject+".")) {
		return m[1]
	}
	return subject
}

// apiDirs lists reference-assembly dirs, the project's framework first.
func (w *workspace) apiDirs(projSrc string) []string {
	var dirs []string
	if m := frameworkRe.FindStringSubmatch(projSrc); m != nil {
		dirs = append(dirs, filepath.Join(w.monoRoot, strings.TrimPrefix(m[1], "v")+"-api"))
	}
	for _, v := range installedFrameworks(w.monoRoot) {
		dirs = append(dirs, filepath.Join(w.monoRoot, strings.TrimPrefix(v, "v")+"-api"))
	}
	return dirs
}

// installedFrameworks reads mono's <ver>-api directories, newest first.
func installedFrameworks(monoRoot string) []string {
	ents, err := os.ReadDir(monoRoot)
	if err != nil {
		return nil
	}
	var vs []string
	for _, e := range ents {
		v, ok := strings.CutSuffix(e.Name(), "-api")
		if !ok || !e.IsDir() || parseVersion(v) == nil {
			continue
		}
		// An api dir without mscorlib is a stub and cannot be compiled against.
		if _, err := os.Stat(filepath.Join(monoRoot, e.Name(), "mscorlib.dll")); err != nil {
			continue
		}
		vs = append(vs, "v"+v)
	}
	sort.Slice(vs, func(i, j int) bool { return compareVersions(vs[i], vs[j]) > 0 })
	return vs
}

func parseVersion(v string) []int {
	v = strings.TrimPrefix(v, "v")
	parts := strings.Split(v, ".")
	out := make([]int, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil
		}
		out = append(out, n)
	}
	return out
}

func compareVersions(a, b string) int {
	pa, pb := parseVersion(a), parseVersion(b)
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// setFramework retargets to the closest installed framework: the newest not
// above the requested one (an API subset is most likely to compile), else
// the oldest above it.
func (w *workspace) setFramework(d Diagnostic) (string, error) {
	proj, err := w.findProject(d)
	if err != nil {
		return "", err
	}
	src, err := os.ReadFile(proj)
	if err != nil {
		return "", fmt.Errorf("read project: %w", err)
	}
	m := frameworkRe.FindSubmatchIndex(src)
	if m == nil {
		return "", fmt.Errorf("%w: %s has no TargetFrameworkVersion", errNotApplicable, w.rel(proj))
	}
	want := string(src[m[2]:m[3]])
	installed := installedFrameworks(w.monoRoot)
	if len(installed) == 0 {
		return "", fmt.Errorf("%w: no frameworks installed under %s", errNotApplicable, w.monoRoot)
	}
	if contains(installed, want) {
		return "", fmt.Errorf("%w: %s is installed; the failure has another cause", errNotApplicable, want)
	}
	pick := ""
	for _, v := range installed { // newest first
		if compareVersions(v, want) < 0 {
			pick = v
			break
		}
	}
	if pick == "" {
		pick = installed[len(installed)-1]
	}
	out := string(src[:m[2]]) + pick + string(src[m[3]:])
	if err := w.writeFile(proj, []byte(out)); err != nil {
		return "", err
	}
	return fmt.Sprintf("TargetFrameworkVersion %s is not installed (installed: %s); changed %s to %s, the closest installed version",
		want, strings.Join(installed, " "), w.rel(proj), pick), nil
}

var hintRe = regexp.MustCompile(`(<HintPath>)([^<]+)(</HintPath>)`)

// repointHintPath points a broken HintPath at another version of the same
// assembly present in the same packages folder.
func (w *workspace) repointHintPath(d Diagnostic) (string, error) {
	asm := d.Subject
	if asm == "" {
		return "", fmt.Errorf("%w: diagnostic names no assembly", errNotApplicable)
	}
	proj, err := w.findProject(d)
	if err != nil {
		return "", err
	}
	src, err := os.ReadFile(proj)
	if err != nil {
		return "", fmt.Errorf("read project: %w", err)
	}
	s := string(src)
	projDir := filepath.Dir(proj)
	for _, loc := range refItemRe.FindAllStringSubmatchIndex(s, -1) {
		n, _, _ := strings.Cut(s[loc[4]:loc[5]], ",")
		if !strings.EqualFold(strings.TrimSpace(n), asm) {
			continue
		}
		end := strings.Index(s[loc[1]:], "</Reference>")
		if end < 0 {
			continue
		}
		body := s[loc[1] : loc[1]+end]
		h := hintRe.FindStringSubmatchIndex(body)
		if h == nil {
			continue
		}
		old := body[h[4]:h[5]]
		oldPath := filepath.Join(projDir, filepath.FromSlash(strings.ReplaceAll(old, `\`, "/")))
		if _, err := os.Stat(oldPath); err == nil {
			return "", fmt.Errorf("%w: HintPath %s exists", errNotApplicable, old)
		}
		newRel, version, err := findPackageAssembly(projDir, old, asm)
		if err != nil {
			// Not another version in the same packages folder: the DLL may
			// have moved within the repository.
			found, ferr := w.findAssemblyInTree(asm)
			if ferr != nil {
				return "", fmt.Errorf("%w; %v", err, ferr)
			}
			rel, rerr := filepath.Rel(projDir, found)
			if rerr != nil {
				return "", fmt.Errorf("%w: %v", errNotApplicable, rerr)
			}
			newRel, version = strings.ReplaceAll(rel, "/", `\`), "the only "+asm+".dll in the repository"
		}
		start := loc[1] + h[4]
		out := s[:start] + newRel + s[loc[1]+h[5]:]
		if err := w.writeFile(proj, []byte(out)); err != nil {
			return "", err
		}
		if strings.HasPrefix(version, "the only ") {
			return fmt.Sprintf("HintPath %s for %s does not exist; repointed to %s, %s, in %s", old, asm, newRel, version, w.rel(proj)), nil
		}
		return fmt.Sprintf("HintPath %s for %s does not exist; repointed to %s (version %s, the newest available locally) in %s", old, asm, newRel, version, w.rel(proj)), nil
	}
	return "", fmt.Errorf("%w: no Reference with a HintPath for %s", errNotApplicable, asm)
}

// findPackageAssembly looks in the packages folder the old HintPath used
// (…\packages\<Id>.<Version>\lib\<tfm>\<Asm>.dll) for other versions.
func findPackageAssembly(projDir, oldHint, asm string) (string, string, error) {
	parts := strings.Split(strings.ReplaceAll(oldHint, `\`, "/"), "/")
	pkgIdx := -1
	for i, p := range parts {
		if strings.EqualFold(p, "packages") && i+1 < len(parts) {
			pkgIdx = i
		}
	}
	if pkgIdx < 0 {
		return "", "", fmt.Errorf("%w: HintPath %s is not under a packages folder", errNotApplicable, oldHint)
	}
	pkgRoot := filepath.Join(projDir, filepath.Join(parts[:pkgIdx+1]...))
	oldPkg := parts[pkgIdx+1]
	id := packageID(oldPkg)
	tail := parts[pkgIdx+2:] // lib/<tfm>/<asm>.dll
	ents, err := os.ReadDir(pkgRoot)
	if err != nil {
		return "", "", fmt.Errorf("%w: packages folder %s: %v", errNotApplicable, pkgRoot, err)
	}
	type cand struct{ rel, version string }
	var cands []cand
	for _, e := range ents {
		if !e.IsDir() || !strings.EqualFold(packageID(e.Name()), id) || strings.EqualFold(e.Name(), oldPkg) {
			continue
		}
		ver := e.Name()[len(id)+1:]
		// Same lib/<tfm>/ layout first, then any lib/*/<asm>.dll.
		tries := []string{filepath.Join(append([]string{pkgRoot, e.Name()}, tail...)...)}
		more, _ := filepath.Glob(filepath.Join(pkgRoot, e.Name(), "lib", "*", asm+".dll"))
		sort.Sort(sort.Reverse(sort.StringSlice(more)))
		tries = append(tries, more...)
		for _, t := range tries {
			if _, err := os.Stat(t); err == nil {
				rel, _ := filepath.Rel(projDir, t)
				cands = append(cands, cand{strings.ReplaceAll(rel, "/", `\`), ver})
				break
			}
		}
	}
	if len(cands) == 0 {
		return "", "", fmt.Errorf("%w: no other version of %s in %s; restore packages", errNotApplicable, id, pkgRoot)
	}
	sort.Slice(cands, func(i, j int) bool { return compareVersions(cands[i].version, cands[j].version) > 0 })
	return cands[0].rel, cands[0].version, nil
}

// packageID strips the version from a packages.config folder name
// ("Newtonsoft.Json.12.0.3" -> "Newtonsoft.Json").
func packageID(folder string) string {
	parts := strings.Split(folder, ".")
	for i := 1; i < len(parts); i++ {
		if isDigits(parts[i]) {
			return strings.Join(parts[:i], ".")
		}
	}
	return folder
}

// repairXML fixes malformed project XML only where the intent is certain:
// an item left open (items never contain other items, so it was meant to be
// self-closing), or a missing </Project> at the end.
func (w *workspace) repairXML(d Diagnostic) (string, error) {
	proj, err := w.findProject(d)
	if err != nil {
		return "", err
	}
	src, err := os.ReadFile(proj)
	if err != nil {
		return "", fmt.Errorf("read project: %w", err)
	}
	out, what, err := repairXML(src)
	if err != nil {
		return "", err
	}
	if err := w.writeFile(proj, out); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s was not well-formed XML: %s", w.rel(proj), what), nil
}

type openElem struct {
	name       string
	start, end int64 // byte offsets of the start tag
	itemKids   int   // children that are MSBuild items (have Include)
	otherKids  int
	parent     string
}

var conflictRe = regexp.MustCompile(`(?m)^(<<<<<<<|=======|>>>>>>>)(\s|$)`)

func repairXML(src []byte) ([]byte, string, error) {
	if loc := conflictRe.FindIndex(src); loc != nil {
		line := 1 + strings.Count(string(src[:loc[0]]), "\n")
		return nil, "", fmt.Errorf("%w: the project has merge-conflict markers (<<<<<<<, =======, >>>>>>>) from line %d: a merge was committed unresolved; choose between the two sides by hand", errNotApplicable, line)
	}
	if out, n := escapeRawAmpersands(src); n > 0 && checkXML(out) == nil {
		return out, fmt.Sprintf("%d raw '&' in text escaped as &amp;", n), nil
	}
	dec := xml.NewDecoder(strings.NewReader(string(src)))
	dec.Strict = true
	var stack []*openElem
	for {
		off := dec.InputOffset()
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			if len(stack) == 1 && stack[0].name == "Project" {
				out := strings.TrimRight(string(src), " \t\r\n") + "\n</Project>\n"
				if checkXML([]byte(out)) != nil {
					break
				}
				return []byte(out), "the closing </Project> tag was missing; added it", nil
			}
			if len(stack) == 0 {
				return nil, "", fmt.Errorf("%w: project XML is well-formed", errNotApplicable)
			}
			break
		}
		if err != nil {
			return nil, "", fmt.Errorf("%w: %v", errNotApplicable, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			hasInclude := false
			for _, a := range t.Attr {
				if a.Name.Local == "Include" || a.Name.Local == "Update" || a.Name.Local == "Remove" {
					hasInclude = true
				}
			}
			if n := len(stack); n > 0 {
				if hasInclude {
					stack[n-1].itemKids++
				} else {
					stack[n-1].otherKids++
				}
			}
			parent := ""
			if n := len(stack); n > 0 {
				parent = stack[n-1].name
			}
			stack = append(stack, &openElem{name: t.Name.Local, start: off, end: dec.InputOffset(), parent: parent})
		case xml.EndElement:
			n := len(stack)
			if n == 0 {
				return nil, "", fmt.Errorf("%w: stray </%s>", errNotApplicable, t.Name.Local)
			}
			top := stack[n-1]
			if top.name == t.Name.Local {
				stack = stack[:n-1]
				continue
			}
			// A misspelled end tag: it closes nothing that is open, and it
			// is one or two letters from the element that is.
			if !openNamed(stack, t.Name.Local) && similarName(top.name, t.Name.Local) {
				endTag := string(src[off:dec.InputOffset()])
				fixedTag := strings.Replace(endTag, t.Name.Local, top.name, 1)
				out := string(src[:off]) + fixedTag + string(src[dec.InputOffset():])
				if checkXML([]byte(out)) == nil {
					line := 1 + strings.Count(string(src[:off]), "\n")
					return []byte(out), fmt.Sprintf("the end tag </%s> on line %d matched no open element; corrected it to </%s>, the element it closes", t.Name.Local, line, top.name), nil
				}
			}
			// Mismatch: top was left open. Safe only for an item inside an
			// ItemGroup whose "children" are all items, and when the end tag
			// closes its parent.
			if top.parent != "ItemGroup" || top.otherKids > 0 || n < 2 || stack[n-2].name != t.Name.Local {
				return nil, "", fmt.Errorf("%w: <%s> is not closed and the intent is unclear", errNotApplicable, top.name)
			}
			tag := string(src[top.start:top.end])
			if !strings.HasSuffix(tag, ">") {
				break
			}
			fixed := strings.TrimRight(strings.TrimSuffix(tag, ">"), " ") + " />"
			out := string(src[:top.start]) + fixed + string(src[top.end:])
			if err := checkXML([]byte(out)); err != nil {
				return nil, "", fmt.Errorf("%w: closing <%s> did not make the file well-formed: %v", errNotApplicable, top.name, err)
			}
			line := 1 + strings.Count(string(src[:top.start]), "\n")
			return []byte(out), fmt.Sprintf("<%s> on line %d was never closed; items cannot contain items, so made it self-closing", top.name, line), nil
		}
	}
	return nil, "", fmt.Errorf("%w: could not find an unambiguous repair", errNotApplicable)
}

func checkXML(b []byte) error {
	dec := xml.NewDecoder(strings.NewReader(string(b)))
	dec.Strict = true
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func openNamed(stack []*openElem, name string) bool {
	for _, e := range stack {
		if e.name == name {
			return true
		}
	}
	return false
}

// similarName reports names at most two edits apart (or differing only
// in case): a typo, not a different element.
func similarName(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	la, lb := len(a), len(b)
	if la-lb > 2 || lb-la > 2 {
		return false
	}
	prev := make([]int, lb+1)
	cur := make([]int, lb+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= la; i++ {
		cur[0] = i
		for j := 1; j <= lb; j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[lb] <= 2
}

var entityRe = regexp.MustCompile(`^&(amp|lt|gt|quot|apos|#[0-9]+|#x[0-9A-Fa-f]+);`)

// escapeRawAmpersands escapes every '&' that does not start an entity.
func escapeRawAmpersands(src []byte) ([]byte, int) {
	var b strings.Builder
	n := 0
	s := string(src)
	for i := 0; i < len(s); i++ {
		if s[i] == '&' && !entityRe.MatchString(s[i:]) {
			b.WriteString("&amp;")
			n++
			continue
		}
		b.WriteByte(s[i])
	}
	return []byte(b.String()), n
}

var identRe = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)

// definingUsedTypes keeps the assemblies that define a type whose name the
// source file uses; when none or all do, the list is returned unchanged.
func definingUsedTypes(file string, asms []string, types map[string][]string) []string {
	b, err := os.ReadFile(file)
	if err != nil {
		return asms
	}
	used := map[string]bool{}
	for _, id := range identRe.FindAllString(cleanCode(b), -1) {
		used[id] = true
	}
	var out []string
	for _, a := range asms {
		for _, t := range types[a] {
			if used[t] {
				out = append(out, a)
				break
			}
		}
	}
	if len(out) == 0 {
		return asms
	}
	return out
}
