package enforce

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// Entry is what a View knows about one principal: enough to decide admission without touching
// the registry.
type Entry struct {
	Role      identity.Role
	Status    identity.Status // stored status: active, quarantined or revoked (never expired)
	ExpiresAt int64           // Unix ns; agents only (0 for nodes and operators, which never expire)
	Name      string
	agent     int32 // index into View.agents, -1 for nodes and operators
}

// StatusAt is the status at now (Unix ns): StatusExpired for an active agent whose ExpiresAt <= now.
func (e Entry) StatusAt(now int64) identity.Status {
	if e.Role == identity.RoleAgent && e.Status == identity.StatusActive && e.ExpiresAt <= now {
		return identity.StatusExpired
	}
	return e.Status
}

// AdmitsAt reports whether the principal may hold a session at now (Unix ns), ignoring staleness.
func (e Entry) AdmitsAt(now int64) bool { return e.StatusAt(now) == identity.StatusActive }

// wasAdmissible reports whether the entry admitted its principal when it was current, ignoring
// expiry (an expired agent is the expiry watcher's business).
func (e Entry) wasAdmissible() bool {
	return e.Role != identity.RoleAgent || e.Status == identity.StatusActive
}

// View is an immutable snapshot of who may connect, built from the registry at an applied index.
// Lookups take no lock and allocate nothing. A View is never modified after NewView returns.
type View struct {
	index       uint64
	initialised bool
	trustDomain string
	cluster     identity.ClusterID
	entries     map[peer.ID]Entry
	agents      []identity.Agent // full records, for the agent protocol; never modified
	expiries    []int64          // ExpiresAt of every active agent, sorted ascending
}

// NewView builds a View of reg as of the applied index. reg is only read, during the call (run it
// under the registry's read lock, e.g. inside consensus.Node.Read).
func NewView(reg *identity.Registry, index uint64) *View {
	agents := reg.Agents()
	nodes := reg.Nodes()
	ops := reg.Operators()
	v := &View{
		index: index, initialised: reg.Initialised(), trustDomain: reg.TrustDomain(), cluster: reg.ClusterID(),
		entries: make(map[peer.ID]Entry, len(agents)+len(nodes)+len(ops)),
		agents:  agents,
	}
	for i, a := range agents {
		v.entries[a.ID.Peer()] = Entry{Role: identity.RoleAgent, Status: a.Status, ExpiresAt: a.ExpiresAt.UnixNano(),
			Name: a.Name, agent: int32(i)}
		if a.Status == identity.StatusActive {
			v.expiries = append(v.expiries, a.ExpiresAt.UnixNano())
		}
	}
	slices.Sort(v.expiries)
	for _, n := range nodes {
		v.entries[n.ID.Peer()] = Entry{Role: identity.RoleNode, Status: identity.StatusActive, Name: n.Name, agent: -1}
	}
	for _, o := range ops {
		// A key is held by one principal only (the registry refuses reuse), so nothing is overwritten.
		v.entries[o.ID.Peer()] = Entry{Role: identity.RoleOperator, Status: identity.StatusActive, Name: o.Name, agent: -1}
	}
	return v
}

// Index is the applied index the View was built at.
func (v *View) Index() uint64 { return v.index }

// Initialised reports whether the registry held a genesis when the View was built.
func (v *View) Initialised() bool { return v.initialised }

// TrustDomain is the cluster's SPIFFE trust domain.
func (v *View) TrustDomain() string { return v.trustDomain }

// ClusterID is the cluster's ID.
func (v *View) ClusterID() identity.ClusterID { return v.cluster }

// Len is the number of principals in the View.
func (v *View) Len() int { return len(v.entries) }

// Lookup returns the entry of p. It allocates nothing.
func (v *View) Lookup(p peer.ID) (Entry, bool) {
	e, ok := v.entries[p]
	return e, ok
}

// Agent returns the full registry record of agent p. The record's Labels map and Capabilities
// slice are shared with the View: callers must not modify them.
func (v *View) Agent(p peer.ID) (identity.Agent, bool) {
	e, ok := v.entries[p]
	if !ok || e.agent < 0 {
		return identity.Agent{}, false
	}
	return v.agents[e.agent], true
}

