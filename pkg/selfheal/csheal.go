package selfheal

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// typeSubject splits a CS0246/CS0234 subject into the simple name and the
// namespace it was qualified with ("Lib.Math.Calc" -> "Calc", "Lib.Math").
func typeSubject(subject string) (name, qualifier string) {
	if j := strings.IndexByte(subject, '<'); j >= 0 {
		subject = subject[:j]
	}
	if i := strings.LastIndexByte(subject, '.'); i >= 0 {
		return subject[i+1:], subject[:i]
	}
	return subject, ""
}

// diagSource resolves the file a compiler diagnostic names: xbuild prints
// it relative to the project being built.
func (w *workspace) diagSource(d Diagnostic, proj string) string {
	if d.File == "" {
		return ""
	}
	p := filepath.FromSlash(strings.ReplaceAll(d.File, `\`, "/"))
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(filepath.Dir(proj), p)
}

// addCompile adds the .cs file that declares a missing type, only when a
// careful developer would: exactly one file in the project's own folder
// declares it, in a namespace the failing file can see, the file belongs
// to no other project, no other project's folder holds it, and nothing
// about its path says it was set aside on purpose.
func (w *workspace) addCompile(d Diagnostic) (string, error) {
	if d.Code != "CS0246" && d.Code != "CS0234" {
		return "", fmt.Errorf("%w: %s is not a missing type; only CS0246 and CS0234 are", errNotApplicable, d.Code)
	}
	name, qual := typeSubject(d.Subject)
	if name == "" {
		return "", fmt.Errorf("%w: diagnostic names no type", errNotApplicable)
	}
	proj, tree, self, err := w.projectInTree(d)
	if err != nil {
		return "", err
	}
	if self.wildcard {
		return "", fmt.Errorf("%w: %s compiles a wildcard, so a missing file is not the cause", errNotApplicable, w.rel(proj))
	}
	visible := visibleNamespaces(w.diagSource(d, proj))
	var ok []string
	var why []string
	for _, s := range tree.sources {
		ns, declares := s.types[name]
		if !declares || self.compiles[strings.ToLower(s.path)] {
			continue
		}
		rel := w.rel(s.path)
		fits := visible[ns]
		if qual != "" {
			fits = ns == qual || strings.HasSuffix(ns, "."+qual)
		}
		switch {
		case !fits:
			why = append(why, fmt.Sprintf("%s declares %s in namespace %q, which the failing file does not use", rel, name, ns))
		case excludedLooking(rel) != "":
			why = append(why, fmt.Sprintf("%s is in %q, which marks it as set aside on purpose; the code probably names the wrong type", rel, excludedLooking(rel)))
		case len(tree.owners(s.path)) > 0:
			o := tree.owners(s.path)[0]
			why = append(why, fmt.Sprintf("%s belongs to project %s; reference that project instead of compiling its file twice", rel, w.rel(o.path)))
		case !inside(s.path, self.dir):
			why = append(why, fmt.Sprintf("%s is outside %s's folder", rel, w.rel(proj)))
		case tree.projectHolding(s.path) != self:
			why = append(why, fmt.Sprintf("%s is under a folder with its own project", rel))
		default:
			ok = append(ok, s.path)
		}
	}
	if len(ok) == 0 && len(why) == 0 {
		// The subject may be a namespace (using Miner.Util; -> CS0234
		// `Util' in `Miner'): the one file of the project's folder that
		// declares it and is not compiled.
		ok, why = w.namespaceSources(tree, self, d.Subject)
	}
	switch {
	case len(ok) == 0 && len(why) == 0:
		return "", fmt.Errorf("%w: no .cs file outside the project declares %s; if it is not a typo, the type lives in an assembly the project does not reference", errNotApplicable, name)
	case len(ok) == 0:
		return "", fmt.Errorf("%w: %s", errNotApplicable, strings.Join(why, "; "))
	case len(ok) > 1:
		var rels []string
		for _, p := range ok {
			rels = append(rels, w.rel(p))
		}
		return "", fmt.Errorf("%w: %s is declared in several files not in the project (%s); a person must choose", errNotApplicable, name, strings.Join(rels, ", "))
	}
	src, err := os.ReadFile(proj)
	if err != nil {
		return "", fmt.Errorf("read project: %w", err)
	}
	relInc, _ := filepath.Rel(self.dir, ok[0])
	inc := strings.ReplaceAll(relInc, "/", `\`)
	out, err := insertItem(string(src), compileItemRe, `<Compile Include="`+xmlAttr(inc)+`" />`)
	if err != nil {
		return "", err
	}
	if err := w.writeFile(proj, []byte(out)); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s is declared in %s, which exists in the project's folder but was not compiled; added <Compile Include=%q /> to %s", name, inc, inc, w.rel(proj)), nil
}

func (t *csTree) projectAt(path string) *csProject {
	for _, p := range t.projects {
		if p.path == path {
			return p
		}
	}
	return nil
}

var (
	projRefLineRe = regexp.MustCompile(`(?m)^([ \t]*)<ProjectReference\s+Include="([^"]+)"[^>]*/?>.*$`)
	projGUIDRe    = regexp.MustCompile(`<ProjectGuid>\s*(\{[0-9A-Fa-f-]+\})\s*</ProjectGuid>`)
)

