package minerapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// num is a JSON number that miners sometimes send as a string ("GHS 5s":
// "13987.42", "Diff": " 13.1K"). OK is false when the field was absent, null
// or an empty string, so a missing reading never turns into a zero.
type num struct {
	V  float64
	OK bool
}

func (n *num) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		*n = num{}
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, ok, err := parseNumString(s)
		if err != nil {
			return err
		}
		*n = num{V: v, OK: ok}
		return nil
	}
	if b[0] == 't' || b[0] == 'f' {
		return fmt.Errorf("boolean %s where a number was expected", b)
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("number %.40q: %w", b, err)
	}
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return fmt.Errorf("number %.40q out of range", b)
	}
	*n = num{V: v, OK: true}
	return nil
}

// parseNumString reads "13987.42", " 13.1K" or "" (absent).
func parseNumString(s string) (float64, bool, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false, nil
	}
	mult := 1.0
	switch s[len(s)-1] {
	case 'k', 'K':
		mult = 1e3
	case 'M':
		mult = 1e6
	case 'G':
		mult = 1e9
	case 'T':
		mult = 1e12
	case 'P':
		mult = 1e15
	}
	if mult != 1 {
		s = strings.TrimSpace(s[:len(s)-1])
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false, fmt.Errorf("number string %.40q: %w", s, err)
	}
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false, fmt.Errorf("number string %.40q out of range", s)
	}
	return v * mult, true, nil
}

// count turns a share counter into uint64. Negative or absurd values come
// from broken replies; they read as zero rather than wrapping around.
func (n num) count() uint64 {
	if !n.OK || n.V <= 0 || n.V >= math.MaxInt64 {
		return 0
	}
	return uint64(n.V)
}

// ptr returns the reading as an optional value.
func (n num) ptr() *float64 {
	if !n.OK {
		return nil
	}
	v := n.V
	return &v
}

// rate checks a hashrate: negative rates are garbage, not a reading.
func (n num) rate(miner, field string) (float64, error) {
	if n.V < 0 {
		return 0, badReplyf(miner, "negative %s %g", field, n.V)
	}
	return n.V, nil
}
