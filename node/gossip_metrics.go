package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-mesh/vigil/gossip"
	"github.com/vigil-mesh/vigil/gossip/response"
)

var (
	descGossipMembers  = prometheus.NewDesc("vigil_gossip_members", "Live members of the gossip mesh, this node included.", nil, nil)
	descGossipPayloads = prometheus.NewDesc("vigil_gossip_payloads_total", "Gossip payloads by receive-path outcome (received, delivered, duplicate, rate_limited, bad_signature, …), members refused and evicted.", []string{"outcome"}, nil)
	descGossipRevs     = prometheus.NewDesc("vigil_gossip_revocations_total", "Revocations received by gossip, by result: applied (enforced before Raft delivered them), already_applied (Raft was first) or refused.", []string{"result"}, nil)
	descDecisions      = prometheus.NewDesc("vigil_response_decisions_total", "Response decisions that changed an agent's step, by action.", []string{"action"}, nil)
	descProposals      = prometheus.NewDesc("vigil_response_proposals_total", "Automated revocations this node proposed.", nil, nil)
	descLifts          = prometheus.NewDesc("vigil_response_lifts_total", "Throttles and quarantines operators lifted on this node (vigil decisions lift).", nil, nil)
	descQuarantined    = prometheus.NewDesc("vigil_response_quarantined", "Agents this node holds in local quarantine now (collective response).", nil, nil)
	descRestored       = prometheus.NewDesc("vigil_response_restored_total", "Throttles and quarantines still running when this node stopped, re-applied from its stored decisions at start, by action.", []string{"action"}, nil)
)

// gossipCollector reads the gossip layer's counters at scrape time.
type gossipCollector struct{ l *gossipLayer }

func (c *gossipCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGossipMembers, descGossipPayloads, descGossipRevs, descDecisions, descProposals, descLifts, descQuarantined, descRestored} {
		ch <- d
	}
}

func (c *gossipCollector) Collect(ch chan<- prometheus.Metric) {
	l := c.l
	ch <- prometheus.MustNewConstMetric(descGossipMembers, prometheus.GaugeValue, float64(l.mesh.NumMembers()))
	for k, v := range l.mesh.Stats() {
		ch <- prometheus.MustNewConstMetric(descGossipPayloads, prometheus.CounterValue, float64(v), gossip.Counter(k).String())
	}
	ch <- prometheus.MustNewConstMetric(descGossipRevs, prometheus.CounterValue, float64(l.revApplied.Load()), "applied")
	ch <- prometheus.MustNewConstMetric(descGossipRevs, prometheus.CounterValue, float64(l.revAlready.Load()), "already_applied")
	ch <- prometheus.MustNewConstMetric(descGossipRevs, prometheus.CounterValue, float64(l.revRefused.Load()), "refused")
	for a := response.Alert; a <= response.Revoke; a++ {
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(l.decided[a].Load()), a.String())
	}
	ch <- prometheus.MustNewConstMetric(descProposals, prometheus.CounterValue, float64(l.proposals.Load()))
	ch <- prometheus.MustNewConstMetric(descLifts, prometheus.CounterValue, float64(l.lifted.Load()))
	l.mu.Lock()
	quarantined := len(l.lifts)
	l.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descQuarantined, prometheus.GaugeValue, float64(quarantined))
	for _, a := range []response.Action{response.Throttle, response.Quarantine} {
		ch <- prometheus.MustNewConstMetric(descRestored, prometheus.CounterValue, float64(l.restored[a].Load()), a.String())
	}
}
