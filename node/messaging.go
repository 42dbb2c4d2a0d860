package node

import (
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/enforce"
	"github.com/vigil-mesh/vigil/node/telemetry"
)

// startMessaging starts agent messaging (agentproto.Router), with the given throttles running
// from the start, and the telemetry buffer, and registers the message counters. Called by Start
// after the agent protocol server.
func (n *Node) startMessaging(throttles []agentproto.ThrottleSpec) error {
	n.telemetry = telemetry.New(int(n.cfg.Agents.TelemetryRecords))
	msgs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_agent_messages_total",
		Help: "Agent messages and reported events this node handled, by kind (send, receive, event) and outcome (ok or the refusal code).",
	}, []string{"kind", "outcome"})
	if err := n.metrics.reg.Register(msgs); err != nil {
		return fmt.Errorf("node: metrics: %w", err)
	}
	n.closers = append(n.closers, func() error { n.metrics.reg.Unregister(msgs); return nil })
	unsub := n.telemetry.Subscribe(func(r telemetry.Record) { msgs.WithLabelValues(r.Kind, r.Outcome).Inc() })
	n.closers = append(n.closers, func() error { unsub(); return nil })

	rc := agentproto.DefaultRouterConfig()
	rc.Logger = n.log
	rc.MaxBody = int(n.cfg.Agents.MaxMessageBytes)
	rc.Record = n.telemetry.Add
	rc.Nodes = n.nodeAddrs
	if len(throttles) > rc.MaxThrottled { // not reached with the default bounds: keep those ending last
		slices.SortFunc(throttles, func(a, b agentproto.ThrottleSpec) int { return b.Until.Compare(a.Until) })
		n.log.Warn("node: more running throttles than the router holds: those ending first are not restored",
			"throttles", len(throttles), "max", rc.MaxThrottled)
		throttles = throttles[:rc.MaxThrottled]
	}
	rc.Throttles = throttles
	r, err := agentproto.NewRouter(n.agents, rc)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.router.Store(r)
	n.closers = append(n.closers, r.Close)
	throttled := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vigil_agent_throttled",
		Help: "Agents whose sends this node throttles now (the throttle step of the collective response).",
	}, func() float64 { return float64(r.ThrottledCount()) })
	if err := n.metrics.reg.Register(throttled); err != nil {
		return fmt.Errorf("node: metrics: %w", err)
	}
	n.closers = append(n.closers, func() error { n.metrics.reg.Unregister(throttled); return nil })
	return nil
}

// beforeCut tells an attached agent why it is cut off, or a removed node that it was removed,
// just before the enforcer closes its connections.
func (n *Node) beforeCut(p peer.ID, why enforce.Reason) {
	if why == enforce.ReasonUnknown {
		// A removed node's key is retired: tell it, on the connection about to close.
		if c := n.consensusNode(); c != nil && c.NoticeRemovedPeer(p) {
			return
		}
	}
	if r := n.router.Load(); r != nil {
		r.CutOff(p, why)
	}
}

// nodeAddrs lists the admitted nodes with the addresses the registry holds for them.
func (n *Node) nodeAddrs() []peer.AddrInfo {
	c := n.consensusNode()
	if c == nil {
		return nil
	}
	var nodes []identity.Node
	c.Read(func(r *identity.Registry) { nodes = r.Nodes() })
	out := make([]peer.AddrInfo, 0, len(nodes))
	for _, nd := range nodes {
		ai := peer.AddrInfo{ID: nd.ID.Peer()}
		for _, a := range nd.Addrs {
			if ma, err := multiaddr.NewMultiaddr(a); err == nil {
				ai.Addrs = append(ai.Addrs, ma)
			}
		}
		out = append(out, ai)
	}
	return out
}

// Telemetry is the node's record of its agents' messages, refusals and events.
func (n *Node) Telemetry() *telemetry.Buffer { return n.telemetry }

// Router is the node's agent messaging router (nil before Start finishes).
func (n *Node) Router() *agentproto.Router { return n.router.Load() }
