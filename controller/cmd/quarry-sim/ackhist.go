package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ackMetric is the controller's histogram of report acknowledgement
// latency, timed inside the controller, so the simulator's own share of
// the end-to-end figure can be told apart.
const ackMetric = "quarry_controller_report_ack_seconds"

// commandMetric is the controller's histogram of commands from being
// queued to being handed to their rig's stream: its own share of a switch.
const commandMetric = "quarry_controller_command_send_seconds"

// histogram is one scrape of a Prometheus histogram: cumulative counts by
// upper bound, ascending, the last one +Inf.
type histogram struct {
	bounds []float64
	counts []uint64
	sum    float64
}

// ackHistogram scrapes url for ackMetric; an empty url reads nothing.
func ackHistogram(ctx context.Context, url string) (histogram, error) {
	return scrapeHistogram(ctx, url, ackMetric)
}

// scrapeHistogram scrapes url for the histogram name.
func scrapeHistogram(ctx context.Context, url, name string) (histogram, error) {
	if url == "" {
		return histogram{}, errors.New("no -controller-metrics")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return histogram{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return histogram{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return histogram{}, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return parseHistogram(resp.Body, name)
}

// parseHistogram reads name's buckets and sum from the text exposition
// format.
func parseHistogram(r io.Reader, name string) (histogram, error) {
	var h histogram
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	bucket, sum := name+`_bucket{le="`, name+"_sum "
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, bucket):
			le, rest, ok := strings.Cut(line[len(bucket):], `"} `)
			if !ok {
				return h, fmt.Errorf("%s: bad bucket line %q", name, line)
			}
			bound, err := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
			if err != nil {
				return h, fmt.Errorf("%s: bucket bound %q: %w", name, le, err)
			}
			n, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			if err != nil || n < 0 {
				return h, fmt.Errorf("%s: bucket count in %q", name, line)
			}
			h.bounds, h.counts = append(h.bounds, bound), append(h.counts, uint64(n))
		case strings.HasPrefix(line, sum):
			v, err := strconv.ParseFloat(strings.Fields(line[len(sum):])[0], 64)
			if err != nil {
				return h, fmt.Errorf("%s: sum in %q", name, line)
			}
			h.sum = v
		}
	}
	if err := sc.Err(); err != nil {
		return h, err
	}
	if len(h.bounds) == 0 || !math.IsInf(h.bounds[len(h.bounds)-1], 1) || !slices.IsSorted(h.bounds) {
		return h, fmt.Errorf("%s: no complete histogram in the scrape", name)
	}
	return h, nil
}

// since is what was observed between an earlier scrape and this one.
func (h histogram) since(earlier histogram) histogram {
	d := histogram{bounds: h.bounds, counts: slices.Clone(h.counts), sum: h.sum - earlier.sum}
	if slices.Equal(h.bounds, earlier.bounds) {
		for i := range d.counts {
			d.counts[i] -= min(d.counts[i], earlier.counts[i])
		}
	}
	return d
}

func (h histogram) count() uint64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// quantile is the upper bound of the bucket holding the q-th observation,
// "≤ 5ms" (the histogram says no more than that), or "> 10s" when it is
// above the last bound.
func (h histogram) quantile(q float64) string {
	n := h.count()
	if n == 0 {
		return "unknown"
	}
	rank := uint64(math.Ceil(q * float64(n)))
	for i, c := range h.counts {
		if c >= rank {
			if math.IsInf(h.bounds[i], 1) {
				if i == 0 {
					return "unknown"
				}
				return "> " + seconds(h.bounds[i-1])
			}
			return "≤ " + seconds(h.bounds[i])
		}
	}
	return "unknown"
}

func (h histogram) mean() string {
	if h.count() == 0 {
		return "unknown"
	}
	return seconds(h.sum / float64(h.count()))
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Microsecond).String()
}
