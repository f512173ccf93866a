package recorded

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestPayloadsAreWhatTheyClaim(t *testing.T) {
	names := []string{XmrigSummary, XmrigBackends, TrexSummary, Lolminer1x, LolminerNew, GminerStat,
		CGMinerSummary, CGMinerDevs, CGMinerPools, BMMinerSummary, BMMinerPools,
		AntminerL3PlusPools, AntminerD3Summary, AntminerZ9Summary, AntminerZ9Version, InnosiliconA9Stats, InnosiliconA9Pools,
		AntminerS17Stats, AntminerS17Pools, BOSminerVersion, BOSminerSummary, BOSminerPools, BOSminerTemps, BOSminerFans,
		Xmrig2Summary, WildRigSummary, Lolminer041,
		PhoenixGetstat1, TTMinerGetstat1, SRBMinerMulti, SRBMinerMultiCPU, SRBMinerMulti363, Rigel, NBMinerStatus, NanominerStats, MiniZGetstat,
		WhatsminerSummary, WhatsminerPools, WhatsminerBadCmd}
	for _, n := range names {
		if !json.Valid(MustGet(n)) {
			t.Errorf("%s is not valid JSON", n)
		}
	}
	// The Antminer stats reply must keep the firmware bug it was recorded with.
	for _, n := range []string{BMMinerStats, AntminerL3PlusStats, AntminerD3Stats} {
		st := MustGet(n)
		if json.Valid(st) || !bytes.Contains(st, []byte("}{")) {
			t.Errorf("%s lost its missing comma", n)
		}
	}
	if _, err := Get("nope.json"); err == nil {
		t.Error("Get of a missing payload succeeded")
	}
}
