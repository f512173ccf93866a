// Package nvidia reads NVIDIA GPUs through NVML (go-nvml). Builds without
// cgo, or off Linux, get a collector that reports no NVIDIA GPUs.
package nvidia

// Name is the collector's registry name.
const Name = "nvidia"
