// Package nvmltest builds go-nvml mock machines that answer with readings
// recorded from real cards, and that remember overclock writes, for tests
// of code that talks to NVML.
package nvmltest
