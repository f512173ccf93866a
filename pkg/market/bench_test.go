package market

import (
	"encoding/json"
	"fmt"
	"testing"
)

// wtmPayload builds an n-coin WhatToMine payload by repeating the recorded
// coins under new names, the size of WhatToMine's full GPU+ASIC list.
func wtmPayload(b *testing.B, n int) []byte {
	var doc struct {
		Coins map[string]json.RawMessage `json:"coins"`
	}
	if err := json.Unmarshal(readTestdata(b, "whattomine_coins.json"), &doc); err != nil {
		b.Fatal(err)
	}
	var recs []map[string]any
	for _, raw := range doc.Coins {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			b.Fatal(err)
		}
		if m["tag"] != "NICEHASH" {
			recs = append(recs, m)
		}
	}
	out := make(map[string]any, n)
	for i := range n {
		m := make(map[string]any, len(recs[0]))
		for k, v := range recs[i%len(recs)] {
			m[k] = v
		}
		m["tag"] = fmt.Sprintf("C%03d", i)
		out[fmt.Sprintf("Coin%03d", i)] = m
	}
	data, err := json.Marshal(map[string]any{"coins": out})
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func BenchmarkParseWhatToMine300(b *testing.B) {
	data := wtmPayload(b, 300)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		coins, err := ParseWhatToMine(data, "wtm", t0)
		if err != nil || len(coins) != 300 {
			b.Fatalf("%d coins, %v", len(coins), err)
		}
	}
}
