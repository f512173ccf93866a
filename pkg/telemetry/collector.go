package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"
)

// Collector fills its part of a Sample: the host collector sets s.Host,
// GPU collectors append to s.GPUs. An error means the part is missing or
// incomplete; the sampler still reports what the others found.
type Collector interface {
	Update(ctx context.Context, s *Sample) error
}

// Config is what every collector factory may draw on.
type Config struct {
	Logger *slog.Logger
	// ProcRoot and SysRoot replace /proc and /sys, so tests and containers
	// can point collectors at another tree. Empty means the real ones.
	ProcRoot string
	SysRoot  string
	// DataDir is the agent data directory whose disk usage is reported.
	DataDir string
	// OC tells GPU collectors which overclock is applied; may be nil.
	OC OCSource
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// Factory builds a collector. It returns an error only for a broken
// configuration; missing hardware is a collector that finds nothing.
type Factory func(cfg Config) (Collector, error)

// Registry maps collector names to factories, in registration order. Each
// process builds its own; there is no package-level registry.
type Registry struct {
	names     []string
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{factories: map[string]Factory{}}
}

// Register adds a factory under name; a name may be used once.
func (r *Registry) Register(name string, f Factory) error {
	if name == "" || f == nil {
		return errors.New("telemetry: register needs a name and a factory")
	}
	if _, dup := r.factories[name]; dup {
		return fmt.Errorf("telemetry: collector %q registered twice", name)
	}
	r.names = append(r.names, name)
	r.factories[name] = f
	return nil
}

// Names lists registered collectors in registration order.
func (r *Registry) Names() []string { return slices.Clone(r.names) }

// Build creates a Sampler running the named collectors, or all of them
// when names is empty.
func (r *Registry) Build(cfg Config, names ...string) (*Sampler, error) {
	if len(names) == 0 {
		names = r.names
	}
	s := &Sampler{logger: cfg.logger(), now: time.Now}
	for _, n := range names {
		f, ok := r.factories[n]
		if !ok {
			_ = s.Close()
			return nil, fmt.Errorf("telemetry: unknown collector %q (have %v)", n, r.names)
		}
		c, err := f(cfg)
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("telemetry: collector %q: %w", n, err)
		}
		s.add(n, c)
	}
	return s, nil
}

// Sampler runs a fixed set of collectors. It is not safe for concurrent
// Sample calls: collectors keep the previous reading to compute rates.
type Sampler struct {
	logger     *slog.Logger
	now        func() time.Time
	names      []string
	collectors []Collector
}

// NewSampler runs the given collectors under the given names; it is the
// way to assemble a sampler without a registry (tests, one-off tools).
func NewSampler(logger *slog.Logger, named map[string]Collector) *Sampler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sampler{logger: logger, now: time.Now}
	keys := make([]string, 0, len(named))
	for k := range named {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		s.add(k, named[k])
	}
	return s
}

func (s *Sampler) add(name string, c Collector) {
	s.names = append(s.names, name)
	s.collectors = append(s.collectors, c)
}

// Sample reads every collector once. The returned Sample is always usable;
// the error joins the failures of individual collectors.
func (s *Sampler) Sample(ctx context.Context) (*Sample, error) {
	out := &Sample{Time: s.now()}
	var errs []error
	for i, c := range s.collectors {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if err := c.Update(ctx, out); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.names[i], err))
		}
	}
	return out, errors.Join(errs...)
}

// Close releases collectors that hold resources (NVML handles).
func (s *Sampler) Close() error {
	var errs []error
	for i, c := range s.collectors {
		if cl, ok := c.(io.Closer); ok {
			if err := cl.Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.names[i], err))
			}
		}
	}
	return errors.Join(errs...)
}
