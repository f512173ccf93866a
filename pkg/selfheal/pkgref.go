package selfheal

import (
	"archive/zip"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Restoring <PackageReference> packages for Mono's xbuild, which predates
// them: it skips a <PackageReference> with a Version child (the build then
// misses the package's types, CS0246/CS0234) and refuses to load a project
// whose <PackageReference> has a Version attribute. The fix a developer
// makes for xbuild is the packages.config layout: the package is unpacked
// from the local feed into packages/<id>.<version>/ beside the solution (or
// the project when there is none), the project references its assemblies
// through a <HintPath>, and packages.config lists it so that a fresh clone
// is restored the same way.
//
// The <PackageReference> item is replaced, not kept: xbuild cannot load a
// project holding one with a Version attribute, and NuGet treats a project
// with any <PackageReference> as PackageReference-style and ignores its
// packages.config, so keeping both would leave the package declared twice
// with nothing keeping the two in step.

var (
	pkgRefItemRe  = regexp.MustCompile(`(?ms)^([ \t]*)<PackageReference\s+Include="([^"]+)"([^>]*?)(/>|>(.*?)</PackageReference>)[ \t]*\r?\n`)
	versionAttrRe = regexp.MustCompile(`\bVersion="([^"]+)"`)
	versionElemRe = regexp.MustCompile(`<Version>\s*([^<\s]+)\s*</Version>`)
	netFolderRe   = regexp.MustCompile(`^net(4\d*)$`)
	safeIDRe      = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
)

type packageReference struct {
	id, version string
	indent      string
	start, end  int // the item's lines in the project source
}

func packageReferences(src string) []packageReference {
	var out []packageReference
	for _, m := range pkgRefItemRe.FindAllStringSubmatchIndex(src, -1) {
		p := packageReference{id: src[m[4]:m[5]], indent: src[m[2]:m[3]], start: m[0], end: m[1]}
		if v := versionAttrRe.FindStringSubmatch(src[m[6]:m[7]]); v != nil {
			p.version = v[1]
		} else if m[10] >= 0 {
			if v := versionElemRe.FindStringSubmatch(src[m[10]:m[11]]); v != nil {
				p.version = v[1]
			}
		}
		out = append(out, p)
	}
	return out
}

// libFolder picks the package's lib folder for a project targeting fw: the
// highest lib/net4x not above it, else lib/netstandard2.0. It reads the
// package's entry names only, so a package with nothing usable is refused
// before anything is written.
func libFolder(nupkg, fw string) (string, []string, error) {
	zr, err := zip.OpenReader(nupkg)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s is not a package: %v", errNotApplicable, nupkg, err)
	}
	defer zr.Close()
	if len(zr.File) > maxNupkgEntries {
		return "", nil, fmt.Errorf("%w: %s has %d entries", errNotApplicable, nupkg, len(zr.File))
	}
	dlls := map[string][]string{} // lib folder -> assembly file names
	for _, f := range zr.File {
		parts := strings.Split(f.Name, "/")
		if len(parts) == 3 && strings.EqualFold(parts[0], "lib") && strings.EqualFold(path.Ext(parts[2]), ".dll") {
			dlls[strings.ToLower(parts[1])] = append(dlls[strings.ToLower(parts[1])], parts[2])
		}
	}
	best, bestV := "", ""
	for folder := range dlls {
		m := netFolderRe.FindStringSubmatch(folder)
		if m == nil {
			continue
		}
		v := "v" + strings.Join(strings.Split(m[1], ""), ".")
		if compareVersions(v, fw) <= 0 && (best == "" || compareVersions(v, bestV) > 0) {
			best, bestV = folder, v
		}
	}
	if best == "" && dlls["netstandard2.0"] != nil {
		best = "netstandard2.0"
	}
	if best == "" {
		have := make([]string, 0, len(dlls))
		for f := range dlls {
			have = append(have, f)
		}
		sort.Strings(have)
		return "", nil, fmt.Errorf("%w: %s has no assemblies for a %s project (lib folders: %s)", errNotApplicable, filepath.Base(nupkg), fw, strings.Join(have, ", "))
	}
	names := dlls[best]
	sort.Strings(names)
	return best, names, nil
}

