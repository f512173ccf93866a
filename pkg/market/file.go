package market

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// FileFormat is the value of "format" in Quarry's own market file.
const FileFormat = "quarry-market/v1"

// File reads Quarry's own market JSON from a local path. It serves
// operators who run offline or want to pin a coin's numbers. The format is:
//
//	{
//	  "format": "quarry-market/v1",
//	  "fetched": "2024-06-15T00:00:00Z",       // when these numbers were true
//	  "note": "free text, ignored",
//	  "coins": [
//	    {"tag": "etc", "name": "Ethereum Classic", "algorithm": "etchash",
//	     "block_time": 13.1, "block_reward": 2.56, "difficulty": 2.35e15,
//	     "nethash": 1.79e14, "price_usd": 26.1, "difficulty_kind": "nethash",
//	     "updated_at": "2024-06-15T00:00:00Z"}
//	  ]
//	}
//
// Numbers are plain JSON numbers in the units of Coin; "nethash" and
// "price_usd" may be omitted (nethash is then derived from difficulty;
// a coin without a price needs a price source). "difficulty_kind" is
// "nethash", "bitcoin" or "equihash" and defaults from the algorithm.
// Unknown fields are an error so a typo is not silently ignored.
type File struct {
	Path  string
	Label string // Name(); default "file"
}

var _ Source = (*File)(nil)

// Name implements Source.
func (f *File) Name() string { return nameOr(f.Label, "file") }

// Fetch implements Source; ctx is unused because a local read does not block
// for long.
func (f *File) Fetch(_ context.Context) ([]Coin, error) {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, fmt.Errorf("market file: %w", err)
	}
	doc, err := ParseFile(data, f.Name())
	if err != nil {
		return nil, fmt.Errorf("market file %s: %w", f.Path, err)
	}
	return doc.Coins, nil
}

// FileDoc is a decoded market file.
type FileDoc struct {
	Format  string    `json:"format"`
	Fetched time.Time `json:"fetched"`
	Note    string    `json:"note,omitempty"`
	Coins   []Coin    `json:"coins"`
}

// fileCoin mirrors Coin but leaves difficulty_kind optional so it can default
// from the algorithm.
type fileCoin struct {
	Coin
	Kind *DifficultyKind `json:"difficulty_kind"`
}

// ParseFile decodes Quarry's market file format (see File). Coins without
// updated_at take the document's fetched time.
func ParseFile(data []byte, source string) (FileDoc, error) {
	var raw struct {
		Format  string     `json:"format"`
		Fetched time.Time  `json:"fetched"`
		Note    string     `json:"note"`
		Coins   []fileCoin `json:"coins"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return FileDoc{}, fmt.Errorf("decode: %w", err)
	}
	if raw.Format != FileFormat {
		return FileDoc{}, fmt.Errorf("format is %q, want %q", raw.Format, FileFormat)
	}
	if raw.Fetched.IsZero() {
		return FileDoc{}, fmt.Errorf("missing \"fetched\" time")
	}
	doc := FileDoc{Format: raw.Format, Fetched: raw.Fetched.UTC(), Note: raw.Note, Coins: make([]Coin, 0, len(raw.Coins))}
	for _, fc := range raw.Coins {
		c := fc.Coin
		c.Tag = strings.ToLower(strings.TrimSpace(c.Tag))
		c.Algorithm = CanonicalAlgorithm(c.Algorithm)
		if fc.Kind != nil {
			c.Kind = *fc.Kind
		} else {
			c.Kind = KindForAlgorithm(c.Algorithm)
		}
		if c.UpdatedAt.IsZero() {
			c.UpdatedAt = doc.Fetched
		}
		c.Source = source
		doc.Coins = append(doc.Coins, c)
	}
	return doc, nil
}
