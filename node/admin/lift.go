package admin

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/alerts"
)

// LiftOutcome is one node's answer to an all-nodes lift (GossipBackend.LiftAll).
type LiftOutcome uint8

const (
	LiftLifted      LiftOutcome = iota + 1 // a throttle or quarantine ran and was lifted
	LiftNothing                            // none ran on that node: not a failure
	LiftRefused                            // the node refused the op or the lift (Err says why)
	LiftUnreachable                        // the node did not answer (Err says why)
)

func (o LiftOutcome) String() string {
	switch o {
	case LiftLifted:
		return "lifted"
	case LiftNothing:
		return "nothing_to_lift"
	case LiftRefused:
		return "refused"
	case LiftUnreachable:
		return "unreachable"
	}
	return fmt.Sprintf("lift_outcome(%d)", uint8(o))
}

// Failed reports whether the outcome makes an all-nodes lift incomplete.
func (o LiftOutcome) Failed() bool { return o == LiftRefused || o == LiftUnreachable }

// LiftResult is one node's answer to an all-nodes lift.
type LiftResult struct {
	Node     identity.ID
	Outcome  LiftOutcome
	Decision alerts.Decision // LiftLifted: the lift as stored on that node
	Err      error           // why, for every outcome but LiftLifted
}

// liftAll is LiftDecision with signed_op: the request has been checked but for signed_op.
func (v *service) liftAll(ctx context.Context, m *adminv1.LiftDecisionRequest) (*connect.Response[adminv1.LiftDecisionResponse], error) {
	if m.DecisionId != "" {
		return nil, invalidArg(identity.ErrInvalid, "decision_id", "a lift on every node names the agent, not a decision of one node")
	}
	if len(m.SignedOp) > identity.MaxLiftOpSize {
		return nil, invalidArg(identity.ErrTooLarge, "signed_op", "%d bytes, max %d", len(m.SignedOp), identity.MaxLiftOpSize)
	}
	op, err := identity.DecodeLiftOp(m.SignedOp)
	if err != nil {
		return nil, toConnect(err)
	}
	if op.Agent != m.Agent || op.Reason != m.Reason {
		return nil, invalidArg(identity.ErrInvalid, "signed_op", "its agent or reason is not the request's")
	}
	g := v.s.cfg.Gossip
	if g == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errNoGossip)
	}
	rs, err := g.LiftAll(ctx, m.SignedOp)
	if err != nil {
		v.s.cfg.Logger.Info("admin: lift on every node refused", "agent", m.Agent, "by", who(ctx), "err", err)
		if identity.CodeOf(err) != "unknown" { // refused: signature, signer, window, replay
			return nil, toConnect(err)
		}
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	names := v.nodeNames()
	out := &adminv1.LiftDecisionResponse{}
	if !v.s.cfg.Key.IsZero() {
		out.Node = v.s.cfg.Key.ID().String()
	}
	for _, r := range rs {
		pr := &adminv1.LiftNodeResult{NodeId: r.Node.String(), NodeName: names[r.Node], Result: r.Outcome.String()}
		if r.Err != nil {
			pr.Error = r.Err.Error()
		}
		if r.Outcome == LiftLifted {
			pr.Decision = decisionPB(r.Decision)
		}
		if r.Outcome.Failed() {
			out.Failed++
		}
		out.Nodes = append(out.Nodes, pr)
	}
	v.s.cfg.Logger.Info("admin: lift on every node", "agent", m.Agent, "by", who(ctx), "reason", m.Reason, "nodes", len(rs), "failed", out.Failed)
	return connect.NewResponse(out), nil
}
