// Package archivetest builds tar.gz and zip archives for tests, including
// the hostile ones (absolute names, "..", escaping links) real tools would
// refuse to write.
package archivetest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io/fs"
	"time"
)

// Member is one archive member. Link, if set, makes it a symlink (or with
// Hard a hard link) to Link; Dir makes it a directory.
type Member struct {
	Name string
	Body []byte
	Mode fs.FileMode
	Link string
	Hard bool
	Dir  bool
}

// TarGz returns the members as a gzipped tar.
func TarGz(ms ...Member) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, m := range ms {
		h := &tar.Header{Name: m.Name, Mode: int64(m.Mode.Perm()), ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		switch {
		case m.Dir:
			h.Typeflag = tar.TypeDir
		case m.Link != "" && m.Hard:
			h.Typeflag, h.Linkname = tar.TypeLink, m.Link
		case m.Link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, m.Link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(m.Body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			panic(err) // only test code builds archives
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(m.Body); err != nil {
				panic(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	if err := gz.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// Zip returns the members as a zip archive. Hard links have no zip form
// and are written as symlinks.
func Zip(ms ...Member) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range ms {
		h := &zip.FileHeader{Name: m.Name, Method: zip.Deflate, Modified: time.Unix(1700000000, 0)}
		mode := m.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		body := m.Body
		switch {
		case m.Dir:
			mode |= fs.ModeDir
			if h.Name != "" && h.Name[len(h.Name)-1] != '/' {
				h.Name += "/"
			}
		case m.Link != "":
			mode |= fs.ModeSymlink
			body = []byte(m.Link)
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			panic(err)
		}
		if !m.Dir {
			if _, err := w.Write(body); err != nil {
				panic(err)
			}
		}
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
