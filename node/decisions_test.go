package node

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/alerts"
	"github.com/vigil-mesh/vigil/node/enforce"
)

func listDecisions(t *testing.T, ac client.Client, req *adminv1.ListDecisionsRequest) []*adminv1.Decision {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := ac.ListDecisions(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.Decisions
}

func liftDecision(ac client.Client, req *adminv1.LiftDecisionRequest) (*adminv1.LiftDecisionResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := ac.LiftDecision(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// TestGossipLiftQuarantine: two nodes' signals put an agent in local quarantine on every node
// (revoke_quorum 3) and cut its connection to node-3. An operator lifts it on node-3 through
// the admin API: node-3 admits the agent again at once and it reattaches, while node-1 (which
// was not asked) keeps it quarantined until it is lifted there too, by decision ID. The lift is
// listed as a decision with the operator's ID and the reason, counted on /metrics, and a second
// lift or an unknown agent is refused. One fresh signal after the lift only alerts: the lifted
// signals no longer count. node-3's decisions survive its restart.
func TestGossipLiftQuarantine(t *testing.T) {
	c := startE2EClusterYAML(t, 3, gossipYAML)
	c.joinGossip()
	c.propose(c.nodes[0], &identity.SetRevokeQuorum{Quorum: 3})
	agentKey := c.register("worker")
	agentPeer := agentKey.ID().Peer()
	ah := newAgentHost(t, agentKey)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n3 := c.nodes[2]
	if _, err := agentproto.Attach(ctx, ah, addrInfo(n3)); err != nil {
		t.Fatal(err)
	}
	ev := sha256.Sum256([]byte("x"))
	for _, n := range c.nodes[:2] {
		if err := n.ReportAnomaly("worker", "ngram", 0.9, ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.nodes {
		waitUntil(t, n.cfg.Node.Name+" to quarantine locally", func() bool {
			return n.gater.Decide(agentPeer) == enforce.ReasonQuarantined
		})
	}
	waitUntil(t, "node-3 to close the agent's connection", func() bool {
		return len(n3.Host().Network().ConnsToPeer(ah.ID())) == 0
	})
	ac3 := c.adminClient(2, c.op)
	qs := listDecisions(t, ac3, &adminv1.ListDecisionsRequest{Agent: "worker", Action: "quarantine"})
	if len(qs) != 1 || qs[0].Reporters != 2 || qs[0].Until == nil || qs[0].Id == "" {
		t.Fatalf("node-3's quarantine decision: %+v", qs)
	}

	// Refused first: unknown agent, no reason; nothing changes.
	if _, err := liftDecision(ac3, &adminv1.LiftDecisionRequest{Agent: "nobody", Reason: "x"}); connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), `no agent "nobody"`) {
		t.Fatalf("lift of an unknown agent: %v", err)
	}
	if _, err := liftDecision(ac3, &adminv1.LiftDecisionRequest{Agent: "worker"}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("lift without a reason: %v", err)
	}
	if r := n3.gater.Decide(agentPeer); r != enforce.ReasonQuarantined {
		t.Fatalf("a refused lift changed enforcement: %s", r)
	}

	// The operator lifts on node-3.
	lift, err := liftDecision(ac3, &adminv1.LiftDecisionRequest{Agent: "worker", Reason: "load test, not an attack"})
	if err != nil {
		t.Fatal(err)
	}
	d := lift.Decision
	if d.Action != "lift" || d.By != c.op.ID().String() || d.Reason != "load test, not an attack" || d.Lifted != "quarantine" ||
		d.LiftedId != qs[0].Id || d.AgentId != agentKey.ID().String() || lift.Node != n3.ID().String() {
		t.Fatalf("lift: %+v (node %s)", d, lift.Node)
	}
	if r := n3.gater.Decide(agentPeer); r != enforce.ReasonAgent {
		t.Fatalf("node-3 after the lift: %s, want the agent admitted at once", r)
	}
	if _, err := agentproto.Attach(ctx, ah, addrInfo(n3)); err != nil {
		t.Fatalf("the agent cannot reattach to node-3 after the lift: %v", err)
	}
	if r := c.nodes[0].gater.Decide(agentPeer); r != enforce.ReasonQuarantined {
		t.Fatalf("node-1 was not asked to lift, yet says %s", r)
	}
	_, metrics := get(t, n3, "/metrics")
	if !strings.Contains(metrics, "vigil_response_lifts_total 1") {
		t.Fatalf("/metrics lacks the lift:\n%s", grepLines(metrics, "vigil_response"))
	}
	if _, err := liftDecision(ac3, &adminv1.LiftDecisionRequest{Agent: "worker", Reason: "again"}); connect.CodeOf(err) != connect.CodeFailedPrecondition ||
		!strings.Contains(err.Error(), "no throttle or quarantine is running") {
		t.Fatalf("second lift: %v", err)
	}

	// node-1: lifted by its own quarantine decision's ID.
	ac1 := c.adminClient(0, c.op)
	q1 := listDecisions(t, ac1, &adminv1.ListDecisionsRequest{Agent: "worker", Action: "quarantine", Limit: 1})
	if len(q1) != 1 {
		t.Fatalf("node-1's quarantine decision: %+v", q1)
	}
	if _, err := liftDecision(ac1, &adminv1.LiftDecisionRequest{DecisionId: q1[0].Id, Reason: "load test"}); err != nil {
		t.Fatal(err)
	}
	if r := c.nodes[0].gater.Decide(agentPeer); r != enforce.ReasonAgent {
		t.Fatalf("node-1 after its lift: %s", r)
	}

	// One fresh signal: node-3 starts again from the bottom of the ladder.
	if err := c.nodes[1].ReportAnomaly("worker", "ngram", 0.9, ev); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "node-3 to decide on the fresh signal", func() bool {
		ds := listDecisions(t, ac3, &adminv1.ListDecisionsRequest{Agent: "worker", Limit: 1})
		return len(ds) == 1 && ds[0].Action != "lift"
	})
	if ds := listDecisions(t, ac3, &adminv1.ListDecisionsRequest{Agent: "worker", Limit: 1}); ds[0].Action != "alert" || ds[0].Reporters != 1 {
		t.Fatalf("after the lift one fresh signal decided %+v, want an alert from 1 reporter", ds[0])
	}
	if r := n3.gater.Decide(agentPeer); r != enforce.ReasonAgent {
		t.Fatalf("node-3 re-quarantined without a fresh quorum: %s", r)
	}

	// The decisions survive node-3's restart, newest first, the lift with who and why.
	before := listDecisions(t, ac3, &adminv1.ListDecisionsRequest{Agent: "worker"})
	c.stop(2)
	n3 = c.start(2)
	after := listDecisions(t, c.adminClient(2, c.op), &adminv1.ListDecisionsRequest{Agent: "worker"})
	if len(after) != len(before) || len(after) < 4 {
		t.Fatalf("after the restart %d decisions, before %d", len(after), len(before))
	}
	for i := range after {
		if after[i].Id != before[i].Id || after[i].Action != before[i].Action || after[i].By != before[i].By {
			t.Fatalf("decision %d changed across the restart: %+v → %+v", i, before[i], after[i])
		}
	}
	lifts, err := n3.Decisions(alerts.DecisionQuery{Action: alerts.ActionLift})
	if err != nil || len(lifts) != 1 || lifts[0].By != c.op.ID().String() || lifts[0].Reason != "load test, not an attack" {
		t.Fatalf("the lift after the restart: %+v %v", lifts, err)
	}
}
