// Package backtest replays daily market history against rig profiles and
// compares the switching policy with hindsight and naive strategies: a
// dynamic-programming oracle that knows each day's figures in advance,
// the best single coin held throughout, and greedy daily switching.
package backtest

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quarryfleet/quarry/pkg/profit"
)

// Header is the exact column list LoadCSV accepts.
var header = []string{"date", "tag", "algorithm", "block_time_s", "block_reward", "difficulty", "nethash_hs", "price_usd"}

// Grin's primary proof of work: a C31 solution carries graph weight
// (2 << (31-24)) × 31 = 7936, and a graph holds a 42-cycle with probability
// about 1/42, so one graph is worth 7936/42 units of difficulty.
const (
	cuckatoo31 = "cuckatoo31"
	// c31HashesPerDifficulty is graphs per unit of Grin difficulty.
	c31HashesPerDifficulty = 42.0 / 7936
)

// Day is one UTC day of market figures, at most one entry per coin.
type Day struct {
	Date  time.Time
	Coins []profit.Coin
}

// History is a run of days in date order.
type History struct {
	Days []Day
}

// Coins lists every coin tag in the history, sorted.
func (h *History) Coins() []string {
	var tags []string
	for _, d := range h.Days {
		for _, c := range d.Coins {
			if !slices.Contains(tags, c.Tag) {
				tags = append(tags, c.Tag)
			}
		}
	}
	slices.Sort(tags)
	return tags
}

// CanonicalAlgorithm maps a history's algorithm label to the name rig
// profiles use: lower case, and Grin's dual-PoW labels
// ("Cuckatoo31+/Cuckarood29") to the primary "cuckatoo31", the only one
// whose earnings can be derived from the published difficulty alone (the
// secondary PoW's scaling factor is not in the data).
func CanonicalAlgorithm(label string) string {
	l := strings.ToLower(strings.TrimSpace(label))
	if strings.HasPrefix(l, "cuckatoo31") {
		return cuckatoo31
	}
	return l
}

// maxErrors bounds how many bad rows one error reports.
const maxErrors = 20

// LoadFile reads a market-history CSV from path.
func LoadFile(path string) (*History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("backtest: %w", err)
	}
	defer f.Close()
	h, err := LoadCSV(f)
	if err != nil {
		return nil, fmt.Errorf("backtest: %s: %w", path, err)
	}
	return h, nil
}

// LoadCSV reads the Coin Metrics daily format
// (date,tag,algorithm,block_time_s,block_reward,difficulty,nethash_hs,price_usd).
// Rows must be in date order. A row with a missing or non-positive value,
// an unparseable field or a repeated (date, tag) is rejected; the error
// names every bad row by line (up to 20) and nothing is returned, so a
// damaged file never yields a silently partial history.
//
// Coins with a network hash rate are priced from it. Rows without one are
// accepted only for Grin's Cuckatoo31, priced from difficulty.
func LoadCSV(r io.Reader) (*History, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(header)
	cr.ReuseRecord = true
	got, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("line 1: reading header: %w", err)
	}
	if !slices.Equal(got, header) {
		return nil, fmt.Errorf("line 1: header %q, want %q", strings.Join(got, ","), strings.Join(header, ","))
	}
	h := &History{}
	var errs []error
	seen := map[string]bool{}
	lastLine := 1
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// FieldPos is only defined for a record read without error.
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return nil, fmt.Errorf("after line %d: %w", lastLine, err)
			}
			errs = append(errs, fmt.Errorf("line %d: %w", pe.Line, pe.Err))
			if len(errs) >= maxErrors {
				break
			}
			continue
		}
		line, _ := cr.FieldPos(0)
		lastLine = line
		if day, coin, err := parseRow(rec); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", line, err))
		} else {
			key := rec[0] + "," + coin.Tag
			switch n := len(h.Days); {
			case seen[key]:
				errs = append(errs, fmt.Errorf("line %d: %s %s appears twice", line, rec[0], coin.Tag))
			case n > 0 && day.Before(h.Days[n-1].Date):
				errs = append(errs, fmt.Errorf("line %d: date %s before %s; rows must be in date order", line, rec[0], h.Days[n-1].Date.Format(time.DateOnly)))
			case n > 0 && day.Equal(h.Days[n-1].Date):
				h.Days[n-1].Coins = append(h.Days[n-1].Coins, coin)
			default:
				h.Days = append(h.Days, Day{Date: day, Coins: []profit.Coin{coin}})
			}
			seen[key] = true
		}
		if len(errs) >= maxErrors {
			errs = append(errs, errors.New("too many bad rows, stopped reading"))
			break
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(h.Days) == 0 {
		return nil, errors.New("no rows after the header")
	}
	return h, nil
}

func parseRow(rec []string) (time.Time, profit.Coin, error) {
	day, err := time.Parse(time.DateOnly, rec[0])
	if err != nil {
		return day, profit.Coin{}, fmt.Errorf("date %q: want YYYY-MM-DD", rec[0])
	}
	c := profit.Coin{Tag: strings.ToLower(strings.TrimSpace(rec[1])), Algorithm: CanonicalAlgorithm(rec[2])}
	if c.Tag == "" || c.Algorithm == "" {
		return day, c, errors.New("tag and algorithm must not be empty")
	}
	num := func(i int, optional bool) (float64, error) {
		s := strings.TrimSpace(rec[i])
		if s == "" && optional {
			return 0, nil
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("%s %q is not a finite number", header[i], rec[i])
		}
		if v <= 0 {
			return 0, fmt.Errorf("%s %v must be positive", header[i], v)
		}
		return v, nil
	}
	fields := []*float64{3: &c.BlockTime, 4: &c.BlockReward, 5: &c.Difficulty, 6: &c.NetHash, 7: &c.PriceUSD}
	for i := 3; i <= 7; i++ {
		if *fields[i], err = num(i, i == 6); err != nil {
			return day, c, err
		}
	}
	if c.NetHash == 0 {
		if c.Algorithm != cuckatoo31 {
			return day, c, fmt.Errorf("nethash_hs is empty and %s has no difficulty model (only Grin's Cuckatoo31 has one)", rec[2])
		}
		c.Kind, c.HashesPerDifficulty = profit.Difficulty, c31HashesPerDifficulty
	}
	return day, c, nil
}
