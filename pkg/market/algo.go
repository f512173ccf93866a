package market

import (
	"math"
	"strings"
)

// algoAliases maps the spellings that market sites use to one canonical
// lower-case name, so that a coin's algorithm matches the miner benchmarks.
var algoAliases = map[string]string{
	"ethash":         "ethash",
	"etchash":        "etchash",
	"kawpow":         "kawpow",
	"autolykos":      "autolykos2",
	"autolykos2":     "autolykos2",
	"kheavyhash":     "kheavyhash",
	"randomx":        "randomx",
	"randomxmonero":  "randomx",
	"rx0":            "randomx",
	"equihash":       "equihash",
	"equihash2009":   "equihash",
	"zhash":          "zhash",
	"equihash1445":   "zhash",
	"zelhash":        "zelhash",
	"equihash1254":   "zelhash",
	"firopow":        "firopow",
	"sha256":         "sha256d",
	"sha256d":        "sha256d",
	"scrypt":         "scrypt",
	"cryptonightr":   "cryptonightr",
	"octopus":        "octopus",
	"blake3":         "blake3",
	"karlsenhash":    "karlsenhash",
	"progpowz":       "progpowz",
	"ethashb3":       "ethashb3",
	"cuckatoo32":     "cuckatoo32",
	"verushash":      "verushash",
	"beamhashiii":    "beamhash3",
	"beamhash3":      "beamhash3",
	"nexapow":        "nexapow",
	"xelishashv2":    "xelishashv2",
	"dynexsolve":     "dynexsolve",
	"cortex":         "cuckaroo30",
	"cuckaroo30":     "cuckaroo30",
	"meowpow":        "meowpow",
	"abelhash":       "abelhash",
	"equihash1925":   "equihash1925",
	"equihash2109":   "equihash2109",
	"equihash1927":   "equihash1927",
	"equihash96,5":   "equihash965",
	"equihash965":    "equihash965",
	"kawpowneoxa":    "kawpow",
	"randomarq":      "randomarq",
	"randomxscala":   "randomx",
	"ghostrider":     "ghostrider",
	"heavyhash":      "heavyhash",
	"x11":            "x11",
	"x16r":           "x16r",
	"lyra2rev2":      "lyra2rev2",
	"neoscrypt":      "neoscrypt",
	"cryptonightgpu": "cryptonightgpu",
}

// CanonicalAlgorithm folds an algorithm name as written by a market site
// ("KAWPOW", "Equihash (144,5)", "RandomX") into the lower-case name the
// rest of Quarry uses ("kawpow", "zhash", "randomx"). Unknown names are
// lower-cased with punctuation removed, so they still compare equal across
// sources that only differ in spelling.
func CanonicalAlgorithm(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	k := b.String()
	if a, ok := algoAliases[k]; ok {
		return a
	}
	return k
}

// bitcoinStyleAlgos are algorithms whose chains use bitcoin's difficulty
// definition (difficulty 1 = 2^32 hashes).
var bitcoinStyleAlgos = map[string]bool{
	"sha256d": true, "scrypt": true, "kawpow": true, "firopow": true,
	"x11": true, "x16r": true, "meowpow": true, "lyra2rev2": true, "neoscrypt": true,
	"ghostrider": true, "verushash": true,
}

// equihashAlgos count solutions the zcash way (difficulty 1 = 8192 sols).
var equihashAlgos = map[string]bool{
	"equihash": true, "zhash": true, "zelhash": true, "equihash965": true,
	"equihash1925": true, "equihash2109": true, "equihash1927": true, "beamhash3": true,
}

// KindForAlgorithm returns the difficulty convention of chains that use the
// canonical algorithm algo; NethashBased when it is not known to differ.
func KindForAlgorithm(algo string) DifficultyKind {
	switch {
	case bitcoinStyleAlgos[algo]:
		return BitcoinStyle
	case equihashAlgos[algo]:
		return EquihashStyle
	default:
		return NethashBased
	}
}

// inferKind picks the difficulty convention from a source that reports
// difficulty, nethash and block time together; their ratio tells which
// factor the chain uses. It falls back to the algorithm table when the
// ratio matches none of them (rounding, a lagging site).
func inferKind(algo string, difficulty, nethash, blockTime float64) DifficultyKind {
	if difficulty > 0 && nethash > 0 && blockTime > 0 {
		r := nethash * blockTime / difficulty
		for _, k := range []DifficultyKind{NethashBased, BitcoinStyle, EquihashStyle} {
			if q := r / k.factor(); q > 0.5 && q < 2 {
				return k
			}
		}
	}
	return KindForAlgorithm(algo)
}

// finite reports whether f is a usable positive number.
func finite(f float64) bool { return f > 0 && !math.IsInf(f, 0) && !math.IsNaN(f) }
