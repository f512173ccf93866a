package testsupport

import (
	"time"

	"google.golang.org/protobuf/proto"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// PowerReport is a rig report whose GPUs draw the given watts, followed by
// a lost GPU reading 999 W that must never count.
func PowerReport(at time.Time, watts ...float64) *quarryv1.Report {
	r := &quarryv1.Report{TimeUnixNano: at.UnixNano(), Host: &quarryv1.HostStats{CpuPercent: 5}}
	for i, w := range watts {
		r.Gpus = append(r.Gpus, &quarryv1.GPUStats{Index: uint32(i), PowerW: proto.Float64(w)})
	}
	r.Gpus = append(r.Gpus, &quarryv1.GPUStats{Index: uint32(len(watts)), Lost: true, PowerW: proto.Float64(999)})
	return r
}
