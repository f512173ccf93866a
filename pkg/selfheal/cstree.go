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

// A C# tree is read, never built: which projects exist, which sources
// each compiles, and which namespaces and types each source declares.
// That is what a careful developer looks at before adding a file to a
// project or a reference between projects.

// maxTreeFiles bounds the scan of a job tree; a repository with more
// sources than this is not guessed about.
const maxTreeFiles = 20000

// maxSourceBytes skips generated or vendored giants; maxTreeBytes bounds
// what one scan reads in all.
const (
	maxSourceBytes = 2 << 20
	maxTreeBytes   = 256 << 20
)

type csProject struct {
	path     string          // absolute
	dir      string          // absolute
	name     string          // file name without extension
	asmName  string          // <AssemblyName>, else name
	compiles map[string]bool // lower-case absolute paths of <Compile Include>
	projRefs map[string]bool // lower-case absolute paths of <ProjectReference>
	wildcard bool            // a Compile Include with * or ?
}

type csSource struct {
	path  string            // absolute
	types map[string]string // type name -> declaring namespace ("" for global)
	nss   []string          // namespaces declared
}

type csTree struct {
	root     string
	projects []*csProject
	sources  []*csSource
}

var (
	projRefItemRe = regexp.MustCompile(`<ProjectReference\s+Include="([^"]+)"`)
	asmNameRe     = regexp.MustCompile(`<AssemblyName>\s*([^<\s]+)\s*</AssemblyName>`)
	nsDeclRe      = regexp.MustCompile(`\bnamespace\s+([A-Za-z_][\w.]*)\s*([{;])`)
	typeDeclRe    = regexp.MustCompile(`\b(?:class|struct|interface|enum|record|delegate\s+[\w<>\[\],.?\s]+?)\s+([A-Za-z_]\w*)\s*(?:<[^>{;]*>)?\s*(?:[:{(;]|where\b|$)`)
	usingRe       = regexp.MustCompile(`(?m)^\s*using\s+(?:static\s+)?([A-Za-z_][\w.]*)\s*;`)
	stringLitRe   = regexp.MustCompile(`@"(?:[^"]|"")*"|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)'`)
)

