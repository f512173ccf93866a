package fleet

import (
	"errors"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// A rollup is the compact record of a report kept as a rig's history: a
// Report holding only
//
//   - seq and time;
//   - of the host: CPU percent, memory used and total, load1, CPU power;
//   - of each GPU: index, bus id, lost, temperature, fan percent, power,
//     core and memory clock;
//   - of each miner: miner, algorithm, coin, hash rate, accepted,
//     rejected, state.
//
// The committer encodes one for every report. Building the message and
// marshalling it through reflection was an eighth of the controller's CPU
// at saturation, so encodeRollup writes the wire format directly, byte for
// byte what proto.Marshal gives for that message (fields in number order,
// proto3 zero values left out, optional fields whenever set, repeated
// doubles packed); TestRollupEncodingMatchesMarshal and FuzzRollupEncoding
// hold it to that.

// Field numbers, from proto/quarry/v1/types.proto.
const (
	reportSeq, reportTime, reportHost, reportGPUs, reportMiners protowire.Number = 1, 2, 3, 4, 5

	hostCPUPercent, hostMemUsed, hostMemTotal, hostLoad1, hostCPUPower protowire.Number = 1, 2, 3, 4, 16

	gpuIndex, gpuBusID, gpuLost, gpuTemp, gpuFan, gpuPower, gpuSMClock, gpuMemClock protowire.Number = 1, 5, 6, 7, 9, 10, 15, 16

	minerName, minerAlgo, minerCoin, minerHashrate, minerAccepted, minerRejected, minerState protowire.Number = 1, 3, 4, 6, 7, 8, 11
)

// encodeRollup returns rep's rollup in a fresh slice of its exact size
// (bbolt keeps values until the commit). Like proto.Marshal, it refuses a
// string that is not valid UTF-8.
func encodeRollup(rep *quarryv1.Report) ([]byte, error) {
	if err := rollupStringsValid(rep); err != nil {
		return nil, err
	}
	b := make([]byte, 0, sizeRollup(rep))
	b = appendVarintField(b, reportSeq, rep.GetSeq())
	b = appendVarintField(b, reportTime, uint64(rep.GetTimeUnixNano()))
	if h := rep.GetHost(); h != nil {
		b = protowire.AppendTag(b, reportHost, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeHost(h)))
		b = appendHost(b, h)
	}
	for _, g := range rep.GetGpus() {
		b = protowire.AppendTag(b, reportGPUs, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeGPU(g)))
		b = appendGPU(b, g)
	}
	for _, m := range rep.GetMiners() {
		b = protowire.AppendTag(b, reportMiners, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeMiner(m)))
		b = appendMiner(b, m)
	}
	return b, nil
}

func rollupStringsValid(rep *quarryv1.Report) error {
	for _, g := range rep.GetGpus() {
		if !utf8.ValidString(g.GetBusId()) {
			return errors.New("rollup: GPU bus id is not valid UTF-8")
		}
	}
	for _, m := range rep.GetMiners() {
		for _, s := range [...]string{m.GetMiner(), m.GetAlgorithm(), m.GetCoin(), m.GetState()} {
			if !utf8.ValidString(s) {
				return errors.New("rollup: a miner field is not valid UTF-8")
			}
		}
	}
	return nil
}

func sizeRollup(rep *quarryv1.Report) int {
	n := sizeVarintField(reportSeq, rep.GetSeq()) + sizeVarintField(reportTime, uint64(rep.GetTimeUnixNano()))
	if h := rep.GetHost(); h != nil {
		n += protowire.SizeTag(reportHost) + protowire.SizeBytes(sizeHost(h))
	}
	for _, g := range rep.GetGpus() {
		n += protowire.SizeTag(reportGPUs) + protowire.SizeBytes(sizeGPU(g))
	}
	for _, m := range rep.GetMiners() {
		n += protowire.SizeTag(reportMiners) + protowire.SizeBytes(sizeMiner(m))
	}
	return n
}

func sizeHost(h *quarryv1.HostStats) int {
	return sizeDoubleField(hostCPUPercent, h.GetCpuPercent()) + sizeVarintField(hostMemUsed, h.GetMemoryUsedBytes()) +
		sizeVarintField(hostMemTotal, h.GetMemoryTotalBytes()) + sizeDoubleField(hostLoad1, h.GetLoad1()) +
		sizeOptDouble(hostCPUPower, h.CpuPowerW)
}

