package minerapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Firmware of the cgminer family (cgminer, bmminer, BOSminer, btminer on
// Whatsminer, Avalon, Innosilicon) sends replies that are not quite JSON.
// Each defect below was seen on real machines; the public monitors that
// read these APIs carry the same repairs:
//
//   - a NUL byte, a newline or leftover bytes after the closing brace;
//   - `}{` with no comma between two objects of an array (Antminer stats);
//   - `[,{` and `,}` (a stray comma; bmminer and btminer);
//   - `""temp0` (a missing comma between two members; btminer 2023);
//   - bare nan, -nan, inf where a number should be (Avalon, some bmminer
//     builds print a failed sensor with %f);
//   - `\'` inside a string (btminer quotes its firmware version);
//   - raw newlines and tabs inside strings (btminer error texts).
//
// repairJSON rewrites those shapes into JSON and leaves everything else as
// it is, so the strict decoder still refuses real garbage.

// decodeTolerant decodes the first JSON value in b into v, repairing the
// firmware defects above only when the strict decoder refuses the reply.
func decodeTolerant(b []byte, v any) error {
	b = bytes.TrimRight(b, "\x00 \r\n\t")
	if err := json.Unmarshal(b, v); err == nil {
		return nil
	} else if len(b) == 0 {
		return err
	}
	fixed, ok := repairJSON(b)
	if !ok {
		return errors.New("reply is not a JSON object or array")
	}
	if err := json.Unmarshal(fixed, v); err != nil {
		return fmt.Errorf("reply is not JSON even after repairing known firmware defects: %w", err)
	}
	return nil
}

// repairJSON returns the first top-level value in b with the known firmware
// defects repaired. ok is false when b does not start (after whitespace)
// with an object or array.
func repairJSON(b []byte) ([]byte, bool) {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	if i == len(b) || (b[i] != '{' && b[i] != '[') {
		return nil, false
	}
	out := make([]byte, 0, len(b)+16)
	depth := 0
	// valueEnded is true right after a complete value (string, number,
	// literal, closed container) where a comma, colon or closer must come.
	valueEnded := false
	// afterOpen and afterComma mark where a stray comma is dropped.
	afterOpen, afterComma := false, false
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case isSpace(c):
			out = append(out, c)
			continue
		case c == '"':
			if valueEnded {
				out = append(out, ',') // `""temp0`: missing comma
			}
			i = copyString(b, i, &out)
			valueEnded, afterOpen, afterComma = true, false, false
		case c == '{' || c == '[':
			if valueEnded {
				out = append(out, ',') // `}{`: missing comma
			}
			out = append(out, c)
			depth++
			valueEnded, afterOpen, afterComma = false, true, false
		case c == '}' || c == ']':
			if afterComma {
				out = trimTrailingComma(out) // `,}`
			}
			out = append(out, c)
			depth--
			valueEnded, afterOpen, afterComma = true, false, false
			if depth <= 0 {
				// Anything after the closing brace (a second copy, log
				// text, NULs) is not part of the reply.
				return out, true
			}
		case c == ',':
			if afterOpen || afterComma {
				continue // `[,{` or `,,`
			}
			out = append(out, c)
			valueEnded, afterComma = false, true
		case c == ':':
			out = append(out, c)
			valueEnded, afterOpen, afterComma = false, false, false
		default:
			// A bare word or number.
			j := i
			for j < len(b) && !isSpace(b[j]) && !bytes.ContainsRune([]byte(`,:{}[]"`), rune(b[j])) {
				j++
			}
			word := b[i:j]
			if valueEnded {
				out = append(out, ',')
			}
			if isNonFinite(word) {
				// A sensor that failed is a missing reading, never a zero.
				out = append(out, "null"...)
			} else {
				out = append(out, word...)
			}
			i = j - 1
			valueEnded, afterOpen, afterComma = true, false, false
		}
	}
	// Unterminated: return what there is and let the decoder say why.
	return out, true
}

// copyString appends the string starting at b[start] (a quote) to out,
// escaping raw control characters and turning escapes JSON does not know
// (`\'`) into the character itself. It returns the index of the closing
// quote, or len(b)-1 when the string is unterminated.
func copyString(b []byte, start int, out *[]byte) int {
	o := append(*out, '"')
	i := start + 1
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '"':
			*out = append(o, '"')
			return i
		case c == '\\':
			if i+1 >= len(b) {
				o = append(o, `\\`...)
				continue
			}
			n := b[i+1]
			switch n {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't', 'u':
				o = append(o, c, n)
			default:
				// `\'` and other escapes JSON lacks stand for the
				// character itself.
				if n < 0x20 {
					o = appendControl(o, n)
				} else {
					o = append(o, n)
				}
			}
			i++
		case c < 0x20:
			o = appendControl(o, c)
		default:
			o = append(o, c)
		}
	}
	*out = o
	return len(b) - 1
}

func appendControl(o []byte, c byte) []byte {
	switch c {
	case '\n':
		return append(o, `\n`...)
	case '\r':
		return append(o, `\r`...)
	case '\t':
		return append(o, `\t`...)
	}
	return append(o, fmt.Sprintf(`\u%04x`, c)...)
}

func trimTrailingComma(out []byte) []byte {
	j := len(out) - 1
	for j >= 0 && isSpace(out[j]) {
		j--
	}
	if j >= 0 && out[j] == ',' {
		return append(out[:j], out[j+1:]...)
	}
	return out
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0 }

// isNonFinite matches what C's printf writes for a NaN or an infinity.
func isNonFinite(w []byte) bool {
	switch string(bytes.ToLower(w)) {
	case "nan", "-nan", "+nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity":
		return true
	}
	return false
}
