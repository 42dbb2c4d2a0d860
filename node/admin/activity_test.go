package admin_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
	"github.com/vigil-mesh/vigil/node/telemetry"
)

// TestAgentActivity: the RPC answers the agent's records from the node's telemetry, by name or
// peer ID, with since and limit; a missing agent names the field; an agent the registry does not
// hold is NotFound.
func TestAgentActivity(t *testing.T) {
	e := newEnv(t)
	t0 := time.Now().Add(-time.Minute)
	for i := range 5 {
		e.activity.Add(telemetry.Record{Time: t0.Add(time.Duration(i) * time.Second), Agent: "good", AgentID: e.agent.ID().String(),
			Kind: telemetry.KindSend, Action: "ask", Peer: "other", Bytes: i, Latency: time.Millisecond, Outcome: "no_capability", Hop: "sender-node"})
		e.activity.Add(telemetry.Record{Time: t0.Add(time.Duration(i) * time.Second), Agent: "other", Kind: telemetry.KindEvent})
	}
	c := e.tlsClient(e.ops[0])
	ctx := context.Background()
	resp, err := c.AgentActivity(ctx, connect.NewRequest(&adminv1.AgentActivityRequest{Agent: "good"}))
	if err != nil {
		t.Fatal(err)
	}
	rs := resp.Msg.Records
	if len(rs) != 5 || rs[0].Bytes != 0 || rs[4].Bytes != 4 || rs[0].Outcome != "no_capability" || rs[0].Hop != "sender-node" ||
		rs[0].LatencySeconds != 0.001 || resp.Msg.Node != e.nodeKey.ID().String() {
		t.Fatalf("records %v node %s", rs, resp.Msg.Node)
	}
	resp, err = c.AgentActivity(ctx, connect.NewRequest(&adminv1.AgentActivityRequest{Agent: e.agent.ID().String(),
		Since: timestamppb.New(t0.Add(2 * time.Second)), Limit: 2}))
	if err != nil {
		t.Fatal(err)
	}
	if rs := resp.Msg.Records; len(rs) != 2 || rs[0].Bytes != 3 || rs[1].Bytes != 4 {
		t.Fatalf("since+limit by ID: %v", rs)
	}
	// An agent the registry does not hold is NotFound, not an empty answer, even when the
	// telemetry holds records under that name.
	e.activity.Add(telemetry.Record{Time: t0, Agent: "ghost", Kind: telemetry.KindEvent})
	for _, who := range []string{"nobody", "ghost", e.nodeKey.ID().String()} {
		_, err = c.AgentActivity(ctx, connect.NewRequest(&adminv1.AgentActivityRequest{Agent: who}))
		if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), who) || client.Code(err) != "not_found" {
			t.Fatalf("unknown agent %s: %v", who, err)
		}
	}
	_, err = c.AgentActivity(ctx, connect.NewRequest(&adminv1.AgentActivityRequest{}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "agent") {
		t.Fatalf("no agent: %v", err)
	}
}
