package metrics

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/telemetry"
	"github.com/quarryfleet/quarry/pkg/termsafe"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

var (
	rigLabels   = []string{"rig", "name"}
	minerLabels = []string{"rig", "name", "miner", "coin", "algorithm"}
	gpuLabels   = []string{"rig", "name", "gpu", "model"}
	gpuHashLbl  = []string{"rig", "name", "gpu", "model", "miner", "coin", "algorithm"}
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// Descriptors, one per metric family.
var (
	dRigOnline     = desc("quarry_rig_online", "1 when the rig's agent has a live stream to the controller.", rigLabels...)
	dRigInfo       = desc("quarry_rig_info", "Constant 1, labelled with the rig's hostname and agent version.", "rig", "name", "hostname", "version")
	dRigLastReport = desc("quarry_rig_last_report_timestamp_seconds", "Time of the rig's latest committed report, by the rig's clock.", rigLabels...)
	dRigReports    = desc("quarry_rig_reports_total", "Reports committed for the rig.", rigLabels...)
	dRigGaps       = desc("quarry_rig_sequence_gaps_total", "Report sequence numbers the controller never received (dropped by a full agent buffer).", rigLabels...)
	dRigCPU        = desc("quarry_rig_cpu_usage_ratio", "Host CPU use, 0 to 1.", rigLabels...)
	dRigMemUsed    = desc("quarry_rig_memory_used_bytes", "Host memory in use.", rigLabels...)
	dRigMemTotal   = desc("quarry_rig_memory_total_bytes", "Host memory installed.", rigLabels...)
	dRigLoad1      = desc("quarry_rig_load1", "Host one-minute load average.", rigLabels...)
	dRigCPUPower   = desc("quarry_rig_cpu_power_watts", "CPU package power, from RAPL or the agent's configured figure; absent when unknown.", rigLabels...)
	dRigProfit     = desc("quarry_rig_profit_usd_per_day", "Expected profit after power cost and fees, in US dollars per day.", rigLabels...)
	dRigPower      = desc("quarry_rig_power_watts", "Rig power draw as billing meters it: the GPUs that report power, lost ones left out.", rigLabels...)

	dMinerHash    = desc("quarry_miner_hashrate_hashes_per_second", "Miner's total hashrate as its stats API reports it.", minerLabels...)
	dMinerShares  = desc("quarry_miner_shares_total", "Shares the miner submitted, by pool verdict; resets when the miner restarts.", append(append([]string{}, minerLabels...), "result")...)
	dMinerRunning = desc("quarry_miner_running", "1 when the miner's state is running.", minerLabels...)
	dMinerUp      = desc("quarry_miner_up", "1 when the miner's hashrate is known (its stats API gave a reading); 0 when it is warming, unreachable, crashed or stopped, and then no hashrate sample is exported.", minerLabels...)
	dMinerUptime  = desc("quarry_miner_uptime_seconds", "Seconds since the miner started.", minerLabels...)

	dGPUHash    = desc("quarry_gpu_hashrate_hashes_per_second", "One GPU's hashrate as the miner reports it.", gpuHashLbl...)
	dGPUShares  = desc("quarry_gpu_shares_total", "Shares one GPU found, by pool verdict; resets when the miner restarts.", append(append([]string{}, gpuHashLbl...), "result")...)
	dGPUTemp    = desc("quarry_gpu_temperature_celsius", "GPU core temperature.", gpuLabels...)
	dGPUMemTemp = desc("quarry_gpu_memory_temperature_celsius", "GPU memory (junction) temperature.", gpuLabels...)
	dGPUFan     = desc("quarry_gpu_fan_ratio", "Fan speed, 0 to 1 of its maximum.", append(append([]string{}, gpuLabels...), "fan")...)
	dGPUPower   = desc("quarry_gpu_power_watts", "GPU board power draw.", gpuLabels...)
	dGPULimit   = desc("quarry_gpu_power_limit_watts", "GPU power limit in force.", gpuLabels...)
	dGPUSM      = desc("quarry_gpu_sm_clock_hertz", "GPU core (SM) clock.", gpuLabels...)
	dGPUMem     = desc("quarry_gpu_memory_clock_hertz", "GPU memory clock.", gpuLabels...)
	dGPUUtil    = desc("quarry_gpu_utilization_ratio", "GPU busy time, 0 to 1.", gpuLabels...)
	dGPULost    = desc("quarry_gpu_lost", "1 when the driver has lost the GPU (fell off the bus).", gpuLabels...)

	dRigs        = desc("quarry_controller_rigs", "Enrolled rigs by state.", "state")
	dConnected   = desc("quarry_controller_agents_connected", "Live agent streams.")
	dCommitted   = desc("quarry_controller_reports_committed_total", "Reports durably committed since the controller started.")
	dDuplicates  = desc("quarry_controller_reports_duplicate_total", "Replayed reports dropped because they were already committed.")
	dBatches     = desc("quarry_controller_commit_batches_total", "Database transactions that committed reports.")
	dLastCommit  = desc("quarry_controller_last_commit_duration_seconds", "Wall time of the latest report commit transaction.")
	dAckLatency  = desc("quarry_controller_report_ack_seconds", "Time from a report reaching the committer's queue to its acknowledgement going to the rig: queueing, the durable commit and the observers of committed reports.")
	dCmdLatency  = desc("quarry_controller_command_send_seconds", "Time from a command being queued to its being handed to the rig's stream; a command for a rig that was away counts until the rig came back.")
	dOutboxDepth = desc("quarry_controller_outbox_depth", "Records waiting in an outbox.", "outbox")
)

var fleetDescs = []*prometheus.Desc{
	dRigOnline, dRigInfo, dRigLastReport, dRigReports, dRigGaps, dRigCPU, dRigMemUsed, dRigMemTotal, dRigLoad1, dRigCPUPower, dRigProfit, dRigPower,
	dMinerHash, dMinerShares, dMinerRunning, dMinerUp, dMinerUptime,
	dGPUHash, dGPUShares, dGPUTemp, dGPUMemTemp, dGPUFan, dGPUPower, dGPULimit, dGPUSM, dGPUMem, dGPUUtil, dGPULost,
	dRigs,
}

var healthDescs = []*prometheus.Desc{dConnected, dCommitted, dDuplicates, dBatches, dLastCommit, dAckLatency, dCmdLatency, dOutboxDepth}

// Describe implements prometheus.Collector: every family /metrics serves.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range fleetDescs {
		ch <- d
	}
	health{e}.Describe(ch)
}

