package flightsheet

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Rig is what a Selector is matched against: the parts of a rig's
// description that people target flight sheets by.
type Rig struct {
	ID   string
	Name string
	Tags []string
	GPUs []string // model names, e.g. "NVIDIA GeForce RTX 3070"
}

// Selector picks rigs. It is a comma-separated list of terms that must all
// match: "name=rig-*,tag=hosting,gpu=RTX 3070", or "rig-07".
//
//   - a bare word (no "="): the rig whose name or id it is, exactly, as
//     'quarryctl rig show' finds a rig; patterns need name=.
//   - name: glob (path.Match syntax) against the rig name.
//   - tag: glob against each tag; one matching tag is enough.
//   - gpu: one GPU model must match. A value with glob characters is a glob
//     on the whole model name; a plain value matches when the model name
//     contains it, ignoring case, so "RTX 3070" finds "NVIDIA GeForce RTX 3070".
//
// The empty selector matches every rig.
type Selector struct {
	terms []term
	text  string
}

type term struct {
	key, value string
	glob       bool   // value holds glob characters
	lower      string // value lowered, for gpu matching
}

var selectorKeys = []string{"name", "tag", "gpu"}

// rigKey is the key of a bare-word term; people cannot write it as a key.
const rigKey = ""

// ParseSelector parses and checks a selector, including its glob patterns,
// so that a bad pattern is reported when written rather than never matching.
func ParseSelector(s string) (Selector, error) {
	sel := Selector{text: strings.TrimSpace(s)}
	if sel.text == "" {
		return sel, nil
	}
	for i, part := range strings.Split(sel.text, ",") {
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok {
			if k == "" {
				return Selector{}, fmt.Errorf("selector term %d %q: empty; want a rig name or id, or key=value", i+1, part)
			}
			if strings.ContainsAny(k, `*?[\`) {
				return Selector{}, fmt.Errorf("selector term %d %q: a bare word is one rig's name or id; for a pattern write name=%s", i+1, part, k)
			}
			sel.terms = append(sel.terms, term{key: rigKey, value: k})
			continue
		}
		switch {
		case !slices.Contains(selectorKeys, k):
			return Selector{}, fmt.Errorf("selector term %d %q: unknown key %q (want one of %s)", i+1, part, k, strings.Join(selectorKeys, ", "))
		case v == "":
			return Selector{}, fmt.Errorf("selector term %d %q: empty value", i+1, part)
		}
		if _, err := path.Match(v, ""); err != nil {
			return Selector{}, fmt.Errorf("selector term %d %q: bad pattern: %w", i+1, part, err)
		}
		sel.terms = append(sel.terms, term{key: k, value: v, glob: strings.ContainsAny(v, `*?[\`), lower: strings.ToLower(v)})
	}
	return sel, nil
}

// MustParseSelector is ParseSelector for constants in code and tests.
func MustParseSelector(s string) Selector {
	sel, err := ParseSelector(s)
	if err != nil {
		panic(err)
	}
	return sel
}

// String returns the selector as it was written.
func (s Selector) String() string { return s.text }

// Matches reports whether every term of the selector matches the rig.
func (s Selector) Matches(r Rig) bool {
	for _, t := range s.terms {
		var ok bool
		switch t.key {
		case rigKey:
			ok = t.value == r.Name || (r.ID != "" && t.value == r.ID)
		case "name":
			ok = glob(t.value, r.Name)
		case "tag":
			ok = slices.ContainsFunc(r.Tags, func(tag string) bool { return glob(t.value, tag) })
		case "gpu":
			ok = slices.ContainsFunc(r.GPUs, func(model string) bool { return t.gpuMatch(model) })
		}
		if !ok {
			return false
		}
	}
	return true
}

func glob(pattern, s string) bool {
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}

func (t term) gpuMatch(model string) bool {
	if t.glob {
		return glob(t.lower, strings.ToLower(model))
	}
	return containsFold(model, t.lower)
}

// containsFold is strings.Contains ignoring case, without allocating: it
// runs for every GPU of every rig when a fleet is filtered.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// Filter returns the rigs the selector matches, in order.
func (s Selector) Filter(rigs []Rig) []Rig {
	var out []Rig
	for _, r := range rigs {
		if s.Matches(r) {
			out = append(out, r)
		}
	}
	return out
}
