package selfheal

import (
	"archive/zip"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Restoring packages.config packages from a local feed folder, offline:
// the .nupkg named by the project's packages.config is unpacked into the
// packages folder its <HintPath> points at, as `nuget restore` does. Feed
// folders come from nuget.config files between the project and the job
// directory; network feeds are never contacted.

const (
	maxNupkgEntries = 10000
	maxNupkgBytes   = 256 << 20
)

type pkgRef struct {
	ID      string `xml:"id,attr"`
	Version string `xml:"version,attr"`
}

func readPackagesConfig(path string) ([]pkgRef, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Packages []pkgRef `xml:"package"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return doc.Packages, nil
}

// localFeeds lists the folder feeds nuget.config files name, from the
// project's folder up to the job directory.
func (w *workspace) localFeeds(projDir string) (feeds, outside []string) {
	for dir := projDir; ; dir = filepath.Dir(dir) {
		for _, name := range []string{"nuget.config", "NuGet.Config", "NuGet.config"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				continue
			}
			var doc struct {
				Sources []struct {
					Value string `xml:"value,attr"`
				} `xml:"packageSources>add"`
			}
			if xml.Unmarshal(b, &doc) != nil {
				continue
			}
			for _, s := range doc.Sources {
				if s.Value == "" || strings.Contains(s.Value, "://") {
					continue
				}
				// Remediations read only the job's own tree: a feed folder
				// elsewhere on the machine is not opened.
				if f, err := w.confine(projectPath(dir, s.Value)); err == nil {
					feeds = append(feeds, f)
				} else {
					outside = append(outside, s.Value)
				}
			}
			break
		}
		if dir == w.realDir || dir == w.dir || !inside(dir, w.realDir) {
			break
		}
	}
	return feeds, outside
}

// restoreLocal restores the package that provides a reference xbuild could
// not resolve.
func (w *workspace) restoreLocal(d Diagnostic) (string, error) {
	asm := d.Subject
	if asm == "" {
		return "", fmt.Errorf("%w: diagnostic names no assembly", errNotApplicable)
	}
	proj, err := w.findProject(d)
	if err != nil {
		return "", err
	}
	projDir := filepath.Dir(proj)
	pkgs, err := readPackagesConfig(filepath.Join(projDir, "packages.config"))
	if err != nil {
		return "", fmt.Errorf("%w: no packages.config beside %s", errNotApplicable, w.rel(proj))
	}
	src, err := os.ReadFile(proj)
	if err != nil {
		return "", fmt.Errorf("read project: %w", err)
	}
	s := string(src)
	hint := ""
	for _, loc := range refItemRe.FindAllStringSubmatchIndex(s, -1) {
		n, _, _ := strings.Cut(s[loc[4]:loc[5]], ",")
		if !strings.EqualFold(strings.TrimSpace(n), asm) {
			continue
		}
		if end := strings.Index(s[loc[1]:], "</Reference>"); end >= 0 {
			if h := hintRe.FindStringSubmatch(s[loc[1] : loc[1]+end]); h != nil {
				hint = h[2]
			}
		}
	}
	if hint == "" {
		return "", fmt.Errorf("%w: no <Reference> with a HintPath for %s", errNotApplicable, asm)
	}
	parts := strings.Split(strings.ReplaceAll(hint, `\`, "/"), "/")
	idx := -1
	for i, p := range parts {
		if strings.EqualFold(p, "packages") && i+1 < len(parts) {
			idx = i
		}
	}
	if idx < 0 {
		return "", fmt.Errorf("%w: HintPath %s is not under a packages folder", errNotApplicable, hint)
	}
	folder := parts[idx+1]
	var pkg *pkgRef
	for i := range pkgs {
		if strings.EqualFold(pkgs[i].ID+"."+pkgs[i].Version, folder) {
			pkg = &pkgs[i]
		}
	}
	if pkg == nil {
		return "", fmt.Errorf("%w: packages.config lists no package for %s (HintPath %s)", errNotApplicable, folder, hint)
	}
	dest, err := w.confine(filepath.Join(projDir, filepath.Join(parts[:idx+2]...)))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(projectPath(projDir, hint)); err == nil {
		return "", fmt.Errorf("%w: %s is already restored", errNotApplicable, hint)
	}
	feeds, outside := w.localFeeds(projDir)
	if len(feeds) == 0 {
		if len(outside) > 0 {
			return "", fmt.Errorf("%w: package %s %s is missing and the feed folders nuget.config names (%s) are outside the job directory, which remediations do not read", errNotApplicable, pkg.ID, pkg.Version, strings.Join(outside, ", "))
		}
		return "", fmt.Errorf("%w: package %s %s is missing and no nuget.config names a local feed folder to restore it from", errNotApplicable, pkg.ID, pkg.Version)
	}
	nupkg := findNupkg(feeds, pkg.ID, pkg.Version)
	if nupkg == "" {
		return "", fmt.Errorf("%w: package %s %s (from packages.config) is not in the local feed %s; nothing was restored. Add it to the feed or correct the version", errNotApplicable, pkg.ID, pkg.Version, strings.Join(feeds, ", "))
	}
	n, err := w.unpack(nupkg, dest)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("package %s %s (packages.config) was not restored; unpacked %s from the local feed into %s (%d files)", pkg.ID, pkg.Version, nupkg, w.rel(dest), n), nil
}

func findNupkg(feeds []string, id, version string) string {
	want := strings.ToLower(id + "." + version + ".nupkg")
	for _, f := range feeds {
		for _, p := range []string{filepath.Join(f, want), filepath.Join(f, strings.ToLower(id), strings.ToLower(version), want)} {
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return p
			}
		}
		ents, _ := os.ReadDir(f)
		for _, e := range ents {
			if strings.ToLower(e.Name()) == want {
				return filepath.Join(f, e.Name())
			}
		}
	}
	return ""
}

// unpack extracts a .nupkg's content (not its packaging metadata) under
// dest; every file it writes is journaled, so Revert removes it.
func (w *workspace) unpack(nupkg, dest string) (int, error) {
	zr, err := zip.OpenReader(nupkg)
	if err != nil {
		return 0, fmt.Errorf("%w: %s is not a package: %v", errNotApplicable, nupkg, err)
	}
	defer zr.Close()
	if len(zr.File) > maxNupkgEntries {
		return 0, fmt.Errorf("%w: %s has %d entries", errNotApplicable, nupkg, len(zr.File))
	}
	var total int64
	n := 0
	for _, f := range zr.File {
		name := f.Name
		if strings.HasSuffix(name, "/") || name == "[Content_Types].xml" || strings.HasPrefix(name, "_rels/") || strings.HasPrefix(name, "package/") {
			continue
		}
		target := filepath.Join(dest, filepath.FromSlash(name))
		if !inside(target, dest) {
			return n, fmt.Errorf("refused: %s in %s leaves the package folder", name, nupkg)
		}
		target, err := w.confine(target)
		if err != nil {
			return n, err
		}
		total += int64(f.UncompressedSize64)
		if total > maxNupkgBytes {
			return n, fmt.Errorf("refused: %s unpacks to more than %d bytes", nupkg, maxNupkgBytes)
		}
		if err := w.journal.save(target); err != nil {
			return n, err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return n, fmt.Errorf("restore: %w", err)
		}
		if err := extractFile(f, target); err != nil {
			return n, err
		}
		w.files = append(w.files, w.rel(target))
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: %s holds no files", errNotApplicable, nupkg)
	}
	return n, nil
}

func extractFile(f *zip.File, target string) error {
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("restore %s: %w", f.Name, err)
	}
	defer rc.Close()
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fs.FileMode(0o644))
	if err != nil {
		return fmt.Errorf("restore %s: %w", f.Name, err)
	}
	if _, err := io.Copy(out, io.LimitReader(rc, maxNupkgBytes)); err != nil && !errors.Is(err, io.EOF) {
		out.Close()
		return fmt.Errorf("restore %s: %w", f.Name, err)
	}
	return out.Close()
}
