//go:build !(linux && cgo)

package nvidia

import (
	"context"

	"github.com/quarryfleet/quarry/pkg/telemetry"
)

// Factory returns a collector that reports no GPUs: NVML needs cgo on Linux.
func Factory(cfg telemetry.Config) (telemetry.Collector, error) {
	if cfg.Logger != nil {
		cfg.Logger.Info("NVIDIA GPUs not read: this build has no NVML support (needs linux and cgo)")
	}
	return none{}, nil
}

type none struct{}

func (none) Update(context.Context, *telemetry.Sample) error { return nil }
