package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/enforce"
)

// liftOp is an all-nodes lift of agent for c's cluster, signed by signer, issued at at.
func (c *e2eCluster) liftOp(signer identity.PrivateKey, agent, reason string, at time.Time) *identity.LiftOp {
	c.tb.Helper()
	op, err := identity.NewLiftOp(c.cid, agent, reason, at, rand.Reader)
	if err != nil {
		c.tb.Fatal(err)
	}
	if err := op.Sign(signer); err != nil {
		c.tb.Fatal(err)
	}
	return op
}

// sendLiftFrame opens LiftProtocol from node from to node to, sends one request and returns
// the answer's status and body.
func sendLiftFrame(t testing.TB, from, to *Node, frame []byte) (admin.LiftOutcome, string) {
	t.Helper()
	st, text := sendOpFrame(t, LiftProtocol, from, to, frame)
	return admin.LiftOutcome(st), text
}

// TestLiftAllNodes: an agent quarantined on all three nodes by their own signals. Forged,
// non-operator, stale and future lifts, through the admin API or sent by an admitted node
// straight over LiftProtocol, are refused with the reason and change nothing anywhere. One
// operator-signed lift through node-1's admin API ends the quarantine on every node, each of
// which verified it and recorded the lift as the operator; a replay of the same bytes is refused
// everywhere; a fresh lift then finds nothing to lift on any node, which is not a failure.
func TestLiftAllNodes(t *testing.T) {
	c := startE2EClusterYAML(t, 3, gossipYAML)
	c.joinGossip()
	c.propose(c.nodes[0], &identity.SetRevokeQuorum{Quorum: 3})
	agentKey := c.register("worker")
	agentPeer := agentKey.ID().Peer()
	ev := sha256.Sum256([]byte("x"))
	for _, n := range c.nodes[:2] {
		if err := n.ReportAnomaly("worker", "ngram", 0.9, ev); err != nil {
			t.Fatal(err)
		}
	}
	quarantined := func(what string) {
		t.Helper()
		for _, n := range c.nodes {
			waitUntil(t, n.cfg.Node.Name+" to quarantine locally ("+what+")", func() bool {
				return n.gater.Decide(agentPeer) == enforce.ReasonQuarantined
			})
		}
	}
	quarantined("signals")
	ac := c.adminClient(0, c.op)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const reason = "load test, not an attack"
	altered := c.liftOp(c.op, "worker", reason, time.Now())
	altered.Reason = "something else"
	for _, tc := range []struct {
		name string
		body []byte
		want string
		code connect.Code
	}{
		{"unsigned", nil, "no operator signature", 0},
		{"altered after signing", altered.Encode(), "does not verify", connect.CodePermissionDenied},
		{"signed by a node", c.liftOp(c.keys[1], "worker", reason, time.Now()).Encode(), "not an operator", connect.CodePermissionDenied},
		{"signed by the agent", c.liftOp(agentKey, "worker", reason, time.Now()).Encode(), "not an operator", connect.CodePermissionDenied},
		{"stale", c.liftOp(c.op, "worker", reason, time.Now().Add(-11*time.Minute)).Encode(), "stale", connect.CodeFailedPrecondition},
		{"from the future", c.liftOp(c.op, "worker", reason, time.Now().Add(5*time.Minute)).Encode(), "from the future", connect.CodeFailedPrecondition},
		{"garbage", []byte{1, 2, 3}, "malformed", connect.CodeInvalidArgument},
	} {
		if st, text := sendLiftFrame(t, c.nodes[1], c.nodes[0], opFrame(liftFrameLift, tc.body)); st != admin.LiftRefused || !strings.Contains(text, tc.want) {
			t.Errorf("%s over the protocol: reply %s %q, want a refusal saying %q", tc.name, st, text, tc.want)
		}
		if tc.body == nil {
			continue // without signed_op the request is a one-node lift
		}
		_, err := ac.LiftDecision(ctx, connect.NewRequest(c.liftReq(tc.body)))
		if connect.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s through the admin API: %v, want %s saying %q", tc.name, err, tc.code, tc.want)
		}
	}
	signed := c.liftOp(c.op, "worker", reason, time.Now()).Encode()
	for _, tc := range []struct {
		name string
		req  *adminv1.LiftDecisionRequest
		want string
	}{
		{"another agent", &adminv1.LiftDecisionRequest{Agent: "other", Reason: reason, SignedOp: signed}, "signed_op"},
		{"another reason", &adminv1.LiftDecisionRequest{Agent: "worker", Reason: "x", SignedOp: signed}, "signed_op"},
		{"by decision id", &adminv1.LiftDecisionRequest{DecisionId: "000000000000002a", Reason: reason, SignedOp: signed}, "decision_id"},
	} {
		if _, err := ac.LiftDecision(ctx, connect.NewRequest(tc.req)); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.want)
		}
	}
	quarantined("after refused lifts") // nothing changed, and no lift was recorded anywhere
	for i := range c.nodes {
		if ls := listDecisions(t, c.adminClient(i, c.op), &adminv1.ListDecisionsRequest{Agent: "worker", Action: "lift"}); len(ls) != 0 {
			t.Fatalf("node-%d recorded a refused lift: %+v", i+1, ls)
		}
	}

	// The operator's lift: every node lifts, as "op" (the operator's name in the registry).
	resp, err := ac.LiftDecision(ctx, connect.NewRequest(c.liftReq(signed)))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Msg.Nodes) != 3 || resp.Msg.Failed != 0 || resp.Msg.Nodes[0].NodeId != c.nodes[0].ID().String() {
		t.Fatalf("lift answered %+v", resp.Msg)
	}
	for _, nr := range resp.Msg.Nodes {
		if nr.Result != "lifted" || nr.Decision == nil || nr.Decision.Lifted != "quarantine" || nr.Decision.By != "op" || nr.Decision.Reason != reason || nr.NodeName == "" {
			t.Errorf("node %s: %+v", nr.NodeName, nr)
		}
	}
	for i, n := range c.nodes {
		if r := n.gater.Decide(agentPeer); r != enforce.ReasonAgent {
			t.Errorf("node-%d after the lift: %s", i+1, r)
		}
		ls := listDecisions(t, c.adminClient(i, c.op), &adminv1.ListDecisionsRequest{Agent: "worker", Action: "lift"})
		if len(ls) != 1 || ls[0].By != "op" || ls[0].Id != resp.Msg.Nodes[nodeIndex(resp.Msg.Nodes, n)].Decision.Id {
			t.Errorf("node-%d's lift record: %+v", i+1, ls)
		}
	}

	// Replays of the same bytes are refused on every node, through the admin API or the protocol.
	for i := range c.nodes {
		_, err := c.adminClient(i, c.op).LiftDecision(ctx, connect.NewRequest(c.liftReq(signed)))
		if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "replayed nonce") {
			t.Errorf("replay through node-%d's admin API: %v", i+1, err)
		}
	}
	if st, text := sendLiftFrame(t, c.nodes[1], c.nodes[2], opFrame(liftFrameLift, signed)); st != admin.LiftRefused || !strings.Contains(text, "replayed nonce") {
		t.Errorf("replay over the protocol: %s %q", st, text)
	}

	// A fresh lift finds nothing to lift anywhere: reported per node, not a failure.
	resp, err = ac.LiftDecision(ctx, connect.NewRequest(c.liftReq(c.liftOp(c.op, "worker", reason, time.Now()).Encode())))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Msg.Failed != 0 || len(resp.Msg.Nodes) != 3 {
		t.Fatalf("second lift: %+v", resp.Msg)
	}
	for _, nr := range resp.Msg.Nodes {
		if nr.Result != "nothing_to_lift" || !strings.Contains(nr.Error, "no throttle or quarantine is running") {
			t.Errorf("second lift on %s: %+v", nr.NodeName, nr)
		}
	}
	// A stopped node is reported unreachable, and the lift still counts on the others.
	c.stop(2)
	resp, err = ac.LiftDecision(ctx, connect.NewRequest(c.liftReq(c.liftOp(c.op, "worker", reason, time.Now()).Encode())))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Msg.Failed != 1 || resp.Msg.Nodes[nodeIndexID(resp.Msg.Nodes, c.keys[2].ID())].Result != "unreachable" {
		t.Fatalf("lift with node-3 down: %+v", resp.Msg)
	}
}

// liftReq is the all-nodes LiftDecision request the CLI sends for the signed op b.
func (c *e2eCluster) liftReq(b []byte) *adminv1.LiftDecisionRequest {
	c.tb.Helper()
	op, err := identity.DecodeLiftOp(b)
	if err != nil {
		return &adminv1.LiftDecisionRequest{Agent: "worker", Reason: "x", SignedOp: b}
	}
	return &adminv1.LiftDecisionRequest{Agent: op.Agent, Reason: op.Reason, SignedOp: b}
}

func nodeIndex(rs []*adminv1.LiftNodeResult, n *Node) int { return nodeIndexID(rs, n.ID()) }

func nodeIndexID(rs []*adminv1.LiftNodeResult, id identity.ID) int {
	for i, r := range rs {
		if r.NodeId == id.String() {
			return i
		}
	}
	return 0
}
