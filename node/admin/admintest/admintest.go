// Package admintest holds admin API backends for the tests of the admin server and of the CLI,
// as net/http/httptest does for net/http: real stores, no running node.
package admintest

import (
	"fmt"
	"time"

	"github.com/vigil-mesh/vigil/gossip/response"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/alerts"
)

// StoreDecisions serves the decision RPCs from a real alert store: a lift applies to the agent's
// newest stored decision (or the one named), as a node's does to its running step. The node's
// own lift (which also ends the quarantine or throttle) is tested in package node.
type StoreDecisions struct{ Store *alerts.Store }

// ListDecisions reads the store.
func (b StoreDecisions) ListDecisions(q alerts.DecisionQuery) ([]alerts.Decision, error) {
	return b.Store.ListDecisions(q)
}

// LiftDecision records a lift of the named or newest decision, refusing a revoke and anything
// that is not a throttle or quarantine, with the errors a node gives.
func (b StoreDecisions) LiftDecision(l admin.Lift) (alerts.Decision, error) {
	var target alerts.Decision
	if l.DecisionID != "" {
		d, err := b.Store.GetDecision(l.DecisionID)
		if err != nil {
			return alerts.Decision{}, err
		}
		target = d
	} else {
		ds, err := b.Store.ListDecisions(alerts.DecisionQuery{Agent: l.Agent, Limit: 1})
		if err != nil {
			return alerts.Decision{}, err
		}
		if len(ds) == 0 {
			return alerts.Decision{}, fmt.Errorf("no agent %q: %w", l.Agent, identity.ErrNotFound)
		}
		target = ds[0]
	}
	switch target.Action {
	case "revoke":
		return alerts.Decision{}, fmt.Errorf("%w: %s", response.ErrRevoked, target.Agent)
	case "throttle", "quarantine":
	default:
		return alerts.Decision{}, fmt.Errorf("%w: %s's last decision is %s", response.ErrNothingToLift, target.Agent, target.Action)
	}
	return b.Store.AddDecision(alerts.Decision{Agent: target.Agent, AgentID: target.AgentID, Action: alerts.ActionLift, Time: time.Now(),
		By: l.By, Reason: l.Reason, Lifted: target.Action, LiftedID: target.ID})
}
