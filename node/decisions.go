package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/vigil-mesh/vigil/gossip/response"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/alerts"
	"github.com/vigil-mesh/vigil/node/enforce"
)

// Decisions returns the stored response decisions q selects, newest first: the steps this node's
// aggregator took and the operators' lifts. They survive a restart (DIR/state).
func (n *Node) Decisions(q alerts.DecisionQuery) ([]alerts.Decision, error) {
	if n.state == nil {
		return nil, errors.New("node: the state store is not open")
	}
	return n.state.ListDecisions(q)
}

// LiftDecision is an operator's reversal of the response to an agent on this node: the agent's
// local quarantine ends at once (the overlay entry goes, its lift timer stops, the View is
// rebuilt), a throttle ends, and the aggregator forgets the signals counted so far, so only a
// fresh quorum of fresh signals escalates again. The agent is named by agent, or by decisionID
// (one of its stored decisions). The lift is stored as a decision (action "lift", by, reason)
// and returned: that record is the audit trail.
//
// Refused, changing nothing: an unknown agent (identity.ErrNotFound) or decision
// (alerts.ErrNoDecision); a revoked agent or a revoke decision (response.ErrRevoked: a
// revocation is reversed in the registry, M-of-N); no throttle or quarantine running, or a
// decision that is itself a lift (response.ErrNothingToLift). Every node decides on its own
// signals: a lift applies to this node only.
func (n *Node) LiftDecision(agent, decisionID, by, reason string) (alerts.Decision, error) {
	if err := alerts.CheckReason(reason); err != nil {
		return alerts.Decision{}, err
	}
	l := n.gossip
	if l == nil {
		return alerts.Decision{}, fmt.Errorf("node: lift: gossip is off, so this node takes no response decisions: %w", response.ErrNothingToLift)
	}
	subject, err := n.liftSubject(agent, decisionID)
	if err != nil {
		return alerts.Decision{}, err
	}
	p := subject.Key.ID().Peer()
	if n.gater.Decide(p) == enforce.ReasonRevoked {
		return alerts.Decision{}, fmt.Errorf("node: lift %s: the agent is revoked: %w", subject.Name, response.ErrRevoked)
	}

	now := time.Now()
	throttled := false
	if r := n.router.Load(); r != nil {
		_, throttled = r.Throttled(p)
	}
	l.mu.Lock()
	st := l.agg.State(subject, now)
	timer := l.lifts[p]
	switch {
	case st.Action == response.Revoke:
		l.mu.Unlock()
		return alerts.Decision{}, fmt.Errorf("node: lift %s: this node decided to revoke it: %w", subject.Name, response.ErrRevoked)
	case !st.Running && timer == nil && !throttled:
		l.mu.Unlock()
		return alerts.Decision{}, fmt.Errorf("node: lift %s: no throttle or quarantine is running on this node (last step: %s): %w",
			subject.Name, st.Action, response.ErrNothingToLift)
	}
	lifted := st.Action
	if !st.Running { // the aggregator was replaced by a new policy; the quarantine or throttle still runs
		lifted = response.Throttle
		if timer != nil {
			lifted = response.Quarantine
		}
	}
	rec := alerts.Decision{Time: now, Agent: subject.Name, AgentID: subject.Key.ID().String(), Action: alerts.ActionLift,
		By: by, Reason: reason, Lifted: lifted.String()}
	if prev, err := n.state.ListDecisions(alerts.DecisionQuery{Agent: subject.Name, Action: lifted.String(), Limit: 1}); err == nil && len(prev) == 1 {
		rec.LiftedID = prev[0].ID
	}
	// The record first: a lift that cannot be recorded is not carried out.
	if rec, err = n.state.AddDecision(rec); err != nil {
		l.mu.Unlock()
		return alerts.Decision{}, fmt.Errorf("node: lift %s: %w", subject.Name, err)
	}
	if _, err := l.agg.Lift(subject, now); err != nil && !errors.Is(err, response.ErrNothingToLift) {
		n.log.Warn("node: response: lift", "agent", subject.Name, "err", err) // not reached: Revoke was refused above
	}
	if timer != nil {
		timer.Stop()
		delete(l.lifts, p)
	}
	n.views.LiftQuarantine(p)
	l.unthrottle(p)
	l.mu.Unlock()
	l.refresh()
	l.lifted.Add(1)
	n.log.Info("node: response lifted", "agent", subject.Name, "lifted", rec.Lifted, "lifted_id", rec.LiftedID,
		"by", by, "reason", reason, "id", rec.ID)
	return rec, nil
}

// liftSubject resolves the agent a lift names: by name from the registry (its current key), or
// by a stored decision (the key it had then). A revoked agent is refused.
func (n *Node) liftSubject(agent, decisionID string) (identity.SignalSubject, error) {
	var subject identity.SignalSubject
	if decisionID != "" {
		d, err := n.state.GetDecision(decisionID)
		if err != nil {
			return subject, err
		}
		switch d.Action {
		case "revoke":
			return subject, fmt.Errorf("node: lift: decision %s revoked %s: %w", d.ID, d.Agent, response.ErrRevoked)
		case alerts.ActionLift:
			return subject, fmt.Errorf("node: lift: decision %s is itself a lift: %w", d.ID, response.ErrNothingToLift)
		}
		id, err := identity.ParseID(d.AgentID)
		if err != nil {
			return subject, fmt.Errorf("node: lift: decision %s holds no valid agent ID: %w", d.ID, err)
		}
		subject = identity.SignalSubject{Name: d.Agent, Key: id.PublicKey()}
	}
	var (
		a  identity.Agent
		ok bool
	)
	name := agent
	if name == "" {
		name = subject.Name
	}
	n.consensusNode().Read(func(r *identity.Registry) { a, ok = r.Agent(name) })
	switch {
	case !ok && decisionID == "":
		return subject, fmt.Errorf("node: lift: no agent %q in the registry: %w", name, identity.ErrNotFound)
	case ok && decisionID == "":
		subject = identity.SignalSubject{Name: name, Key: a.ID.PublicKey()}
	}
	if ok && a.Status == identity.StatusRevoked && a.ID.PublicKey() == subject.Key {
		return subject, fmt.Errorf("node: lift %s: the agent is revoked in the registry: %w", name, response.ErrRevoked)
	}
	return subject, nil
}

// decisionBackend is the admin API's view of the node's response decisions.
type decisionBackend struct{ n *Node }

var _ admin.DecisionBackend = decisionBackend{}

func (b decisionBackend) ListDecisions(q alerts.DecisionQuery) ([]alerts.Decision, error) {
	return b.n.Decisions(q)
}

func (b decisionBackend) LiftDecision(l admin.Lift) (alerts.Decision, error) {
	return b.n.LiftDecision(l.Agent, l.DecisionID, l.By, l.Reason)
}
