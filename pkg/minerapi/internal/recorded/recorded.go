// Package recorded holds stats API replies recorded from real miners, shared
// by the minerapi tests, its fuzz seeds and the fakeminer program. It lives
// beside the code rather than in a testdata folder because go:embed cannot
// reach a parent directory and fakeminer must carry the payloads inside its
// binary. Only test code and fakeminer import it, so the agent never links it.
package recorded

import (
	"embed"
	"fmt"
)

//go:embed *.json *.txt
var files embed.FS

// Names of the recorded replies, one per miner and endpoint.
const (
	XmrigSummary   = "xmrig-summary.json"
	XmrigBackends  = "xmrig-backends.json"
	TrexSummary    = "trex-summary.json"
	Lolminer1x     = "lolminer-1x.json"
	LolminerNew    = "lolminer-new.json"
	GminerStat     = "gminer-stat.json"
	CGMinerSummary = "cgminer-summary.json"
	CGMinerDevs    = "cgminer-devs.json"
	CGMinerPools   = "cgminer-pools.json"
	BMMinerSummary = "bmminer-summary.json"
	BMMinerPools   = "bmminer-pools.json"
	// BMMinerStats keeps the Antminer firmware's missing comma between the
	// two STATS objects, so it is not valid JSON on purpose.
	BMMinerStats = "bmminer-stats.txt"

	// Captures from real machines; README.md names where each was
	// published. The .txt ones keep the firmware's missing comma.
	AntminerL3PlusStats = "antminer-l3plus-stats.txt"
	AntminerL3PlusPools = "antminer-l3plus-pools.json"
	AntminerD3Stats     = "antminer-d3-stats.txt"
	AntminerD3Summary   = "antminer-d3-summary.json"
	AntminerZ9Summary   = "antminer-z9mini-summary.json"
	AntminerZ9Version   = "antminer-z9mini-version.json"
	InnosiliconA9Stats  = "innosilicon-a9-stats.json"
	InnosiliconA9Pools  = "innosilicon-a9-pools.json"
	AntminerS17Stats    = "antminer-s17pro-stats.json"
	AntminerS17Pools    = "antminer-s17pro-pools.json"
	BOSminerVersion     = "bosminer-s9-version.json"
	BOSminerSummary     = "bosminer-s9-summary.json"
	BOSminerPools       = "bosminer-s9-pools.json"
	BOSminerTemps       = "bosminer-s9-temps.json"
	BOSminerFans        = "bosminer-s9-fans.json"
	Xmrig2Summary       = "xmrig2-nvidia-summary.json"
	WildRigSummary      = "wildrig-summary.json"
	Lolminer041         = "lolminer-041.json"
	PhoenixGetstat1     = "phoenix-getstat1.json"
	TTMinerGetstat1     = "ttminer-getstat1.json"
	CCMinerSummary      = "ccminer-summary.txt"
	CCMinerPool         = "ccminer-pool.txt"
	CCMinerHWInfo       = "ccminer-hwinfo.txt"
	CPUMinerSummary     = "cpuminer-summary.txt"
	CPUMinerThreads     = "cpuminer-threads.txt"
	SRBMinerMulti       = "srbminer-multi-018.json"
	SRBMinerMultiCPU    = "srbminer-multi-056-cpu.json"
	SRBMinerMulti363    = "srbminer-multi-363.json"
	Rigel               = "rigel-1232.json"
	NBMinerStatus       = "nbminer-status.json"
	NanominerStats      = "nanominer-stats.json"
	MiniZGetstat        = "miniz-getstat.json"
	WhatsminerSummary   = "whatsminer-m20s-summary.json"
	WhatsminerPools     = "whatsminer-m20s-pools.json"
	WhatsminerBadCmd    = "whatsminer-invalid-cmd.json"
)

// Get returns a fresh copy of the named payload.
func Get(name string) ([]byte, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("recorded payload %q: %w", name, err)
	}
	return b, nil
}

// MustGet is Get for tests and fixed names; it panics on a name that is not
// embedded, which is a programming error caught by the first test run.
func MustGet(name string) []byte {
	b, err := Get(name)
	if err != nil {
		panic(err)
	}
	return b
}