// packagesRoot is where nuget restore puts packages for a project: beside
// the nearest solution file above it in the job's tree, else beside it.
func (w *workspace) packagesRoot(projDir string) string {
	for dir := projDir; ; dir = filepath.Dir(dir) {
		if m, _ := filepath.Glob(filepath.Join(dir, "*.sln")); len(m) > 0 {
			return dir
		}
		if dir == w.realDir || dir == w.dir || !inside(dir, w.realDir) {
			return projDir
		}
	}
}

// restorePackageReferences restores every <PackageReference> of the failing
// project from the local feed. All packages are found and checked before
// anything is written, so a missing one leaves the tree as it was.
func (w *workspace) restorePackageReferences(d Diagnostic) (string, error) {
	proj, err := w.findProject(d)
	if err != nil {
		return "", err
	}
	projDir := filepath.Dir(proj)
	raw, err := os.ReadFile(proj)
	if err != nil {
		return "", fmt.Errorf("read project: %w", err)
	}
	src := string(raw)
	refs := packageReferences(src)
	if len(refs) == 0 {
		return "", fmt.Errorf("%w: %s has no <PackageReference>", errNotApplicable, w.rel(proj))
	}
	fw := "v4.0"
	if m := frameworkRe.FindStringSubmatch(src); m != nil {
		fw = m[1]
	}
	feeds, outside := w.localFeeds(projDir)
	root := w.packagesRoot(projDir)
	type plan struct {
		ref          packageReference
		nupkg, dest  string
		folder       string
		dlls         []string
		alreadyThere bool
	}
	var plans []plan
	for _, r := range refs {
		if !safeIDRe.MatchString(r.id) || (r.version != "" && !safeIDRe.MatchString(r.version)) {
			return "", fmt.Errorf("%w: <PackageReference Include=%q Version=%q> is not a plain package id and version", errNotApplicable, r.id, r.version)
		}
		if r.version == "" || strings.ContainsAny(r.version, "*[]()") {
			return "", fmt.Errorf("%w: <PackageReference Include=%q> names no exact version; xbuild needs one to restore from a local feed", errNotApplicable, r.id)
		}
		if len(feeds) == 0 {
			if len(outside) > 0 {
				return "", fmt.Errorf("%w: package %s %s (PackageReference in %s) is not restored and the feed folders nuget.config names (%s) are outside the job directory, which remediations do not read", errNotApplicable, r.id, r.version, w.rel(proj), strings.Join(outside, ", "))
			}
			return "", fmt.Errorf("%w: package %s %s (PackageReference in %s) is not restored and no nuget.config names a local feed folder to restore it from", errNotApplicable, r.id, r.version, w.rel(proj))
		}
		nupkg := findNupkg(feeds, r.id, r.version)
		if nupkg == "" {
			return "", fmt.Errorf("%w: package %s %s (PackageReference in %s) is not in the local feed %s; nothing was restored or edited. Add it to the feed or correct the version", errNotApplicable, r.id, r.version, w.rel(proj), strings.Join(feeds, ", "))
		}
		folder, dlls, err := libFolder(nupkg, fw)
		if err != nil {
			return "", err
		}
		dest, err := w.confine(filepath.Join(root, "packages", r.id+"."+r.version))
		if err != nil {
			return "", err
		}
		_, statErr := os.Stat(dest)
		plans = append(plans, plan{ref: r, nupkg: nupkg, dest: dest, folder: folder, dlls: dlls, alreadyThere: statErr == nil})
	}

	referenced := map[string]bool{}
	for _, m := range refItemRe.FindAllStringSubmatch(src, -1) {
		n, _, _ := strings.Cut(m[2], ",")
		referenced[strings.ToLower(strings.TrimSpace(n))] = true
	}
	// Replace each item, last first so earlier offsets stay valid, with a
	// <Reference> per assembly at the item's own indentation.
	out := src
	var did []string
	for i := len(plans) - 1; i >= 0; i-- {
		p := plans[i]
		indent := p.ref.indent
		var b strings.Builder
		for _, dll := range p.dlls {
			asm := strings.TrimSuffix(dll, filepath.Ext(dll))
			if referenced[strings.ToLower(asm)] {
				return "", fmt.Errorf("%w: %s already has a <Reference Include=%q>; a person must choose between it and package %s %s", errNotApplicable, w.rel(proj), asm, p.ref.id, p.ref.version)
			}
			rel, err := filepath.Rel(projDir, filepath.Join(p.dest, "lib", p.folder, dll))
			if err != nil {
				return "", fmt.Errorf("hint path: %w", err)
			}
			hint := strings.ReplaceAll(rel, "/", `\`)
			fmt.Fprintf(&b, "%s<Reference Include=\"%s\">\n%s  <HintPath>%s</HintPath>\n%s</Reference>\n", indent, xmlAttr(asm), indent, xmlAttr(hint), indent)
			did = append(did, hint)
		}
		out = out[:p.ref.start] + b.String() + out[p.ref.end:]
	}

	for _, p := range plans {
		if p.alreadyThere {
			continue
		}
		if _, err := w.unpack(p.nupkg, p.dest); err != nil {
			return "", err
		}
	}
	if err := w.writeFile(proj, []byte(out)); err != nil {
		return "", err
	}
	pkgs := make([]pkgRef, len(plans))
	for i, p := range plans {
		pkgs[i] = pkgRef{ID: p.ref.id, Version: p.ref.version}
	}
	cfg, err := packagesConfigWith(filepath.Join(projDir, "packages.config"), pkgs, fw)
	if err != nil {
		return "", err
	}
	if err := w.writeFile(filepath.Join(projDir, "packages.config"), cfg); err != nil {
		return "", err
	}
	names := make([]string, len(plans))
	for i, p := range plans {
		names[i] = p.ref.id + " " + p.ref.version
	}
	return fmt.Sprintf("xbuild does not restore <PackageReference> items; unpacked %s from the local feed into %s, replaced the items in %s with <Reference> items whose HintPath is %s, and listed the packages in packages.config", strings.Join(names, ", "), w.rel(filepath.Join(root, "packages")), w.rel(proj), strings.Join(did, ", ")), nil
}

// packagesConfigWith returns packages.config with the packages added (a new
// file when there is none), keeping the entries it already has.
func packagesConfigWith(file string, pkgs []pkgRef, fw string) ([]byte, error) {
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read packages.config: %w", err)
	}
	listed := map[string]bool{}
	if len(old) > 0 {
		have, err := readPackagesConfig(file)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errNotApplicable, err)
		}
		for _, p := range have {
			listed[strings.ToLower(p.ID)] = true
		}
	}
	tfm := "net" + strings.ReplaceAll(strings.TrimPrefix(fw, "v"), ".", "")
	var lines []string
	for _, p := range pkgs {
		if listed[strings.ToLower(p.ID)] {
			continue
		}
		lines = append(lines, fmt.Sprintf(`  <package id="%s" version="%s" targetFramework="%s" />`, xmlAttr(p.ID), xmlAttr(p.Version), xmlAttr(tfm)))
	}
	if len(lines) == 0 {
		return old, nil
	}
	if len(old) == 0 {
		return []byte("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<packages>\n" + strings.Join(lines, "\n") + "\n</packages>\n"), nil
	}
	s := string(old)
	i := strings.LastIndex(s, "</packages>")
	if i < 0 {
		return nil, fmt.Errorf("%w: %s has no </packages> to add the packages before", errNotApplicable, file)
	}
	return []byte(s[:i] + strings.Join(lines, "\n") + "\n" + s[i:]), nil
}