// health collects the controller's own families, which read no rig, so
// that they can be scraped apart from the fleet's (see HealthHandler).
type health struct{ e *Exporter }

func (h health) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range healthDescs {
		ch <- d
	}
}

func (h health) Collect(ch chan<- prometheus.Metric) {
	m := &emitter{ch: ch, seen: map[seenKey]bool{}}
	h.e.mu.RLock()
	outbox := h.e.outbox
	h.e.mu.RUnlock()
	st := h.e.src.Stats()
	m.emit(dConnected, prometheus.GaugeValue, float64(h.e.src.Connected()))
	m.emit(dCommitted, prometheus.CounterValue, float64(st.Committed))
	m.emit(dDuplicates, prometheus.CounterValue, float64(st.Duplicates))
	m.emit(dBatches, prometheus.CounterValue, float64(st.Batches))
	if st.Batches > 0 {
		m.emit(dLastCommit, prometheus.GaugeValue, float64(st.LastBatchNs)/1e9)
	}
	m.ch <- latencyHistogram(dAckLatency, &st.AckLatency)
	m.ch <- latencyHistogram(dCmdLatency, &st.CommandSendLatency)
	if outbox != nil {
		for name, n := range outbox() {
			m.emit(dOutboxDepth, prometheus.GaugeValue, float64(n), name)
		}
	}
}

// emitter sends const metrics and drops a repeated label set (two miners
// with one name on a rig, say), which the registry would refuse.
type emitter struct {
	ch   chan<- prometheus.Metric
	seen map[seenKey]bool
}

type seenKey struct {
	d      *prometheus.Desc
	labels string
}

// emit sends one sample. Label values come from rigs (names, GPU models,
// miners): terminal controls are removed, as quarryctl removes them, so
// that a scrape viewed with curl or in a console cannot drive a terminal.
func (m *emitter) emit(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	for i, l := range labels {
		labels[i] = termsafe.Line(l)
	}
	key := seenKey{d, strings.Join(labels, "\x00")}
	if m.seen[key] {
		return
	}
	m.seen[key] = true
	m.ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect implements prometheus.Collector; it reads the fleet now.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	m := &emitter{ch: ch, seen: map[seenKey]bool{}}
	e.mu.RLock()
	profit := e.profit
	e.mu.RUnlock()

	var online, offline, revoked int
	for _, r := range e.src.Rigs() {
		switch {
		case r.Revoked:
			revoked++
		case r.Online:
			online++
		default:
			offline++
		}
		collectRig(m, r, profit)
	}
	m.emit(dRigs, prometheus.GaugeValue, float64(online), "online")
	m.emit(dRigs, prometheus.GaugeValue, float64(offline), "offline")
	m.emit(dRigs, prometheus.GaugeValue, float64(revoked), "revoked")
	health{e}.Collect(ch)
}

