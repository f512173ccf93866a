package selfheal

import (
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// A minimal ECMA-335 reader: enough of a .NET assembly's metadata to list
// the namespaces of its public types, so a missing namespace is resolved
// to the framework assembly that really defines it
// (System.Runtime.Serialization.Json lives in System.Runtime.Serialization,
// System.Web.Script.Serialization in System.Web.Extensions), never guessed
// from the namespace's name.

// maxAssemblyBytes skips files too large to be reference assemblies.
const maxAssemblyBytes = 64 << 20

var errNotCLI = errors.New("not a .NET assembly")

// assemblyNamespaces returns the namespaces of the public types defined in
// the assembly at path, each with the names of those types.
func assemblyNamespaces(path string) (map[string][]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxAssemblyBytes {
		return nil, fmt.Errorf("%s: %d bytes is too large", path, st.Size())
	}
	f, err := pe.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	var dd []pe.DataDirectory
	switch h := f.OptionalHeader.(type) {
	case *pe.OptionalHeader32:
		dd = h.DataDirectory[:h.NumberOfRvaAndSizes]
	case *pe.OptionalHeader64:
		dd = h.DataDirectory[:h.NumberOfRvaAndSizes]
	}
	if len(dd) <= 14 || dd[14].VirtualAddress == 0 {
		return nil, errNotCLI
	}
	read := func(rva, n uint32) ([]byte, error) {
		for _, s := range f.Sections {
			if rva >= s.VirtualAddress && rva+n <= s.VirtualAddress+s.VirtualSize && n < maxAssemblyBytes {
				buf := make([]byte, n)
				if _, err := s.ReadAt(buf, int64(rva-s.VirtualAddress)); err != nil && !errors.Is(err, io.EOF) {
					return nil, err
				}
				return buf, nil
			}
		}
		return nil, fmt.Errorf("rva %#x outside every section", rva)
	}
	cli, err := read(dd[14].VirtualAddress, 72)
	if err != nil {
		return nil, err
	}
	mdRVA, mdSize := binary.LittleEndian.Uint32(cli[8:]), binary.LittleEndian.Uint32(cli[12:])
	md, err := read(mdRVA, mdSize)
	if err != nil {
		return nil, err
	}
	return parseMetadata(md)
}

func parseMetadata(md []byte) (map[string][]string, error) {
	bad := fmt.Errorf("%w: malformed metadata", errNotCLI)
	if len(md) < 20 || binary.LittleEndian.Uint32(md) != 0x424A5342 {
		return nil, bad
	}
	vlen := int(binary.LittleEndian.Uint32(md[12:]))
	off := 16 + vlen
	if off+4 > len(md) {
		return nil, bad
	}
	nstreams := int(binary.LittleEndian.Uint16(md[off+2:]))
	off += 4
	var tables, strs []byte
	for i := 0; i < nstreams; i++ {
		if off+8 > len(md) {
			return nil, bad
		}
		so, sz := int(binary.LittleEndian.Uint32(md[off:])), int(binary.LittleEndian.Uint32(md[off+4:]))
		off += 8
		end := off
		for end < len(md) && md[end] != 0 {
			end++
		}
		name := string(md[off:end])
		off = (end + 4) &^ 3
		if so < 0 || sz < 0 || so+sz > len(md) {
			return nil, bad
		}
		switch name {
		case "#~", "#-":
			tables = md[so : so+sz]
		case "#Strings":
			strs = md[so : so+sz]
		}
	}
	if len(tables) < 24 || strs == nil {
		return nil, bad
	}
	heapSizes := tables[6]
	valid := binary.LittleEndian.Uint64(tables[8:])
	var rows [64]int
	p := 24
	for i := 0; i < 64; i++ {
		if valid&(1<<uint(i)) != 0 {
			if p+4 > len(tables) {
				return nil, bad
			}
			rows[i] = int(binary.LittleEndian.Uint32(tables[p:]))
			p += 4
		}
	}
	strIdx, guidIdx := 2, 2
	if heapSizes&1 != 0 {
		strIdx = 4
	}
	if heapSizes&2 != 0 {
		guidIdx = 4
	}
	idx := func(table int) int {
		if rows[table] > 0xFFFF {
			return 4
		}
		return 2
	}
	coded := func(bits int, ts ...int) int {
		for _, t := range ts {
			if rows[t] > (0xFFFF >> uint(bits)) {
				return 4
			}
		}
		return 2
	}
	const (
		tModule, tTypeRef, tTypeDef, tField, tMethod, tModuleRef, tTypeSpec, tAssemblyRef = 0x00, 0x01, 0x02, 0x04, 0x06, 0x1A, 0x1B, 0x23
	)
	moduleRow := 2 + strIdx + 3*guidIdx
	typeRefRow := coded(2, tModule, tModuleRef, tAssemblyRef, tTypeRef) + 2*strIdx
	typeDefRow := 4 + 2*strIdx + coded(2, tTypeDef, tTypeRef, tTypeSpec) + idx(tField) + idx(tMethod)
	p += rows[tModule]*moduleRow + rows[tTypeRef]*typeRefRow
	if p+rows[tTypeDef]*typeDefRow > len(tables) {
		return nil, bad
	}
	str := func(b []byte) string {
		var i int
		if strIdx == 4 {
			i = int(binary.LittleEndian.Uint32(b))
		} else {
			i = int(binary.LittleEndian.Uint16(b))
		}
		if i >= len(strs) {
			return ""
		}
		end := i
		for end < len(strs) && strs[end] != 0 {
			end++
		}
		return string(strs[i:end])
	}
	out := map[string][]string{}
	for r := 0; r < rows[tTypeDef]; r++ {
		row := tables[p+r*typeDefRow:]
		flags := binary.LittleEndian.Uint32(row)
		if flags&0x7 != 1 { // public, top-level
			continue
		}
		if ns := str(row[4+strIdx:]); ns != "" {
			name, _, _ := strings.Cut(str(row[4:]), "`")
			out[ns] = append(out[ns], name)
		}
	}
	return out, nil
}

// frameworkIndex maps namespaces to the reference assemblies of one
// framework directory that define them. It is built once per directory.
type frameworkIndex struct {
	mu  sync.Mutex
	dir map[string]map[string]map[string][]string // api dir -> namespace -> assembly -> public type names
}

// lookup returns the assemblies that define public types in ns, sorted.
func (x *frameworkIndex) lookup(apiDir, ns string) []string {
	types := x.types(apiDir, ns)
	out := make([]string, 0, len(types))
	for a := range types {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// types returns, per assembly, the public types it defines in ns.
func (x *frameworkIndex) types(apiDir, ns string) map[string][]string {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.dir == nil {
		x.dir = map[string]map[string]map[string][]string{}
	}
	idx, ok := x.dir[apiDir]
	if !ok {
		idx = map[string]map[string][]string{}
		dlls, _ := filepath.Glob(filepath.Join(apiDir, "*.dll"))
		sort.Strings(dlls)
		for _, dll := range dlls {
			nss, err := assemblyNamespaces(dll)
			if err != nil {
				continue
			}
			name := strings.TrimSuffix(filepath.Base(dll), filepath.Ext(dll))
			for n, ts := range nss {
				if idx[n] == nil {
					idx[n] = map[string][]string{}
				}
				idx[n][name] = ts
			}
		}
		x.dir[apiDir] = idx
	}
	return idx[ns]
}
