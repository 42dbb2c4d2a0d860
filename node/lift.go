package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/vigil-mesh/vigil/gossip/response"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/alerts"
)

// LiftProtocol carries an operator's lift on every node (vigil decisions lift --all-nodes)
// between admitted nodes. Only streams from admitted nodes are served, and a node lifts only
// when the request carries an operator's signature that it verifies itself (identity.LiftOp):
// a node never lifts on another node's word.
//
// Request: kind (1 byte, 1), a 2-byte big-endian length, then the operator-signed
// identity.LiftOp, at most identity.MaxLiftOpSize bytes. Response: status (1 byte: an
// admin.LiftOutcome, lifted, nothing to lift or refused), a 2-byte big-endian length, then the
// stored lift (JSON, alerts.Decision) or the error text, at most maxLiftResponse bytes.
const LiftProtocol protocol.ID = "/vigil/node/lift/1"

const (
	liftFrameLift byte = 1
	// maxLiftResponse fits a stored lift: a reason of alerts.MaxReasonLen bytes, JSON-escaped,
	// and the other fields.
	maxLiftResponse = 8 << 10
)

var liftProtocol = opProtocol{id: LiftProtocol, what: "lift", maxReq: identity.MaxLiftOpSize, maxReply: maxLiftResponse, refused: byte(admin.LiftRefused)}

// Lift nonces (gossipLayer.liftNonces) are kept in memory and in the node's state store, on
// disk before the lift is applied, until the op's window ends: a lift is applied once per node,
// restarts included.

// acceptLiftOp decodes an operator-signed lift and checks it here (acceptOp). It returns the
// op and the operator's name.
func (l *gossipLayer) acceptLiftOp(b []byte) (*identity.LiftOp, string, error) {
	return acceptOp(l, &l.liftNonces, b, identity.DecodeLiftOp, (*identity.Registry).CheckLiftOp)
}

// liftHere lifts the agent op names on this node, as operator, and says how it went.
func (l *gossipLayer) liftHere(op *identity.LiftOp, operator string) admin.LiftResult {
	r := admin.LiftResult{Node: l.n.key.ID(), Outcome: admin.LiftLifted}
	r.Decision, r.Err = l.n.LiftDecision(op.Agent, "", operator, op.Reason)
	switch {
	case r.Err == nil:
	case errors.Is(r.Err, response.ErrNothingToLift):
		r.Outcome = admin.LiftNothing
	default:
		r.Outcome = admin.LiftRefused
	}
	return r
}

// serveLift answers LiftProtocol streams from admitted nodes.
func (l *gossipLayer) serveLift() {
	l.serveOps(liftProtocol, func(from identity.ID, kind byte, body []byte) (byte, []byte) {
		if kind != liftFrameLift {
			return byte(admin.LiftRefused), fmt.Appendf(nil, "node: lift: unknown request kind %d", kind)
		}
		op, operator, err := l.acceptLiftOp(body)
		if err != nil {
			l.n.log.Warn("node: lift from a peer refused", "from", from.String(), "err", err)
			return byte(admin.LiftRefused), []byte(err.Error())
		}
		r := l.liftHere(op, operator)
		l.n.log.Info("node: lift on every node, relayed by a peer", "agent", op.Agent, "operator", operator,
			"from", from.String(), "result", r.Outcome.String(), "err", r.Err)
		if r.Err != nil {
			return byte(r.Outcome), []byte(r.Err.Error())
		}
		b, err := json.Marshal(r.Decision)
		if err != nil { // not reached: a Decision always marshals
			return byte(admin.LiftRefused), []byte(err.Error())
		}
		return byte(r.Outcome), b
	})
}

// askLift sends the signed lift to node nd and returns its answer.
func (l *gossipLayer) askLift(ctx context.Context, nd identity.Node, signed []byte) admin.LiftResult {
	r := admin.LiftResult{Node: nd.ID}
	status, answer, err := l.askNode(ctx, liftProtocol, nd, opFrame(liftFrameLift, signed))
	switch o := admin.LiftOutcome(status); {
	case err != nil:
		r.Outcome, r.Err = admin.LiftUnreachable, err
	case o == admin.LiftLifted:
		r.Outcome = o
		if err := json.Unmarshal(answer, &r.Decision); err != nil || r.Decision.Action != alerts.ActionLift {
			r.Outcome, r.Err = admin.LiftRefused, fmt.Errorf("node: lift: the node answered lifted but sent no lift record (%v)", err)
		}
	case o == admin.LiftNothing || o == admin.LiftRefused:
		r.Outcome, r.Err = o, errors.New(string(answer))
	default:
		r.Outcome, r.Err = admin.LiftRefused, fmt.Errorf("node: lift: unknown answer status %d", status)
	}
	return r
}

// LiftAll verifies the operator-signed lift (acceptLiftOp), lifts here, then sends the same
// signed bytes to every other admitted node, which verifies them itself (admin.GossipBackend).
// A local refusal of the op is returned and nothing is fanned out; a lift that finds nothing
// to lift here, or that this node refuses (a revoked agent), is this node's result and the op
// still goes to every other node.
func (l *gossipLayer) LiftAll(ctx context.Context, signed []byte) ([]admin.LiftResult, error) {
	if len(signed) > identity.MaxLiftOpSize {
		return nil, fmt.Errorf("node: lift: signed op of %d bytes, max %d", len(signed), identity.MaxLiftOpSize)
	}
	op, operator, err := l.acceptLiftOp(signed)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	self := l.liftHere(op, operator)
	out := append([]admin.LiftResult{self}, askOthers(ctx, l, func(ctx context.Context, nd identity.Node) admin.LiftResult {
		return l.askLift(ctx, nd, signed)
	})...)
	l.n.log.Info("node: lift on every node by an operator", "agent", op.Agent, "operator", operator,
		"nodes", len(out), "took", time.Since(start))
	return out, nil
}
