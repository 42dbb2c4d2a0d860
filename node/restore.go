package node

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/alerts"
)

// runningResponse is what the stored decisions say still runs on this node for one agent key
// at an instant: a local quarantine, a throttle, or both (a throttle decided after a quarantine
// does not end it, as at run time).
type runningResponse struct {
	Agent string  // the agent's name when decided (for logs)
	Peer  peer.ID // the agent's key: the overlay and the router work by peer ID
	// Quarantine ends at QuarantineUntil (zero: none), decided by QuarantineID.
	QuarantineUntil time.Time
	QuarantineID    string
	// Throttle (Until zero: none), decided by ThrottleID.
	Throttle   agentproto.ThrottleSpec
	ThrottleID string
}

// runningResponses replays the stored decisions ds (as ListDecisions returns them, newest
// first) in the order they were taken and returns, per agent key, the quarantine and throttle
// still running at now, the way the gossip layer carried the decisions out:
//   - a quarantine (not dry-run) starts or renews the agent's quarantine, to its Until; one
//     that starts it (none was running at its Time) cuts the agent off, which ends a throttle
//     (Router.CutOff), while a renewal of a running quarantine cuts nothing and leaves the
//     throttle. (At run time the cut-off also depends on the registry: an agent the registry
//     itself held quarantined then kept its throttle, which the replay does not tell apart.)
//   - a throttle (not dry-run) starts or renews the throttle with its Rate, Burst and Until;
//     a quarantine still running goes on;
//   - a lift ends both;
//   - alert and revoke change neither (a revocation is the registry's: the overlay drops a
//     quarantine of an agent the registry holds revoked).
//
// A step whose Until is not after now has ended. Decisions of a key are replayed in order, so
// "quarantine, throttle, lift" restores nothing and a renewed quarantine ends at the newest
// Until. A quarantine or throttle that cannot be restored (no valid agent ID, no Until, a
// throttle without a valid rate and burst) is skipped and reported in problems. Pure: the
// result is sorted by agent name, then peer ID.
func runningResponses(ds []alerts.Decision, now time.Time) (out []runningResponse, problems []error) {
	byKey := map[string]*runningResponse{}
	for i := len(ds) - 1; i >= 0; i-- {
		d := &ds[i]
		if d.DryRun {
			continue
		}
		switch d.Action {
		case "quarantine", "throttle", alerts.ActionLift:
		default:
			continue
		}
		r := byKey[d.AgentID]
		if r == nil {
			id, err := identity.ParseID(d.AgentID)
			if err != nil {
				if d.Action != alerts.ActionLift {
					problems = append(problems, fmt.Errorf("decision %s (%s of %q): agent_id: %w", d.ID, d.Action, d.Agent, err))
				}
				continue
			}
			r = &runningResponse{Peer: id.Peer()}
			byKey[d.AgentID] = r
		}
		r.Agent = d.Agent
		switch d.Action {
		case "quarantine":
			if d.Until.IsZero() {
				problems = append(problems, fmt.Errorf("decision %s (quarantine of %q): no until", d.ID, d.Agent))
				continue
			}
			if !r.QuarantineUntil.After(d.Time) { // starts a quarantine: the cut-off ends a throttle
				r.Throttle, r.ThrottleID = agentproto.ThrottleSpec{}, ""
			}
			r.QuarantineUntil, r.QuarantineID = d.Until, d.ID
		case "throttle":
			if d.Until.IsZero() || !(d.Rate >= agentproto.MinThrottleRate && d.Rate <= agentproto.MaxThrottleRate) ||
				d.Burst < 1 || d.Burst > agentproto.MaxThrottleBurst {
				problems = append(problems, fmt.Errorf("decision %s (throttle of %q): rate %v, burst %d, until %v: not a throttle that can be restored",
					d.ID, d.Agent, d.Rate, d.Burst, d.Until))
				continue
			}
			r.Throttle = agentproto.ThrottleSpec{Peer: r.Peer, Rate: d.Rate, Burst: d.Burst, Until: d.Until}
			r.ThrottleID = d.ID
		case alerts.ActionLift:
			r.QuarantineUntil, r.QuarantineID = time.Time{}, ""
			r.Throttle, r.ThrottleID = agentproto.ThrottleSpec{}, ""
		}
	}
	for _, r := range byKey {
		if !r.QuarantineUntil.After(now) {
			r.QuarantineUntil, r.QuarantineID = time.Time{}, ""
		}
		if !r.Throttle.Until.After(now) {
			r.Throttle, r.ThrottleID = agentproto.ThrottleSpec{}, ""
		}
		if !r.QuarantineUntil.IsZero() || !r.Throttle.Until.IsZero() {
			out = append(out, *r)
		}
	}
	slices.SortFunc(out, func(a, b runningResponse) int {
		return cmp.Or(cmp.Compare(a.Agent, b.Agent), cmp.Compare(a.Peer, b.Peer))
	})
	return out, problems
}

// loadRunningResponses reads the stored decisions and returns the quarantines and throttles
// still running at now (runningResponses); it logs what it cannot restore. Start calls it
// before the first View is built, so a restored quarantine is in the overlay before any agent
// can be admitted.
func (n *Node) loadRunningResponses(now time.Time) ([]runningResponse, error) {
	ds, err := n.state.ListDecisions(alerts.DecisionQuery{})
	if err != nil {
		return nil, fmt.Errorf("node: restore response decisions: %w", err)
	}
	running, problems := runningResponses(ds, now)
	for _, p := range problems {
		n.log.Warn("node: response decision not restored", "err", p)
	}
	return running, nil
}

// restoredThrottles are the throttles of running, for the router to start with.
func restoredThrottles(running []runningResponse) []agentproto.ThrottleSpec {
	var out []agentproto.ThrottleSpec
	for _, r := range running {
		if !r.Throttle.Until.IsZero() {
			out = append(out, r.Throttle)
		}
	}
	return out
}
