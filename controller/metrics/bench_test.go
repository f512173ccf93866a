package metrics_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/metrics"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

type staticFleet []*quarryv1.Rig

func (s staticFleet) Rigs() []*quarryv1.Rig { return s }
func (staticFleet) Stats() fleet.IngestStats {
	return fleet.IngestStats{Committed: 1, Batches: 1, LastBatchNs: 1e6}
}
func (staticFleet) Connected() int { return 1 }

// BenchmarkScrape renders /metrics for a fleet of rigs with six GPUs each.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("rigs=%d", n), func(b *testing.B) {
			rep := fixture(b)
			var gpus []*quarryv1.GPUStats
			for i := range 6 {
				g := proto.Clone(rep.Gpus[i%2]).(*quarryv1.GPUStats)
				g.Index = uint32(i)
				gpus = append(gpus, g)
			}
			rigs := make(staticFleet, n)
			for i := range rigs {
				rigs[i] = &quarryv1.Rig{Id: fmt.Sprintf("rig-%06d", i), Name: fmt.Sprintf("rig%d", i), Online: true, Reports: 1, LastSeenUnixNano: 1, Host: rep.Host, Gpus: gpus, Miners: rep.Miners}
			}
			h := metrics.New(rigs, metrics.Options{}).Handler()
			b.ReportAllocs()
			var size int
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
				size = w.Body.Len()
				_, _ = io.Copy(io.Discard, w.Body)
			}
			b.ReportMetric(float64(size)/1024, "KiB/scrape")
		})
	}
}
