// Package metrics exports the fleet to Prometheus: per-rig, per-miner and
// per-GPU gauges and counters read from the latest rig state at scrape
// time, and the controller's own health (ingest counters, commit latency,
// connected agents, outbox depth).
//
// The exporter keeps its own registry; nothing is registered with the
// client library's global default registry. Figures are never invented:
// a GPU that does not report its fan speed has no fan series.
package metrics

import (
	"log/slog"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/quarryfleet/quarry/controller/fleet"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Source is what the exporter reads at scrape time; *fleet.Fleet fits.
type Source interface {
	Rigs() []*quarryv1.Rig
	Stats() fleet.IngestStats
	Connected() int
}

var _ Source = (*fleet.Fleet)(nil)

// ProfitFunc returns a rig's expected profit in US dollars per day, and
// false when there is no estimate for it (yet).
type ProfitFunc func(rigID string) (usdPerDay float64, ok bool)

// OutboxDepthFunc returns how many records wait in each named outbox
// (commands, billing, ...). Called at scrape time; it must be quick.
type OutboxDepthFunc func() map[string]int

// Options tune the exporter.
type Options struct {
	// Runtime adds the Go runtime and process collectors.
	Runtime bool
	// Health adds collectors of the controller's own state (the Raft
	// group's, say) to both /metrics and /metrics/controller.
	Health []prometheus.Collector
	Log    *slog.Logger
}

// Exporter is the fleet's Prometheus collector and its /metrics handler.
type Exporter struct {
	src    Source
	reg    *prometheus.Registry
	health *prometheus.Registry
	log    *slog.Logger

	mu     sync.RWMutex
	profit ProfitFunc
	outbox OutboxDepthFunc
}

// New returns an exporter reading src, registered in its own registry.
func New(src Source, opts Options) *Exporter {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	e := &Exporter{src: src, reg: prometheus.NewRegistry(), health: prometheus.NewRegistry(), log: opts.Log}
	e.reg.MustRegister(e)
	e.health.MustRegister(health{e})
	for _, c := range opts.Health {
		e.reg.MustRegister(c)
		e.health.MustRegister(c)
	}
	if opts.Runtime {
		for _, reg := range []*prometheus.Registry{e.reg, e.health} {
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		}
	}
	return e
}

// SetProfit sets (or, with nil, clears) the per-rig profit source.
func (e *Exporter) SetProfit(fn ProfitFunc) {
	e.mu.Lock()
	e.profit = fn
	e.mu.Unlock()
}

// SetOutboxDepth sets (or clears) the outbox depth source.
func (e *Exporter) SetOutboxDepth(fn OutboxDepthFunc) {
	e.mu.Lock()
	e.outbox = fn
	e.mu.Unlock()
}

// Registry is the exporter's registry, for packages that add their own
// collectors beside the fleet's.
func (e *Exporter) Registry() *prometheus.Registry { return e.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (e *Exporter) Handler() http.Handler { return e.handler(e.reg) }

// HealthHandler serves only the controller's own families and the
// runtime's, none of the per-rig ones. A fleet of 10,000 six-GPU rigs is
// about a million series and seconds of CPU per scrape; the controller's
// health is a few dozen and can be scraped often (and is what the
// benchmarks read during a measured window).
func (e *Exporter) HealthHandler() http.Handler { return e.handler(e.health) }

func (e *Exporter) handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:          slogErrorLog{e.log},
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	})
}

type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Println(v ...any) { l.log.Warn("metrics", "err", v) }
