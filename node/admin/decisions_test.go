package admin_test

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
	"github.com/vigil-mesh/vigil/node/alerts"
)

// TestLiftDecision: an operator over mutual TLS lifts a quarantine by agent name and the lift is
// stored with the operator's peer ID and the reason; the local socket records "local"; a node
// and an agent identity are refused and record nothing; every bad request is refused with the
// field named and the store unchanged; a revoke, an unknown agent or ID and a step with nothing
// to lift get FailedPrecondition / NotFound with a clear message.
func TestLiftDecision(t *testing.T) {
	e := newEnv(t)
	st := matrixAlerts
	now := time.Now()
	add := func(d alerts.Decision) alerts.Decision {
		t.Helper()
		d.Time = now
		got, err := st.AddDecision(d)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	q := add(alerts.Decision{Agent: "good", AgentID: e.agent.ID().String(), Action: "quarantine", Reporters: 2, Signals: 2, Until: now.Add(time.Hour)})
	rev := add(alerts.Decision{Agent: "gone", AgentID: e.revoked.ID().String(), Action: "revoke", Reporters: 2, Signals: 2})
	alert := add(alerts.Decision{Agent: "calm", Action: "alert", Reporters: 1, Signals: 1})
	op := e.tlsClient(e.ops[0])

	// Refused roles: a node identity (which may read Status and ListMembers) and an agent;
	// nothing recorded.
	before := st.DecisionsLen()
	for _, c := range []struct {
		role string
		key  identity.PrivateKey
	}{{"node", e.nodeKey}, {"agent", e.agent}} {
		_, err := e.tlsClient(c.key).LiftDecision(ctxT(t), connect.NewRequest(&adminv1.LiftDecisionRequest{Agent: "good", Reason: "x"}))
		if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "role "+c.role) {
			t.Fatalf("%s: want PermissionDenied, got %v", c.role, err)
		}
	}
	if st.DecisionsLen() != before {
		t.Fatal("a refused caller's lift was recorded")
	}

	// Bad requests: InvalidArgument naming the field, nothing recorded.
	for _, c := range []struct {
		name, field string
		req         *adminv1.LiftDecisionRequest
	}{
		{"neither", "agent, decision_id", &adminv1.LiftDecisionRequest{Reason: "x"}},
		{"both", "agent, decision_id", &adminv1.LiftDecisionRequest{Agent: "good", DecisionId: q.ID, Reason: "x"}},
		{"bad name", "agent", &adminv1.LiftDecisionRequest{Agent: "Good!", Reason: "x"}},
		{"bad id", "decision_id", &adminv1.LiftDecisionRequest{DecisionId: "12", Reason: "x"}},
		{"upper-case id", "decision_id", &adminv1.LiftDecisionRequest{DecisionId: strings.ToUpper("00000000000000ab"), Reason: "x"}},
		{"no reason", "reason", &adminv1.LiftDecisionRequest{Agent: "good"}},
		{"blank reason", "reason", &adminv1.LiftDecisionRequest{Agent: "good", Reason: " \t"}},
		{"long reason", "reason", &adminv1.LiftDecisionRequest{Agent: "good", Reason: strings.Repeat("r", alerts.MaxReasonLen+1)}},
		{"control character", "reason", &adminv1.LiftDecisionRequest{Agent: "good", Reason: "ok\x1b[2J"}},
	} {
		_, err := op.LiftDecision(ctxT(t), connect.NewRequest(c.req))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), c.field+":") {
			t.Errorf("%s: want InvalidArgument naming %s, got %v", c.name, c.field, err)
		}
	}
	if st.DecisionsLen() != before {
		t.Fatal("a bad request was recorded")
	}

	// Refusals from the node: NotFound, FailedPrecondition; nothing recorded.
	for _, c := range []struct {
		name string
		req  *adminv1.LiftDecisionRequest
		code connect.Code
		msg  string
	}{
		{"unknown agent", &adminv1.LiftDecisionRequest{Agent: "nobody", Reason: "x"}, connect.CodeNotFound, `"nobody"`},
		{"unknown id", &adminv1.LiftDecisionRequest{DecisionId: "00000000000fffff", Reason: "x"}, connect.CodeNotFound, "no such decision"},
		{"revoke by agent", &adminv1.LiftDecisionRequest{Agent: "gone", Reason: "x"}, connect.CodeFailedPrecondition, "vigil agent reinstate"},
		{"revoke by id", &adminv1.LiftDecisionRequest{DecisionId: rev.ID, Reason: "x"}, connect.CodeFailedPrecondition, "M-of-N"},
		{"alert only", &adminv1.LiftDecisionRequest{DecisionId: alert.ID, Reason: "x"}, connect.CodeFailedPrecondition, "nothing to lift"},
	} {
		_, err := op.LiftDecision(ctxT(t), connect.NewRequest(c.req))
		if connect.CodeOf(err) != c.code || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: want %s mentioning %q, got %v", c.name, c.code, c.msg, err)
		}
	}
	if st.DecisionsLen() != before {
		t.Fatal("a refused lift was recorded")
	}

	// The operator lifts: the record names the operator's peer ID, the reason, what it lifted.
	resp, err := op.LiftDecision(ctxT(t), connect.NewRequest(&adminv1.LiftDecisionRequest{Agent: "good", Reason: "batch job, not an attack"}))
	if err != nil {
		t.Fatal(err)
	}
	d := resp.Msg.Decision
	if d.Action != "lift" || d.Agent != "good" || d.By != e.ops[0].ID().String() || d.Reason != "batch job, not an attack" ||
		d.Lifted != "quarantine" || d.LiftedId != q.ID || d.Id == "" || d.Time == nil || resp.Msg.Node != e.nodeKey.ID().String() {
		t.Fatalf("lift: %+v (node %s)", d, resp.Msg.Node)
	}
	if got, err := st.GetDecision(d.Id); err != nil || got.By != d.By || got.Reason != d.Reason {
		t.Fatalf("stored lift: %+v %v", got, err)
	}
	// The agent's newest decision is now the lift: nothing left to lift.
	if _, err := op.LiftDecision(ctxT(t), connect.NewRequest(&adminv1.LiftDecisionRequest{Agent: "good", Reason: "again"})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("second lift: %v", err)
	}
	// Over the Unix socket the record says "local"; by decision ID.
	q2 := add(alerts.Decision{Agent: "good", AgentID: e.agent.ID().String(), Action: "throttle", Reporters: 1, Signals: 3, Until: now.Add(time.Hour)})
	resp, err = client.DialUnix(e.sock).LiftDecision(ctxT(t), connect.NewRequest(&adminv1.LiftDecisionRequest{DecisionId: q2.ID, Reason: "on call"}))
	if err != nil || resp.Msg.Decision.By != "local" || resp.Msg.Decision.Lifted != "throttle" {
		t.Fatalf("lift over the socket: %+v %v", resp, err)
	}
}

