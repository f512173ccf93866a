package minerapi

import (
	"strings"
)

// The cgminer API names its rate fields after a unit ("GHS 5s", "MHS av",
// chain_rateN in the unit of "GHS"), but several ASIC firmwares kept the
// Bitcoin field names while hashing another algorithm, so the name does
// not say the unit. cgUnits says what one unit letter of a field name
// stands for on a given machine, in hashes (or solutions) per second.
type cgUnits struct {
	// basis names the rule that chose the units, for error texts and tests.
	basis string
	// g and m multiply a value read from a "GHS ..." or "MHS ..." field
	// (and Antminer chain_rateN, which shares the "GHS" unit).
	g, m float64
}

var defaultCGUnits = cgUnits{basis: "field names", g: 1e9, m: 1e6}

// cgModelUnits lists the machines whose firmware misnames its units, by the
// model prefix the miner reports (stats "Type", version "Type"/"PROD").
// Each row is taken from readings of real machines: the rate reported next
// to the machine's own rated figure.
var cgModelUnits = []struct {
	prefix string
	units  cgUnits
}{
	// Scrypt: an L3+ rated 504 MH/s reports "GHS 5s":"504.56".
	{"Antminer L3", cgUnits{basis: "Antminer L3 (scrypt, MH/s in GHS fields)", g: 1e6, m: 1e6}},
	// X11: a D3 rated 15-19 GH/s reports "GHS 5s":"16346.64".
	{"Antminer D3", cgUnits{basis: "Antminer D3 (X11, MH/s in GHS fields)", g: 1e6, m: 1e6}},
	// Ethash: the E3 (180 MH/s) reports MH/s in GHS fields.
	{"Antminer E3", cgUnits{basis: "Antminer E3 (Ethash, MH/s in GHS fields)", g: 1e6, m: 1e6}},
	// Tensority: the B3 reports H/s in GHS fields.
	{"Antminer B3", cgUnits{basis: "Antminer B3 (Tensority, H/s in GHS fields)", g: 1, m: 1}},
	// Equihash: a Z9 mini rated 10 kSol/s reports "GHS 5s":"16.76" (with a
	// tuned firmware): kSol/s in GHS fields.
	{"Antminer Z", cgUnits{basis: "Antminer Z-series (Equihash, kSol/s in GHS fields)", g: 1e3, m: 1}},
}

// cgAlgoUnits applies when the reply names no model the table knows: the
// algorithm the flight sheet mines decides. Innosilicon's Equihash A9
// reports Sol/s in "MHS" fields (three boards of "MHS av":16500 on a
// 50 kSol/s machine).
var cgAlgoUnits = map[string]cgUnits{
	"equihash": {basis: "Equihash (Sol/s in MHS fields, kSol/s in GHS fields)", g: 1e3, m: 1},
	"scrypt":   {basis: "scrypt (MH/s in GHS fields)", g: 1e6, m: 1e6},
	"x11":      {basis: "X11 (MH/s in GHS fields)", g: 1e6, m: 1e6},
}

// unitsFor picks the units for a machine: its model first, then the
// algorithm, else the field names at face value.
func unitsFor(model, algorithm string) cgUnits {
	for _, r := range cgModelUnits {
		if strings.HasPrefix(model, r.prefix) {
			return r.units
		}
	}
	a := strings.ToLower(strings.TrimSpace(algorithm))
	if u, ok := cgAlgoUnits[a]; ok {
		return u
	}
	// Equihash variants (equihash144_5, "equihash 200,9", zhash) share
	// the Equihash reporting.
	if strings.HasPrefix(a, "equihash") || a == "zhash" {
		return cgAlgoUnits["equihash"]
	}
	return defaultCGUnits
}

// factor is the multiplier for a field whose name carries unit letter l.
func (u cgUnits) factor(l string) float64 {
	switch l {
	case "K":
		return 1e3
	case "M":
		return u.m
	case "G":
		return u.g
	case "T":
		return u.g * 1e3
	}
	return 1
}