// NextExpiry returns the earliest ExpiresAt (Unix ns) of an active agent that is > after.
func (v *View) NextExpiry(after int64) (int64, bool) {
	i, _ := slices.BinarySearch(v.expiries, after+1)
	if i == len(v.expiries) {
		return 0, false
	}
	return v.expiries[i], true
}

// Decide is the admission decision for p at now (Unix ns), from the View alone (no staleness,
// no bootstrap list): the reason says why, Reason.Allowed says whether.
func (v *View) Decide(p peer.ID, now int64) Reason {
	e, ok := v.entries[p]
	if !ok {
		return ReasonUnknown
	}
	switch e.Role {
	case identity.RoleNode:
		return ReasonNode
	case identity.RoleOperator:
		return ReasonOperator
	}
	switch e.StatusAt(now) {
	case identity.StatusActive:
		return ReasonAgent
	case identity.StatusQuarantined:
		return ReasonQuarantined
	case identity.StatusExpired:
		return ReasonExpired
	}
	return ReasonRevoked
}

// Change is one principal whose entry differs between two successive Views.
type Change struct {
	Peer           peer.ID
	Name           string
	Old, New       Entry
	HadOld, HasNew bool // false: absent from the old (added) or the new View (removed or rotated out)
	// At is the registry time of the latest audit entry naming the principal: the time the Raft
	// leader appended the command that changed it (identical on every replica). Set for changes
	// that remove admission; zero when no audit entry names the principal.
	At time.Time
}

// Lost reports whether the change took admission away at now (Unix ns): the principal was
// admissible in the old View and is not in the new one.
func (c Change) Lost(now int64) bool {
	return c.HadOld && c.Old.wasAdmissible() && !(c.HasNew && c.New.AdmitsAt(now))
}

// Views publishes the current View. Current is lock-free; Update is serialised.
type Views struct {
	mu      sync.Mutex // serialises Update and guards overlay
	cur     atomic.Pointer[View]
	overlay map[peer.ID]identity.Status // local statuses ahead of the registry (overlay.go)
}

// NewViews returns a holder with no View yet (Current returns nil: deny everything).
func NewViews() *Views { return &Views{} }

// Current returns the latest View, or nil before the first Update.
func (vs *Views) Current() *View { return vs.cur.Load() }

// Update builds a View of reg at index, publishes it, and returns every principal whose entry
// changed (status, role, expiry, added, removed). It ignores an index lower than the current
// View's (an out-of-order caller) and returns nil then. The first Update returns nil: nothing
// was admitted before it. reg is read only during the call, under the caller's lock.
func (vs *Views) Update(reg *identity.Registry, index uint64) []Change {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	old := vs.cur.Load()
	if old != nil && index < old.index {
		return nil
	}
	nv := NewView(reg, index)
	vs.applyOverlayLocked(nv)
	vs.cur.Store(nv)
	if old == nil {
		return nil
	}
	var out []Change
	for p, oe := range old.entries {
		ne, ok := nv.entries[p]
		if ok && sameEntry(oe, ne) {
			continue
		}
		out = append(out, Change{Peer: p, Name: oe.Name, Old: oe, New: ne, HadOld: true, HasNew: ok})
	}
	for p, ne := range nv.entries {
		if _, ok := old.entries[p]; !ok {
			out = append(out, Change{Peer: p, Name: ne.Name, New: ne, HasNew: true})
		}
	}
	for i := range out {
		if out[i].HadOld && out[i].Old.wasAdmissible() {
			out[i].At = lastAudit(reg, out[i].Name)
		}
	}
	return out
}

func sameEntry(a, b Entry) bool {
	return a.Role == b.Role && a.Status == b.Status && a.ExpiresAt == b.ExpiresAt && a.Name == b.Name
}

// lastAudit returns the time of the latest audit entry naming name (zero when none). Revocations
// are rare, and a principal's audit index is short, so reading it in full is cheap.
func lastAudit(reg *identity.Registry, name string) time.Time {
	if name == "" {
		return time.Time{}
	}
	es := reg.Audit(identity.AuditQuery{Principal: name})
	if len(es) == 0 {
		return time.Time{}
	}
	return es[len(es)-1].Time
}
