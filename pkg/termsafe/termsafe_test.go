package termsafe

import (
	"bytes"
	"strings"
	"testing"
)

func TestTextAndLine(t *testing.T) {
	cases := []struct{ name, in, text, line string }{
		{"plain", "rig-01 RTX 3070", "rig-01 RTX 3070", "rig-01 RTX 3070"},
		{"title change", "rig\x1b]0;pwned\x07-01", "rig-01", "rig-01"},
		{"title with ST", "a\x1b]0;pwned\x1b\\b", "ab", "ab"},
		{"clear screen", "\x1b[2Jrig", "rig", "rig"},
		{"colours", "\x1b[1;31mred\x1b[0m", "red", "red"},
		{"cursor save", "a\x1b7b", "ab", "ab"},
		{"charset", "a\x1b(0b", "ab", "ab"},
		{"8-bit CSI", "a\u009b2Jb", "ab", "ab"},
		{"8-bit OSC", "a\u009d0;x\u009cb", "ab", "ab"},
		{"C0 and DEL", "a\rb\x08c\x00d\x7fe", "abcde", "abcde"},
		{"newline and tab", "a\n\tb", "a\n\tb", "a  b"},
		{"unterminated OSC ends at a line", "a\x1b]0;x\nb", "a\nb", "a b"},
		{"bidi override", "abc\u202edef", "abcdef", "abcdef"},
		{"invalid utf-8", "a\xffb", "ab", "ab"},
		{"unicode kept", "Radeon™ RX 6800 – 16 GB", "Radeon™ RX 6800 – 16 GB", "Radeon™ RX 6800 – 16 GB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Text(c.in); got != c.text {
				t.Errorf("Text(%q) = %q, want %q", c.in, got, c.text)
			}
			if got := Line(c.in); got != c.line {
				t.Errorf("Line(%q) = %q, want %q", c.in, got, c.line)
			}
		})
	}
}

// A sequence or a character split across writes is still removed whole.
func TestWriterAcrossWrites(t *testing.T) {
	in := "ok \x1b]0;pwned\x07 \x1b[2J ™ \u009b1m done\n"
	for split := 1; split < len(in); split++ {
		var out bytes.Buffer
		w := NewWriter(&out, nil)
		for i := 0; i < len(in); i += split {
			if _, err := w.Write([]byte(in[i:min(i+split, len(in))])); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := out.String(), "ok   ™  done\n"; got != want {
			t.Fatalf("split %d: %q, want %q", split, got, want)
		}
	}
	var out bytes.Buffer
	off := NewWriter(&out, func() bool { return false })
	_, _ = off.Write([]byte("\x1b[2J"))
	if !strings.Contains(out.String(), "\x1b") {
		t.Fatal("an inactive writer changed its input")
	}
}
