package node

import (
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/enforce"
)

// metrics is the node's Prometheus registry. Values owned by other components (raft, the gater)
// are read at scrape time by a collector, so no component pushes numbers on a hot path.
type metrics struct {
	reg          *prometheus.Registry
	enforceLat   prometheus.Histogram
	enforcements *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		enforceLat: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vigil_enforcement_latency_seconds",
			Help: "Time from a registry change (the leader appending the command) or an expiry to this node closing the peer's connections.",
			// 0.5 ms … 8 s: the promise is p99 ≤ 50 ms.
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
		}),
		enforcements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_enforcements_total",
			Help: "Peers whose live connections this node closed, by reason.",
		}, []string{"reason"}),
	}
	m.reg.MustRegister(m.enforceLat, m.enforcements,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observeEnforcement(e enforce.Enforcement) {
	m.enforceLat.Observe(e.Latency.Seconds())
	m.enforcements.WithLabelValues(e.Reason.String()).Inc()
}

// register adds the collector that reads raft, the registry view and the gater at scrape time.
func (m *metrics) register(n *Node) { m.reg.MustRegister(&nodeCollector{n: n}) }

var (
	descRaftState = prometheus.NewDesc("vigil_raft_state", "1 for this node's current raft state.", []string{"state"}, nil)
	descApplied   = prometheus.NewDesc("vigil_raft_applied_index", "Last raft index applied to the local registry.", nil, nil)
	descContact   = prometheus.NewDesc("vigil_raft_last_contact_seconds", "Time since this node last heard from the leader (0 on the leader): the age of its registry view.", nil, nil)
	descView      = prometheus.NewDesc("vigil_registry_principals", "Principals in the local registry view.", nil, nil)
	descPeers     = prometheus.NewDesc("vigil_connected_peers", "Peers with a live libp2p connection.", nil, nil)
	descGater     = prometheus.NewDesc("vigil_gater_decisions_total", "Connection gater decisions by direction, outcome and reason.", []string{"direction", "outcome", "reason"}, nil)
	descUnproven  = prometheus.NewDesc("vigil_agent_locate_unproven_total",
		"Locate answers this node ignored because another node said an agent is attached to it without a valid proof, by reason (no_proof, bad_signature, stale, future).", []string{"reason"}, nil)
)

type nodeCollector struct{ n *Node }

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descApplied, descContact, descView, descPeers, descGater, descUnproven} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	if cons := n.consensusNode(); cons != nil {
		st := cons.State()
		for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
			v := 0.0
			if s == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descRaftState, prometheus.GaugeValue, v, s.String())
		}
		ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(cons.AppliedIndex()))
		ch <- prometheus.MustNewConstMetric(descContact, prometheus.GaugeValue, cons.LastContact().Seconds())
	}
	if v := n.views.Current(); v != nil {
		ch <- prometheus.MustNewConstMetric(descView, prometheus.GaugeValue, float64(v.Len()))
	}
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(len(n.host.Network().Peers())))
	st := n.gater.Stats()
	for r := enforce.Reason(1); int(r) < len(st.Secured); r++ {
		outcome := "refused"
		if r.Allowed() {
			outcome = "admitted"
		}
		ch <- prometheus.MustNewConstMetric(descGater, prometheus.CounterValue, float64(st.Secured[r]), "inbound", outcome, r.String())
		ch <- prometheus.MustNewConstMetric(descGater, prometheus.CounterValue, float64(st.Dial[r]), "dial", outcome, r.String())
	}
	if r := n.Router(); r != nil {
		st := r.Stats()
		for why := agentproto.PresenceCheck(1); int(why) < len(st.LocateUnproven); why++ {
			ch <- prometheus.MustNewConstMetric(descUnproven, prometheus.CounterValue, float64(st.LocateUnproven[why]), why.String())
		}
	}
}