// TestListDecisionsFilters: ListDecisions is newest first like ListAlerts, filters by agent,
// action and since, defaults to 100 and refuses bad filters naming the field.
func TestListDecisionsFilters(t *testing.T) {
	e := newEnv(t)
	st := matrixAlerts
	t0 := time.Now().Add(-time.Hour)
	for i := range 120 {
		action := []string{"alert", "throttle", "quarantine"}[i%3]
		if _, err := st.AddDecision(alerts.Decision{Agent: []string{"a", "b"}[i%2], Action: action, Time: t0.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	op := e.tlsClient(e.ops[0])
	list := func(req *adminv1.ListDecisionsRequest) []*adminv1.Decision {
		t.Helper()
		resp, err := op.ListDecisions(ctxT(t), connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg.Decisions
	}
	all := list(&adminv1.ListDecisionsRequest{})
	if len(all) != 100 || !all[0].Time.AsTime().After(all[99].Time.AsTime()) {
		t.Fatalf("default list: %d decisions, want the newest 100 first", len(all))
	}
	if got := list(&adminv1.ListDecisionsRequest{Agent: "a", Action: "alert", Limit: 1000}); len(got) != 20 {
		t.Fatalf("agent a, action alert: %d, want 20", len(got))
	}
	if got := list(&adminv1.ListDecisionsRequest{Since: timestamppb.New(t0.Add(110 * time.Second))}); len(got) != 10 {
		t.Fatalf("since: %d, want 10", len(got))
	}
	for _, c := range []struct {
		field string
		req   *adminv1.ListDecisionsRequest
	}{
		{"action", &adminv1.ListDecisionsRequest{Action: "ban"}},
		{"agent", &adminv1.ListDecisionsRequest{Agent: strings.Repeat("a", 200)}},
		{"since", &adminv1.ListDecisionsRequest{Since: &timestamppb.Timestamp{Nanos: -1}}},
	} {
		_, err := op.ListDecisions(ctxT(t), connect.NewRequest(c.req))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), c.field+":") {
			t.Errorf("%s: want InvalidArgument naming it, got %v", c.field, err)
		}
	}
}