// addProjectReference references the one other project that declares the
// missing namespace or type, or builds the missing assembly.
func (w *workspace) addProjectReference(d Diagnostic) (string, error) {
	if d.Subject == "" {
		return "", fmt.Errorf("%w: diagnostic names no namespace or type", errNotApplicable)
	}
	proj, tree, self, err := w.projectInTree(d)
	if err != nil {
		return "", err
	}
	cands := map[*csProject]string{}
	// As a namespace (using Lib.Math; -> CS0246 `Lib' or CS0234 `Math' in `Lib').
	for _, p := range tree.declaringProjects(d.Subject, self) {
		cands[p] = "declares namespace " + d.Subject
	}
	// As a type, in a namespace the failing file can see.
	name, qual := typeSubject(d.Subject)
	visible := visibleNamespaces(w.diagSource(d, proj))
	for _, s := range tree.sources {
		ns, ok := s.types[name]
		if !ok || (qual == "" && !visible[ns]) || (qual != "" && ns != qual) {
			continue
		}
		for _, p := range tree.owners(s.path) {
			if p != self {
				if _, seen := cands[p]; !seen {
					cands[p] = fmt.Sprintf("declares %s.%s", ns, name)
				}
			}
		}
	}
	// As an assembly ("Are you missing `Lib' assembly reference").
	for _, p := range tree.projects {
		if p != self && strings.EqualFold(p.asmName, d.Subject) {
			cands[p] = "builds assembly " + p.asmName
		}
	}
	if len(cands) == 0 {
		return "", fmt.Errorf("%w: no other project declares %s", errNotApplicable, d.Subject)
	}
	if len(cands) > 1 {
		var names []string
		for p := range cands {
			names = append(names, w.rel(p.path))
		}
		sort.Strings(names)
		return "", fmt.Errorf("%w: several projects declare %s (%s); a person must choose", errNotApplicable, d.Subject, strings.Join(names, ", "))
	}
	var target *csProject
	var reason string
	for p, r := range cands {
		target, reason = p, r
	}
	if excl := excludedLooking(w.rel(target.path)); excl != "" {
		return "", fmt.Errorf("%w: %s is in %q, which marks it as set aside", errNotApplicable, w.rel(target.path), excl)
	}
	if self.projRefs[strings.ToLower(target.path)] {
		return "", fmt.Errorf("%w: %s already references %s", errNotApplicable, w.rel(proj), w.rel(target.path))
	}
	if target.projRefs[strings.ToLower(self.path)] {
		return "", fmt.Errorf("%w: %s already references %s; a reference back would be a cycle", errNotApplicable, w.rel(target.path), w.rel(proj))
	}
	src, err := os.ReadFile(proj)
	if err != nil {
		return "", fmt.Errorf("read project: %w", err)
	}
	tsrc, err := os.ReadFile(target.path)
	if err != nil {
		return "", fmt.Errorf("read project: %w", err)
	}
	relInc, err := filepath.Rel(self.dir, target.path)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errNotApplicable, err)
	}
	inc := strings.ReplaceAll(relInc, "/", `\`)
	item := `<ProjectReference Include="` + xmlAttr(inc) + `">`
	indent := "      "
	if m := projRefLineRe.FindStringSubmatch(string(src)); m != nil {
		indent = m[1] + "  "
	}
	if m := projGUIDRe.FindSubmatch(tsrc); m != nil {
		item += "\n" + indent + "<Project>" + string(m[1]) + "</Project>"
	}
	item += "\n" + indent + "<Name>" + xmlAttr(target.name) + "</Name>\n" + indent[:len(indent)-2] + "</ProjectReference>"
	out, err := insertItem(string(src), projRefLineRe, item)
	if err != nil {
		return "", err
	}
	if err := w.writeFile(proj, []byte(out)); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s is in project %s (it %s), which %s did not reference; added <ProjectReference Include=%q /> to %s",
		d.Subject, w.rel(target.path), reason, w.rel(proj), inc, w.rel(proj)), nil
}

// keepLineEndings gives an edited file the line endings of its original:
// Visual Studio writes CRLF, and a file of mixed endings is a diff on
// every line for the next person.
func keepLineEndings(old, data []byte) []byte {
	crlf := strings.Count(string(old), "\r\n")
	if crlf == 0 || crlf != strings.Count(string(old), "\n") {
		// LF, or already mixed: normalising would touch lines the edit did not.
		return data
	}
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

// findAssemblyInTree returns the single <asm>.dll in the job tree outside
// build output.
func (w *workspace) findAssemblyInTree(asm string) (string, error) {
	var found []string
	n := 0
	err := filepath.WalkDir(w.realDir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			name := strings.ToLower(de.Name())
			if p != w.realDir && (name == "bin" || name == "obj" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if n++; n > maxTreeFiles {
			return fmt.Errorf("%w: more than %d files", errNotApplicable, maxTreeFiles)
		}
		if strings.EqualFold(de.Name(), asm+".dll") && de.Type().IsRegular() {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("search for %s.dll: %w", asm, err)
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: no %s.dll anywhere in the repository", errNotApplicable, asm)
	case 1:
		return found[0], nil
	}
	var rels []string
	for _, f := range found {
		rels = append(rels, w.rel(f))
	}
	return "", fmt.Errorf("%w: several copies of %s.dll (%s); a person must choose", errNotApplicable, asm, strings.Join(rels, ", "))
}

// fixCompileCase corrects a <Compile Include> that differs from the file
// on disk only in letter case (Windows does not care; Linux does).
func (w *workspace) fixCompileCase(d Diagnostic) (string, error) {
	if d.Subject == "" {
		return "", fmt.Errorf("%w: diagnostic names no source file", errNotApplicable)
	}
	proj, err := w.findProject(d)
	if err != nil {
		return "", err
	}
	src, err := os.ReadFile(proj)
	if err != nil {
		return "", fmt.Errorf("read project: %w", err)
	}
	want := strings.ToLower(strings.ReplaceAll(d.Subject, `\`, "/"))
	projDir := filepath.Dir(proj)
	s := string(src)
	for _, loc := range compileItemRe.FindAllStringSubmatchIndex(s, -1) {
		inc := s[loc[4]:loc[5]]
		if strings.ToLower(strings.ReplaceAll(inc, `\`, "/")) != want {
			continue
		}
		if _, err := os.Stat(projectPath(projDir, inc)); err == nil {
			return "", fmt.Errorf("%w: %s exists", errNotApplicable, inc)
		}
		fixed, err := caseInsensitivePath(projDir, inc)
		if err != nil {
			return "", err
		}
		out := s[:loc[4]] + xmlAttr(fixed) + s[loc[5]:]
		if err := w.writeFile(proj, []byte(out)); err != nil {
			return "", err
		}
		return fmt.Sprintf("<Compile Include=%q> names a file that exists only as %s (letter case differs, and Linux file names are case-sensitive); corrected the item in %s", inc, fixed, w.rel(proj)), nil
	}
	return "", fmt.Errorf("%w: no <Compile Include> for %s", errNotApplicable, d.Subject)
}

// caseInsensitivePath resolves include element by element, ignoring case,
// and returns it as written (same separators) with the case on disk. Each
// element must match exactly one entry.
func caseInsensitivePath(dir, include string) (string, error) {
	sep := "/"
	if strings.Contains(include, `\`) {
		sep = `\`
	}
	parts := strings.Split(strings.ReplaceAll(include, `\`, "/"), "/")
	cur := dir
	out := make([]string, 0, len(parts))
	for _, part := range parts {
		if part == "." || part == ".." || part == "" {
			out = append(out, part)
			cur = filepath.Join(cur, part)
			continue
		}
		ents, err := os.ReadDir(cur)
		if err != nil {
			return "", fmt.Errorf("%w: %v", errNotApplicable, err)
		}
		var hits []string
		for _, e := range ents {
			if strings.EqualFold(e.Name(), part) {
				hits = append(hits, e.Name())
			}
		}
		if len(hits) != 1 {
			return "", fmt.Errorf("%w: %d entries in %s match %q ignoring case", errNotApplicable, len(hits), cur, part)
		}
		out = append(out, hits[0])
		cur = filepath.Join(cur, hits[0])
	}
	if !inside(cur, dir) {
		return "", fmt.Errorf("%w: %s leaves the project folder", errNotApplicable, include)
	}
	return strings.Join(out, sep), nil
}

// skippedCompileRe is xbuild's and MSBuild's note that the compiler did not
// run because the output looked newer than every input.
var skippedCompileRe = regexp.MustCompile(`Skipping target "CoreCompile" because (its|all) output`)

// staleOutput recognises a failure caused by stale build output: a
// zero-byte assembly in bin/ or obj/ (a build killed mid-write), or a test
// that failed although the compiler was skipped as up to date. It returns
// a diagnostic the stale-output rule answers with one clean rebuild.
func (w *workspace) staleOutput(phase, buildOut string) (Diagnostic, bool) {
	var zero []string
	n := 0
	_ = filepath.WalkDir(w.realDir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if n++; n > maxTreeFiles {
			return filepath.SkipAll
		}
		if de.IsDir() {
			if (p != w.realDir && strings.HasPrefix(de.Name(), ".")) || strings.Count(w.rel(p), "/") > 6 {
				return filepath.SkipDir
			}
			return nil
		}
		ext := strings.ToLower(filepath.Ext(p))
		if ext != ".dll" && ext != ".exe" {
			return nil
		}
		parent := strings.ToLower(w.rel(p))
		if !strings.Contains("/"+parent, "/bin/") && !strings.Contains("/"+parent, "/obj/") {
			return nil
		}
		if info, err := de.Info(); err == nil && info.Size() == 0 {
			zero = append(zero, w.rel(p))
		}
		return nil
	})
	if len(zero) > 0 {
		return Diagnostic{Tool: "msbuild", Code: "stale-output", Severity: "error",
			Message: "zero-byte build output (a build was killed while writing it): " + strings.Join(zero, ", ")}, true
	}
	if phase == "test" && skippedCompileRe.MatchString(buildOut) {
		return Diagnostic{Tool: "msbuild", Code: "stale-output", Severity: "error",
			Message: "the test failed after the build skipped CoreCompile as up to date, so the program run may not be built from the current source"}, true
	}
	return Diagnostic{}, false
}

// namespaceSources lists the uncompiled sources in self's folder that
// declare namespace ns, and why others that do were not taken.
func (w *workspace) namespaceSources(tree *csTree, self *csProject, ns string) (ok, why []string) {
	for _, s := range tree.sources {
		declares := false
		for _, n := range s.nss {
			declares = declares || n == ns
		}
		if !declares {
			continue
		}
		if self.compiles[strings.ToLower(s.path)] {
			// Part of the namespace is compiled already; the missing name
			// is not a missing file.
			return nil, []string{fmt.Sprintf("namespace %s is already declared by %s, which the project compiles", ns, w.rel(s.path))}
		}
		rel := w.rel(s.path)
		switch {
		case excludedLooking(rel) != "":
			why = append(why, fmt.Sprintf("%s is in %q, which marks it as set aside on purpose", rel, excludedLooking(rel)))
		case len(tree.owners(s.path)) > 0:
			why = append(why, fmt.Sprintf("%s belongs to project %s; reference that project instead", rel, w.rel(tree.owners(s.path)[0].path)))
		case !inside(s.path, self.dir) || tree.projectHolding(s.path) != self:
			why = append(why, fmt.Sprintf("%s is outside %s's own folder", rel, w.rel(self.path)))
		default:
			ok = append(ok, s.path)
		}
	}
	return ok, why
}

// tokenAt reports whether line (1-based) of file has name at column col
// (1-based): the compiler points at the name it could not resolve.
func tokenAt(file string, line, col int, name string) bool {
	b, err := os.ReadFile(file)
	if err != nil || line < 1 || col < 1 || name == "" {
		return false
	}
	lines := strings.Split(string(b), "\n")
	if line > len(lines) {
		return false
	}
	l := strings.TrimPrefix(lines[line-1], "\ufeff")
	return col-1 <= len(l) && strings.HasPrefix(l[col-1:], name)
}
