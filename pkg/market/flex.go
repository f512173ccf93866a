package market

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// flexFloat decodes a JSON number, a number written as a string (WhatToMine's
// block_time), or null. Anything else becomes NaN rather than failing the
// whole payload, so validation can drop that one coin with a reason.
type flexFloat float64

func (f *flexFloat) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = 0
	case b[0] == '"':
		s, ok := unquote(b)
		if !ok {
			*f = flexFloat(math.NaN())
			return nil
		}
		s = strings.TrimSpace(strings.ReplaceAll(s, ",", ""))
		if s == "" {
			*f = 0
			return nil
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			v = math.NaN()
		}
		*f = flexFloat(v)
	default:
		v, err := strconv.ParseFloat(string(b), 64)
		if err != nil {
			v = math.NaN()
		}
		*f = flexFloat(v)
	}
	return nil
}

// flexString decodes a JSON string, or a number or bool as its text, so a
// site that changes a field's type does not break the whole payload.
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		v, ok := unquote(b)
		if !ok {
			return fmt.Errorf("bad string %.20s", b)
		}
		*s = flexString(v)
		return nil
	}
	if string(b) == "null" {
		*s = ""
		return nil
	}
	if len(b) > 0 && (b[0] == '{' || b[0] == '[') {
		return fmt.Errorf("want a string, got %.20s", b)
	}
	*s = flexString(b)
	return nil
}

// unknownNeg turns minerstat's -1 ("unknown") into 0 ("not supplied").
func unknownNeg(f flexFloat) float64 {
	if f == -1 {
		return 0
	}
	return float64(f)
}

// unquote decodes a JSON string literal, skipping the general decoder for
// the common case of no escapes (every field WhatToMine sends).
func unquote(b []byte) (string, bool) {
	if len(b) >= 2 && b[len(b)-1] == '"' && bytes.IndexByte(b[1:len(b)-1], '\\') < 0 && bytes.IndexByte(b[1:len(b)-1], '"') < 0 {
		return string(b[1 : len(b)-1]), true
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", false
	}
	return s, true
}