// projectPath turns an item path as written (backslashes, relative to the
// project) into an absolute path.
func projectPath(projDir, include string) string {
	p := filepath.FromSlash(strings.ReplaceAll(include, `\`, "/"))
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(projDir, p)
}

func loadProject(path string) (*csProject, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := &csProject{path: path, dir: filepath.Dir(path), compiles: map[string]bool{}, projRefs: map[string]bool{}}
	p.name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	p.asmName = p.name
	if m := asmNameRe.FindSubmatch(src); m != nil {
		p.asmName = string(m[1])
	}
	for _, m := range compileItemRe.FindAllStringSubmatch(string(src), -1) {
		if strings.ContainsAny(m[2], "*?") {
			p.wildcard = true
			continue
		}
		p.compiles[strings.ToLower(projectPath(p.dir, m[2]))] = true
	}
	for _, m := range projRefItemRe.FindAllStringSubmatch(string(src), -1) {
		p.projRefs[strings.ToLower(projectPath(p.dir, m[1]))] = true
	}
	return p, nil
}

// skipDir reports directories that never hold sources a project means.
func skipDir(name string) bool {
	switch strings.ToLower(name) {
	case "bin", "obj", "packages", "node_modules":
		return true
	}
	return strings.HasPrefix(name, ".")
}

// scanTree reads every project and C# source below root.
func scanTree(root string) (*csTree, error) {
	t := &csTree{root: root}
	n := 0
	var total int64
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			if p != root && skipDir(de.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if !de.Type().IsRegular() {
			return nil
		}
		if n++; n > maxTreeFiles {
			return fmt.Errorf("%w: more than %d files under %s", errNotApplicable, maxTreeFiles, root)
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".csproj":
			pr, err := loadProject(p)
			if err != nil {
				return err
			}
			t.projects = append(t.projects, pr)
		case ".cs":
			info, err := de.Info()
			if err != nil || info.Size() > maxSourceBytes {
				return nil
			}
			if total += info.Size(); total > maxTreeBytes {
				return fmt.Errorf("%w: more than %d bytes of C# source under %s", errNotApplicable, maxTreeBytes, root)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			t.sources = append(t.sources, parseSource(p, b))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	return t, nil
}

// parseSource finds declared namespaces and types. Comments and string
// literals are blanked first so that a commented-out class does not count.
func parseSource(path string, b []byte) *csSource {
	code := cleanCode(b)
	s := &csSource{path: path, types: map[string]string{}}
	type nsAt struct {
		at   int
		name string
	}
	var nss []nsAt
	for _, m := range nsDeclRe.FindAllStringSubmatchIndex(code, -1) {
		name := code[m[2]:m[3]]
		nss = append(nss, nsAt{m[0], name})
		s.nss = append(s.nss, name)
	}
	for _, m := range typeDeclRe.FindAllStringSubmatchIndex(code, -1) {
		name := code[m[2]:m[3]]
		ns := ""
		for _, n := range nss {
			if n.at < m[0] {
				ns = n.name
			}
		}
		if _, dup := s.types[name]; !dup {
			s.types[name] = ns
		}
	}
	return s
}

func cleanCode(b []byte) string {
	s := string(stripComments(b))
	return stringLitRe.ReplaceAllStringFunc(s, func(lit string) string { return strings.Repeat(" ", len(lit)) })
}

// owners lists the projects that compile path.
func (t *csTree) owners(path string) []*csProject {
	var out []*csProject
	key := strings.ToLower(path)
	for _, p := range t.projects {
		if p.compiles[key] {
			out = append(out, p)
		}
	}
	return out
}

// projectHolding returns the project whose folder is the nearest one
// above path, if that folder holds exactly one project.
func (t *csTree) projectHolding(path string) *csProject {
	var best *csProject
	ambiguous := false
	for _, p := range t.projects {
		if !inside(path, p.dir) {
			continue
		}
		switch {
		case best == nil || len(p.dir) > len(best.dir):
			best, ambiguous = p, false
		case len(p.dir) == len(best.dir):
			ambiguous = true
		}
	}
	if ambiguous {
		return nil
	}
	return best
}

// projectOf is the project a source belongs to: the one that lists it,
// else the nearest project folder above it.
func (t *csTree) projectOf(path string) *csProject {
	if o := t.owners(path); len(o) == 1 {
		return o[0]
	}
	return t.projectHolding(path)
}

// declaringProjects lists the projects, other than self, that compile a
// source declaring namespace ns (or a namespace below it).
func (t *csTree) declaringProjects(ns string, self *csProject) []*csProject {
	seen := map[*csProject]bool{}
	var out []*csProject
	for _, s := range t.sources {
		hit := false
		for _, n := range s.nss {
			if n == ns || strings.HasPrefix(n, ns+".") {
				hit = true
			}
		}
		if !hit {
			continue
		}
		for _, p := range t.owners(s.path) {
			if p != self && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

// excludedRe marks a path a developer set aside on purpose: a folder or
// file named Obsolete, Old, Backup, Deprecated, Unused or Archive, or a
// Windows Explorer copy ("X - Copy.cs", "Copy of X.cs").
var (
	excludedSegRe  = regexp.MustCompile(`(?i)^(_?obsolete|_?old|_?backups?|bak|deprecated|unused|archived?|attic|trash|junk)([ ._-].*)?$`)
	excludedNameRe = regexp.MustCompile(`(?i)( - copy( \(\d+\))?\.|^copy of |[._-](old|bak|backup|orig|obsolete)\.cs$|\.cs\.(bak|orig|old)$)`)
)

// excludedLooking returns the path element that marks rel as set aside,
// or "".
func excludedLooking(rel string) string {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	for i, seg := range parts {
		if i < len(parts)-1 && excludedSegRe.MatchString(seg) {
			return seg
		}
	}
	if name := parts[len(parts)-1]; excludedNameRe.MatchString(name) {
		return name
	}
	return ""
}

// visibleNamespaces are the namespaces a source can name types from
// without qualification: its usings and its own namespace and parents.
func visibleNamespaces(path string) map[string]bool {
	out := map[string]bool{"": true}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	code := cleanCode(b)
	for _, m := range usingRe.FindAllStringSubmatch(code, -1) {
		out[m[1]] = true
	}
	for _, m := range nsDeclRe.FindAllStringSubmatch(code, -1) {
		ns := m[1]
		for ns != "" {
			out[ns] = true
			i := strings.LastIndexByte(ns, '.')
			if i < 0 {
				break
			}
			ns = ns[:i]
		}
	}
	return out
}
