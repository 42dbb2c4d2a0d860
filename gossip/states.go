package gossip

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vigil-mesh/vigil/identity"
)

// Member states as MemberStates reports them.
const (
	StateAlive   = "alive"   // in memberlist's live list, and this node's last probe of it was answered
	StateSuspect = "suspect" // this node's probe went unanswered (directly and through others); memberlist suspects it until it refutes or the suspicion times out
	StateDead    = "dead"    // memberlist declared it failed or it left; it is no longer gossiped to
)

// suspectLine is how memberlist (v0.7) announces that this node's probe of a member failed and
// that it now suspects it: "[INFO] memberlist: Suspect NAME has failed, no acks received".
// memberlist keeps a member's suspicion in unexported state and tells no delegate, so this line
// is the only signal of it; the next ack from that member (NotifyPingComplete), its rejoin or its
// death clears it.
const (
	suspectPrefix = "memberlist: Suspect "
	suspectSuffix = " has failed, no acks received"
)

// maxTrackedStates bounds the departed members remembered for MemberStates.
const maxTrackedStates = 4096

// stateTracker remembers the members memberlist declared dead or left (memberlist's own
// Members lists only the live ones). It is memberlist's EventDelegate.
//
// It also keeps a copy of every live member (live): memberlist's Members returns pointers into
// its own state, whose address and metadata it rewrites under its lock when an alive message
// arrives, so reading them outside that lock races. Its events are delivered under that lock,
// so the copies made here are consistent.
type stateTracker struct {
	mu      sync.Mutex
	live    map[string]memberlist.Node // memberlist name → a copy of the live member
	gone    map[identity.ID]struct{}
	suspect map[string]time.Time // memberlist names this node suspects → since when
	cid     identity.ClusterID
}

// noteLog reads one memberlist log line for this node's own suspicions.
func (t *stateTracker) noteLog(line string) {
	_, rest, ok := strings.Cut(line, suspectPrefix)
	if !ok {
		return
	}
	name, ok := strings.CutSuffix(rest, suspectSuffix)
	if !ok {
		return
	}
	if _, err := identity.ParseID(name); err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.suspect == nil {
		t.suspect = map[string]time.Time{}
	}
	if len(t.suspect) >= maxTrackedStates {
		return
	}
	if _, ok := t.suspect[name]; !ok {
		t.suspect[name] = time.Now()
	}
}

func (t *stateTracker) clearSuspect(name string) {
	t.mu.Lock()
	delete(t.suspect, name)
	t.mu.Unlock()
}

// AckPayload and NotifyPingComplete make the tracker memberlist's PingDelegate: an answered
// probe ends this node's suspicion of the member.
func (t *stateTracker) AckPayload() []byte { return nil }

func (t *stateTracker) NotifyPingComplete(n *memberlist.Node, _ time.Duration, _ []byte) {
	t.clearSuspect(n.Name)
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
	t.clearSuspect(n.Name)
	cp := *n
	cp.Addr, cp.Meta = slices.Clone(n.Addr), slices.Clone(n.Meta)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live == nil {
		t.live = map[string]memberlist.Node{}
	}
	t.live[n.Name] = cp
	if id, ok := t.id(n); ok {
		delete(t.gone, id)
	}
}

// liveNode returns a copy of the live member called name.
func (t *stateTracker) liveNode(name string) (memberlist.Node, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.live[name]
	return n, ok
}

// liveNodes returns copies of the live members, this node included, as memberlist's Members
// would list them.
func (t *stateTracker) liveNodes() []*memberlist.Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*memberlist.Node, 0, len(t.live))
	for _, n := range t.live {
		out = append(out, &n)
	}
	return out
}

func (t *stateTracker) NotifyUpdate(n *memberlist.Node) { t.NotifyJoin(n) }

func (t *stateTracker) NotifyLeave(n *memberlist.Node) {
	t.clearSuspect(n.Name)
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.live, n.Name)
	id, ok := t.id(n)
	if !ok {
		return
	}
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
// members, StateSuspect for live members whose last probe by this node went unanswered,
// StateDead for those memberlist declared failed or that left. A member this node never saw is
// absent.
func (m *Mesh) MemberStates() map[identity.ID]string {
	out := map[identity.ID]string{m.self: StateAlive}
	m.states.mu.Lock()
	for id := range m.states.gone {
		out[id] = StateDead
	}
	m.states.mu.Unlock()
	live := m.Members()
	m.states.mu.Lock()
	for _, mb := range live {
		out[mb.ID] = StateAlive
		if _, ok := m.states.suspect[mb.ID.String()]; ok {
			out[mb.ID] = StateSuspect
		}
	}
	m.states.mu.Unlock()
	return out
}