func collectRig(m *emitter, r *quarryv1.Rig, profit ProfitFunc) {
	id, name := r.Id, r.Name
	m.emit(dRigOnline, prometheus.GaugeValue, b2f(r.Online), id, name)
	m.emit(dRigInfo, prometheus.GaugeValue, 1, id, name, r.Hostname, r.Version)
	m.emit(dRigReports, prometheus.CounterValue, float64(r.Reports), id, name)
	m.emit(dRigGaps, prometheus.CounterValue, float64(r.SeqGaps), id, name)
	if r.Reports > 0 && r.LastSeenUnixNano > 0 {
		m.emit(dRigLastReport, prometheus.GaugeValue, float64(r.LastSeenUnixNano)/1e9, id, name)
	}
	if h := r.Host; h != nil {
		m.emit(dRigCPU, prometheus.GaugeValue, h.CpuPercent/100, id, name)
		m.emit(dRigLoad1, prometheus.GaugeValue, h.Load1, id, name)
		if h.CpuPowerW != nil {
			m.emit(dRigCPUPower, prometheus.GaugeValue, *h.CpuPowerW, id, name)
		}
		if h.MemoryTotalBytes > 0 {
			m.emit(dRigMemUsed, prometheus.GaugeValue, float64(h.MemoryUsedBytes), id, name)
			m.emit(dRigMemTotal, prometheus.GaugeValue, float64(h.MemoryTotalBytes), id, name)
		}
	}
	if w, ok := r.MeasuredPowerW(); ok {
		m.emit(dRigPower, prometheus.GaugeValue, w, id, name)
	}
	if profit != nil {
		if usd, ok := profit(id); ok {
			m.emit(dRigProfit, prometheus.GaugeValue, usd, id, name)
		}
	}

	byBus := map[string]*quarryv1.GPUStats{}
	for _, g := range r.Gpus {
		gl := []string{id, name, strconv.Itoa(int(g.Index)), g.Name}
		if bus, err := telemetry.NormalizeBusID(g.BusId); err == nil {
			byBus[bus] = g
		}
		m.emit(dGPULost, prometheus.GaugeValue, b2f(g.Lost), gl...)
		opt := func(d *prometheus.Desc, v *float64, scale float64) {
			if v != nil {
				m.emit(d, prometheus.GaugeValue, *v*scale, gl...)
			}
		}
		opt(dGPUTemp, g.TemperatureC, 1)
		opt(dGPUMemTemp, g.MemoryTemperatureC, 1)
		opt(dGPUPower, g.PowerW, 1)
		opt(dGPULimit, g.PowerLimitW, 1)
		opt(dGPUUtil, g.UtilizationPercent, 0.01)
		if g.SmClockMhz != nil {
			m.emit(dGPUSM, prometheus.GaugeValue, float64(*g.SmClockMhz)*1e6, gl...)
		}
		if g.MemoryClockMhz != nil {
			m.emit(dGPUMem, prometheus.GaugeValue, float64(*g.MemoryClockMhz)*1e6, gl...)
		}
		for i, pct := range g.FanPercent {
			m.emit(dGPUFan, prometheus.GaugeValue, pct/100, append(gl, strconv.Itoa(i))...)
		}
	}

	for _, mn := range r.Miners {
		ml := []string{id, name, mn.Miner, mn.Coin, mn.Algorithm}
		// An unknown hashrate has no sample: a zero would read as a miner
		// that mines nothing, and would drag sums and alerts.
		known := mn.HashrateKnown()
		if known {
			m.emit(dMinerHash, prometheus.GaugeValue, mn.Hashrate, ml...)
		}
		m.emit(dMinerUp, prometheus.GaugeValue, b2f(known), ml...)
		m.emit(dMinerRunning, prometheus.GaugeValue, b2f(mn.State == "running"), ml...)
		m.emit(dMinerUptime, prometheus.GaugeValue, float64(mn.UptimeSeconds), ml...)
		m.emit(dMinerShares, prometheus.CounterValue, float64(mn.Accepted), append(ml, "accepted")...)
		m.emit(dMinerShares, prometheus.CounterValue, float64(mn.Rejected), append(ml, "rejected")...)
		m.emit(dMinerShares, prometheus.CounterValue, float64(mn.Stale), append(ml, "stale")...)
		for _, mg := range mn.Gpus {
			gpu, model := mg.BusId, ""
			if bus, err := telemetry.NormalizeBusID(mg.BusId); err == nil {
				gpu = bus
				if g := byBus[bus]; g != nil {
					gpu, model = strconv.Itoa(int(g.Index)), g.Name
				}
			}
			hl := []string{id, name, gpu, model, mn.Miner, mn.Coin, mn.Algorithm}
			if known {
				m.emit(dGPUHash, prometheus.GaugeValue, mg.Hashrate, hl...)
			}
			m.emit(dGPUShares, prometheus.CounterValue, float64(mg.Accepted), append(hl, "accepted")...)
			m.emit(dGPUShares, prometheus.CounterValue, float64(mg.Rejected), append(hl, "rejected")...)
		}
	}
}

// latencyHistogram is h in Prometheus's cumulative form.
func latencyHistogram(d *prometheus.Desc, h *fleet.LatencyHistogram) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds()))
	var cum uint64
	for i, le := range h.Bounds() {
		cum += h.Counts[i]
		buckets[le] = cum
	}
	return prometheus.MustNewConstHistogram(d, h.Count(), h.Sum.Seconds(), buckets)
}