func appendHost(b []byte, h *quarryv1.HostStats) []byte {
	b = appendDoubleField(b, hostCPUPercent, h.GetCpuPercent())
	b = appendVarintField(b, hostMemUsed, h.GetMemoryUsedBytes())
	b = appendVarintField(b, hostMemTotal, h.GetMemoryTotalBytes())
	b = appendDoubleField(b, hostLoad1, h.GetLoad1())
	return appendOptDouble(b, hostCPUPower, h.CpuPowerW)
}

// A nil GPU in the list is written as an empty one, as proto.Marshal
// writes it.
func sizeGPU(g *quarryv1.GPUStats) int {
	if g == nil {
		return 0
	}
	n := sizeVarintField(gpuIndex, uint64(g.GetIndex())) + sizeStringField(gpuBusID, g.GetBusId())
	if g.GetLost() {
		n += protowire.SizeTag(gpuLost) + 1
	}
	n += sizeOptDouble(gpuTemp, g.TemperatureC)
	if fans := len(g.GetFanPercent()); fans > 0 {
		n += protowire.SizeTag(gpuFan) + protowire.SizeBytes(fans*8)
	}
	return n + sizeOptDouble(gpuPower, g.PowerW) + sizeOptVarint(gpuSMClock, g.SmClockMhz) +
		sizeOptVarint(gpuMemClock, g.MemoryClockMhz)
}

func appendGPU(b []byte, g *quarryv1.GPUStats) []byte {
	if g == nil {
		return b
	}
	b = appendVarintField(b, gpuIndex, uint64(g.GetIndex()))
	b = appendStringField(b, gpuBusID, g.GetBusId())
	if g.GetLost() {
		b = protowire.AppendTag(b, gpuLost, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	b = appendOptDouble(b, gpuTemp, g.TemperatureC)
	if fans := g.GetFanPercent(); len(fans) > 0 {
		b = protowire.AppendTag(b, gpuFan, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(len(fans)*8))
		for _, f := range fans {
			b = protowire.AppendFixed64(b, math.Float64bits(f))
		}
	}
	b = appendOptDouble(b, gpuPower, g.PowerW)
	b = appendOptVarint(b, gpuSMClock, g.SmClockMhz)
	return appendOptVarint(b, gpuMemClock, g.MemoryClockMhz)
}

func sizeMiner(m *quarryv1.MinerStats) int {
	return sizeStringField(minerName, m.GetMiner()) + sizeStringField(minerAlgo, m.GetAlgorithm()) +
		sizeStringField(minerCoin, m.GetCoin()) + sizeDoubleField(minerHashrate, m.GetHashrate()) +
		sizeVarintField(minerAccepted, m.GetAccepted()) + sizeVarintField(minerRejected, m.GetRejected()) +
		sizeStringField(minerState, m.GetState())
}

func appendMiner(b []byte, m *quarryv1.MinerStats) []byte {
	b = appendStringField(b, minerName, m.GetMiner())
	b = appendStringField(b, minerAlgo, m.GetAlgorithm())
	b = appendStringField(b, minerCoin, m.GetCoin())
	b = appendDoubleField(b, minerHashrate, m.GetHashrate())
	b = appendVarintField(b, minerAccepted, m.GetAccepted())
	b = appendVarintField(b, minerRejected, m.GetRejected())
	return appendStringField(b, minerState, m.GetState())
}

// Proto3 fields without presence are left out at their zero value; a
// double is zero only as +0 (proto.Marshal writes -0).
func doubleIsZero(v float64) bool { return math.Float64bits(v) == 0 }

func sizeVarintField(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func sizeDoubleField(num protowire.Number, v float64) int {
	if doubleIsZero(v) {
		return 0
	}
	return protowire.SizeTag(num) + 8
}

func appendDoubleField(b []byte, num protowire.Number, v float64) []byte {
	if doubleIsZero(v) {
		return b
	}
	return protowire.AppendFixed64(protowire.AppendTag(b, num, protowire.Fixed64Type), math.Float64bits(v))
}

func sizeStringField(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}

func sizeOptDouble(num protowire.Number, v *float64) int {
	if v == nil {
		return 0
	}
	return protowire.SizeTag(num) + 8
}

func appendOptDouble(b []byte, num protowire.Number, v *float64) []byte {
	if v == nil {
		return b
	}
	return protowire.AppendFixed64(protowire.AppendTag(b, num, protowire.Fixed64Type), math.Float64bits(*v))
}

func sizeOptVarint(num protowire.Number, v *uint32) int {
	if v == nil {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(uint64(*v))
}

func appendOptVarint(b []byte, num protowire.Number, v *uint32) []byte {
	if v == nil {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), uint64(*v))
}
