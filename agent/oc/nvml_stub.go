//go:build !(linux && cgo)

package oc

import (
	"context"
	"errors"
)

// NVMLBackend is unavailable in builds without cgo on Linux.
type NVMLBackend struct{}

// OpenSystem reports that this build cannot drive NVIDIA cards.
func OpenSystem() (*NVMLBackend, error) {
	return nil, errors.New("oc: NVIDIA overclocking needs a linux build with cgo")
}

// Cards lists nothing.
func (*NVMLBackend) Cards(context.Context) ([]Card, error) { return nil, nil }

// Close does nothing.
func (*NVMLBackend) Close() error { return nil }
