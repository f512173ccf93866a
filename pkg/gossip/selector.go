package gossip

import (
	"fmt"
	"path"
	"strings"
)

// selectorNameKey matches the member name in selectors.
const selectorNameKey = "name"

// Selector picks members by name and tags.
//
// Syntax: empty or "*" selects everyone; otherwise comma-separated terms
// that must all hold, each "key=glob" or "key!=glob", where key is "name" or
// a tag key (role, rig, ver, gpus, gpu_model, grpc, or an extra tag) and glob
// uses path.Match syntax. Examples: "role=agent", "gpu_model=RTX 30*,grpc!=ready",
// "name=rig-0[1-4]". A missing tag matches as the empty string.
type Selector struct {
	terms []selectorTerm
}

type selectorTerm struct {
	key, glob string
	negate    bool
}

// ParseSelector parses s; errors name the bad term.
func ParseSelector(s string) (Selector, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "*" {
		return Selector{}, nil
	}
	var sel Selector
	for raw := range strings.SplitSeq(s, ",") {
		term := strings.TrimSpace(raw)
		var t selectorTerm
		var ok bool
		if t.key, t.glob, ok = strings.Cut(term, "!="); ok {
			t.negate = true
		} else if t.key, t.glob, ok = strings.Cut(term, "="); !ok {
			return Selector{}, fmt.Errorf("selector term %q: want key=glob or key!=glob", term)
		}
		t.key, t.glob = strings.TrimSpace(t.key), strings.TrimSpace(t.glob)
		if t.key == "" {
			return Selector{}, fmt.Errorf("selector term %q: empty key", term)
		}
		if _, err := path.Match(t.glob, ""); err != nil {
			return Selector{}, fmt.Errorf("selector term %q: %w", term, err)
		}
		sel.terms = append(sel.terms, t)
	}
	return sel, nil
}

// Match reports whether a member with this name and tag map is selected.
func (s Selector) Match(name string, tags map[string]string) bool {
	for _, t := range s.terms {
		v := tags[t.key]
		if t.key == selectorNameKey {
			v = name
		}
		ok, _ := path.Match(t.glob, v) // pattern was checked in ParseSelector
		if ok == t.negate {
			return false
		}
	}
	return true
}
