// Package redact removes secrets from text and YAML that is shown to
// people who may not read them (dashboard viewers, viewer-role API
// callers) or stored where secrets do not belong (the audit log).
package redact

import (
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Mark replaces every redacted value.
const Mark = "[redacted]"

// secretWords are the fragments of a field or flag name that say its
// value is a credential.
var secretWords = []string{"password", "passwd", "passphrase", "secret", "token", "apikey", "api_key", "api-key", "private_key", "credential", "authorization"}

// SecretName reports whether a field, key or flag name holds a secret.
func SecretName(name string) bool {
	n := strings.ToLower(strings.TrimLeft(name, "-"))
	if n == "pass" || n == "p" || n == "pw" || n == "pwd" {
		return true
	}
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// YAML returns doc with the value of every secret-named field replaced by
// Mark, every value under a mapping named in wholeMaps (a job's "env", say)
// replaced, the password of every URL with one replaced, and the value
// after a password flag in argument lists replaced. A document that does
// not parse is replaced whole: what cannot be read cannot be vouched for.
func YAML(doc []byte, wholeMaps ...string) []byte {
	if len(doc) == 0 {
		return doc
	}
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return []byte(Mark + "\n")
	}
	whole := map[string]bool{}
	for _, k := range wholeMaps {
		whole[k] = true
	}
	walk(&root, whole)
	out, err := yaml.Marshal(&root)
	if err != nil {
		return []byte(Mark + "\n")
	}
	return out
}

func walk(n *yaml.Node, whole map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walk(c, whole)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch {
			case whole[k.Value]:
				redactAll(v)
			case SecretName(k.Value) && v.Kind == yaml.ScalarNode:
				setMark(v)
			default:
				walk(v, whole)
			}
		}
	case yaml.SequenceNode:
		afterFlag := false
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				walk(c, whole)
				afterFlag = false
				continue
			}
			if afterFlag {
				setMark(c)
				afterFlag = false
				continue
			}
			if strings.HasPrefix(c.Value, "-") {
				if name, _, ok := strings.Cut(c.Value, "="); ok {
					if SecretName(name) {
						c.Value, c.Tag, c.Style = name+"="+Mark, "!!str", 0
					}
					continue
				}
				afterFlag = SecretName(c.Value)
				continue
			}
			c.Value = Text(c.Value)
		}
	case yaml.ScalarNode:
		n.Value = Text(n.Value)
	case yaml.AliasNode:
		// An alias points at a node that is walked where it is defined.
	}
}

func redactAll(n *yaml.Node) {
	switch n.Kind {
	case yaml.ScalarNode:
		setMark(n)
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			redactAll(n.Content[i])
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			// KEY=value list entries keep their key.
			if k, _, ok := strings.Cut(c.Value, "="); ok && c.Kind == yaml.ScalarNode && k != "" && !strings.ContainsAny(k, " \t") {
				c.Value, c.Tag, c.Style = k+"="+Mark, "!!str", 0
				continue
			}
			redactAll(c)
		}
	default:
		for _, c := range n.Content {
			redactAll(c)
		}
	}
}

func setMark(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	n.Kind, n.Value, n.Tag, n.Style, n.Content = yaml.ScalarNode, Mark, "!!str", 0, nil
}

var (
	// bearer and join tokens of this product, Stripe keys, and
	// "name: value" or "name=value" pairs whose name says secret.
	tokenRE  = regexp.MustCompile(`\b(qat1|qjt1)\.[A-Za-z0-9._:-]+`)
	stripeRE = regexp.MustCompile(`\b((?:sk|rk|whsec)_(?:live_|test_)?)[A-Za-z0-9]+`)
	pairRE   = regexp.MustCompile(`(?i)\b([a-z0-9_-]*(?:password|passwd|passphrase|secret|token|api_?key|private_key|credential)[a-z0-9_-]*)(["']?\s*[:=]\s*["']?)([^\s"',;&]+)`)
	urlRE    = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@]+@[^\s]*`)
)

// Text replaces the credentials it recognises in free text: this
// product's tokens, Stripe keys, "password=…"-style pairs and URL
// passwords. It is the last line of defence for stored text such as the
// audit log; fields known to hold secrets are dropped before they get
// there.
func Text(s string) string {
	if s == "" {
		return s
	}
	// Each expression runs only when s holds the literal text any match of
	// it must contain: most text (every audit entry's fields, every command
	// of a fleet-wide switch) has none, and four regular-expression scans
	// of it were most of an audit entry's cost.
	if strings.Contains(s, "qat1.") || strings.Contains(s, "qjt1.") {
		s = tokenRE.ReplaceAllString(s, "$1."+Mark)
	}
	if strings.Contains(s, "k_") || strings.Contains(s, "whsec_") {
		s = stripeRE.ReplaceAllString(s, "$1"+Mark)
	}
	if strings.ContainsAny(s, ":=") && mayNameSecret(s) {
		s = pairRE.ReplaceAllString(s, "$1$2"+Mark)
	}
	if strings.Contains(s, "://") && strings.Contains(s, "@") {
		s = urlRE.ReplaceAllStringFunc(s, redactURL)
	}
	return s
}

// mayNameSecret reports whether s may hold a word pairRE looks for,
// matched as pairRE's (?i) matches it.
func mayNameSecret(s string) bool {
	l := foldForSecretWords(s)
	for _, w := range []string{"pass", "secret", "token", "apikey", "api_key", "private_key", "credential"} {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}

// foldForSecretWords lower-cases s for the search for pairRE's words. The
// words are ASCII, and under Unicode case folding only two characters
// outside ASCII fold to an ASCII letter: the long s (U+017F) and the
// Kelvin sign (U+212A); TestOnlyTwoRunesFoldIntoASCII checks that. Every
// other character outside ASCII becomes a NUL, which no word contains,
// so text in any language is searched as cheaply as English.
func foldForSecretWords(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case r >= 'A' && r <= 'Z':
			b = append(b, byte(r-'A'+'a'))
		case r < utf8.RuneSelf:
			b = append(b, byte(r))
		case r == '\u017F':
			b = append(b, 's')
		case r == '\u212A':
			b = append(b, 'k')
		default:
			b = append(b, 0)
		}
	}
	return string(b)
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		// Not parseable: drop everything before the @ after the scheme.
		scheme, rest, _ := strings.Cut(raw, "://")
		_, host, _ := strings.Cut(rest, "@")
		return scheme + "://" + Mark + "@" + host
	}
	if _, has := u.User.Password(); !has {
		return raw
	}
	scheme, rest, _ := strings.Cut(raw, "://")
	user, host, _ := strings.Cut(rest, "@")
	name, _, _ := strings.Cut(user, ":")
	return scheme + "://" + name + ":" + Mark + "@" + host
}
