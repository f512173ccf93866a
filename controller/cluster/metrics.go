package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	dTerm    = prometheus.NewDesc("quarry_cluster_term", "Raft term this member is in.", nil, nil)
	dLast    = prometheus.NewDesc("quarry_cluster_last_index", "Last index in this member's raft log.", nil, nil)
	dCommit  = prometheus.NewDesc("quarry_cluster_commit_index", "Highest raft index known committed by a quorum.", nil, nil)
	dApplied = prometheus.NewDesc("quarry_cluster_applied_index", "Highest raft index applied to this member's database.", nil, nil)
	dLeader  = prometheus.NewDesc("quarry_cluster_peer_leader", "1 for the member that leads the group.", []string{"peer"}, nil)
	dUp      = prometheus.NewDesc("quarry_cluster_peer_up", "1 when the member is alive in the members' gossip pool.", []string{"peer"}, nil)
	dPeerApp = prometheus.NewDesc("quarry_cluster_peer_applied_index", "Raft index the member last said it applied (gossiped every 2 s).", []string{"peer"}, nil)
	dLag     = prometheus.NewDesc("quarry_cluster_peer_lag_entries", "Leader's last index minus the member's applied index.", []string{"peer"}, nil)
)

// Collector exposes the group's health: term, indexes and, per member,
// leadership, liveness and lag.
type Collector struct{ Node *Node }

func (c Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dTerm, dLast, dCommit, dApplied, dLeader, dUp, dPeerApp, dLag} {
		ch <- d
	}
}

func (c Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.Node.Status()
	ch <- prometheus.MustNewConstMetric(dTerm, prometheus.GaugeValue, float64(st.Term))
	ch <- prometheus.MustNewConstMetric(dLast, prometheus.GaugeValue, float64(st.LastIndex))
	ch <- prometheus.MustNewConstMetric(dCommit, prometheus.GaugeValue, float64(st.CommitIndex))
	ch <- prometheus.MustNewConstMetric(dApplied, prometheus.GaugeValue, float64(st.Applied))
	peers, err := c.Node.Peers()
	if err != nil {
		return
	}
	for _, p := range peers {
		ch <- prometheus.MustNewConstMetric(dLeader, prometheus.GaugeValue, b2f(p.Leader), p.ID)
		ch <- prometheus.MustNewConstMetric(dUp, prometheus.GaugeValue, b2f(p.Alive), p.ID)
		if p.AppliedIndex > 0 {
			ch <- prometheus.MustNewConstMetric(dPeerApp, prometheus.GaugeValue, float64(p.AppliedIndex), p.ID)
			ch <- prometheus.MustNewConstMetric(dLag, prometheus.GaugeValue, float64(p.Lag), p.ID)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
