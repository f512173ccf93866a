// Package termsafe removes what a terminal would act on rather than show
// from text that came from rigs: escape sequences (CSI, OSC, DCS and the
// rest, 7-bit and 8-bit), C0 and C1 control characters, DEL, bidirectional
// overrides and invalid UTF-8. A rig's hostname such as "\x1b]0;pwned\a"
// or "\x1b[2J" must reach an operator's screen as inert text.
//
// Text keeps newlines and tabs (logs); Line also turns them into spaces,
// so that a name cannot forge rows of a table or lines of a log; Writer
// applies Text to a stream. All three share one scanner.
package termsafe

import (
	"io"
	"strings"
	"unicode/utf8"
)

type state uint8

const (
	plain  state = iota
	esc          // after ESC
	escInt       // ESC followed by intermediate bytes
	csi          // control sequence: parameters until a final byte
	str          // OSC, DCS, SOS, PM, APC: until BEL, ST or a newline
	strEsc       // ESC inside a string: ST if followed by '\'
)

// scanner is the state machine; it carries state across writes.
type scanner struct{ st state }

// feed appends to out what of r may be shown.
func (s *scanner) feed(out []byte, r rune) []byte {
	switch s.st {
	case esc:
		switch {
		case r == '[':
			s.st = csi
		case r == ']' || r == 'P' || r == 'X' || r == '^' || r == '_':
			s.st = str
		case r >= 0x20 && r <= 0x2f:
			s.st = escInt
		default:
			s.st = plain // the final byte of a two-character sequence
			if r == '\n' {
				return append(out, '\n')
			}
		}
		return out
	case escInt:
		if r < 0x20 || r > 0x2f {
			s.st = plain
		}
		return out
	case csi:
		if r < 0x20 || r > 0x3f {
			s.st = plain // final byte, or anything that cannot continue it
		}
		return out
	case str, strEsc:
		switch {
		case r == 0x07 || r == 0x9c || (s.st == strEsc && r == '\\'):
			s.st = plain
		case r == '\n':
			// Terminals would wait for the terminator; a line ends it
			// here so that one bad name cannot swallow the output.
			s.st = plain
			return append(out, '\n')
		case r == 0x1b:
			s.st = strEsc
		default:
			s.st = str
		}
		return out
	}
	switch {
	case r == 0x1b:
		s.st = esc
	case r == 0x9b:
		s.st = csi
	case r == 0x9d || r == 0x90 || r == 0x98 || r == 0x9e || r == 0x9f:
		s.st = str
	case r == '\n' || r == '\t':
		return append(out, byte(r))
	case r < 0x20 || (r >= 0x7f && r <= 0x9f), r == utf8.RuneError:
	case (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
		// Bidirectional overrides reorder what follows on screen.
	default:
		return utf8.AppendRune(out, r)
	}
	return out
}

// Text returns s without terminal controls; newlines and tabs stay.
func Text(s string) string {
	if isPlain(s, true) {
		return s
	}
	var sc scanner
	out := make([]byte, 0, len(s))
	for _, r := range s {
		out = sc.feed(out, r)
	}
	return string(out)
}

// Line is Text for one-line fields (names, models, messages): newlines
// and tabs become spaces.
func Line(s string) string {
	if isPlain(s, false) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return ' '
		}
		return r
	}, Text(s))
}

// isPlain is the fast path: printable ASCII (and, when multiline, newlines
// and tabs) needs no work.
func isPlain(s string, multiline bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			continue
		}
		if multiline && (c == '\n' || c == '\t') {
			continue
		}
		return false
	}
	return true
}

// Writer passes Text of everything written to w, carrying escape
// sequences and UTF-8 characters split across writes. When active
// returns false, bytes pass unchanged (JSON output, which its encoder
// has already escaped).
type Writer struct {
	w      io.Writer
	active func() bool
	sc     scanner
	carry  []byte // an incomplete UTF-8 character from the last write
}

// NewWriter returns a Writer over w; active nil means always.
func NewWriter(w io.Writer, active func() bool) *Writer {
	return &Writer{w: w, active: active}
}

// Write reports len(p) written when the cleaned bytes were written.
func (t *Writer) Write(p []byte) (int, error) {
	if t.active != nil && !t.active() {
		return t.w.Write(p)
	}
	buf := append(t.carry, p...)
	t.carry = nil
	out := make([]byte, 0, len(buf))
	for i := 0; i < len(buf); {
		r, n := utf8.DecodeRune(buf[i:])
		if r == utf8.RuneError && n == 1 && !utf8.FullRune(buf[i:]) {
			t.carry = append([]byte(nil), buf[i:]...)
			break
		}
		out = t.sc.feed(out, r)
		i += n
	}
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
