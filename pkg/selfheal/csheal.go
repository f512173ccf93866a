package selfheal

import (
	"fmt"
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
	proj, err := w.findProject(d)
	if err != nil {
		return "", err
	}
	tree, err := scanTree(w.realDir)
	if err != nil {
		return "", err
	}
	self := tree.projectAt(proj)
	if self == nil {
		return "", fmt.Errorf("%w: %s was not found in the tree", errNotApplicable, w.rel(proj))
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
			fits = ns == qual || visible[qual+"."+ns] || strings.HasSuffix(ns, "."+qual)
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
	proj, err := w.findProject(d)
	if err != nil {
		return "", err
	}
	tree, err := scanTree(w.realDir)
	if err != nil {
		return "", err
	}
	self := tree.projectAt(proj)
	if self == nil {
		return "", fmt.Errorf("%w: %s was not found in the tree", errNotApplicable, w.rel(proj))
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
	if len(old) == 0 || !strings.Contains(string(old), "\r\n") {
		return data
	}
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}
