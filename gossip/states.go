package gossip

import (
	"sync"

	"github.com/hashicorp/memberlist"
	"github.com/vigil-mesh/vigil/identity"
)

// Member states as MemberStates reports them.
const (
	StateAlive = "alive" // in memberlist's live list (memberlist does not expose suspicion)
	StateDead  = "dead"  // memberlist declared it failed or it left; it is no longer gossiped to
)

// maxTrackedStates bounds the departed members remembered for MemberStates.
const maxTrackedStates = 4096

// stateTracker remembers the members memberlist declared dead or left (memberlist's own
// Members lists only the live ones). It is memberlist's EventDelegate.
type stateTracker struct {
	mu   sync.Mutex
	gone map[identity.ID]struct{}
	cid  identity.ClusterID
}

func (t *stateTracker) id(n *memberlist.Node) (identity.ID, bool) {
	id, err := identity.ParseID(n.Name)
	if err != nil {
		return identity.ID{}, false
	}
	if _, err := verifyMeta(t.cid, id, n.Meta); err != nil {
		return identity.ID{}, false
	}
	return id, true
}

func (t *stateTracker) NotifyJoin(n *memberlist.Node) {
	if id, ok := t.id(n); ok {
		t.mu.Lock()
		delete(t.gone, id)
		t.mu.Unlock()
	}
}

func (t *stateTracker) NotifyUpdate(n *memberlist.Node) { t.NotifyJoin(n) }

func (t *stateTracker) NotifyLeave(n *memberlist.Node) {
	id, ok := t.id(n)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone == nil {
		t.gone = map[identity.ID]struct{}{}
	}
	if len(t.gone) >= maxTrackedStates {
		for k := range t.gone { // forget an arbitrary departed member
			delete(t.gone, k)
			break
		}
	}
	t.gone[id] = struct{}{}
}

// MemberStates returns this node's view of every member it has known since it started, by
// node ID (the ID in the member's verified metadata): StateAlive for this node and the live
// members, StateDead for those memberlist declared failed or that left. A member this node never
// saw is absent.
func (m *Mesh) MemberStates() map[identity.ID]string {
	out := map[identity.ID]string{m.self: StateAlive}
	m.states.mu.Lock()
	for id := range m.states.gone {
		out[id] = StateDead
	}
	m.states.mu.Unlock()
	for _, mb := range m.Members() {
		out[mb.ID] = StateAlive
	}
	return out
}
