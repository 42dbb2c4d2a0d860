package enforce

import (
	"maps"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// The local overlay: statuses this node applies to agents ahead of, or beside, the registry.
//   - Revoked: a verified revocation that arrived by gossip before the local replica applied it
//     through Raft (a site cut off from the leader). Revocations are monotonic, so every View
//     treats the agent as revoked, in best_effort and strict alike, until the registry says so
//     itself; then the entry is dropped.
//   - Quarantined: a local quarantine decided by collective response (gossip/response), until
//     the caller lifts it (its TTL). It never overrides a registry revocation and never
//     reaches the registry.
// The overlay holds agents only: nodes and operators change only through Raft.

// RevokeOverlay marks agent p revoked now: it publishes a copy of the current View with p's
// entry revoked and keeps p in the overlay for every later View until the registry holds it
// revoked. It reports whether p was admissible before (so the caller should cut its sessions).
// A p that the current View does not know is kept and applied when it appears.
func (vs *Views) RevokeOverlay(p peer.ID) bool {
	return vs.setOverlay(p, identity.StatusRevoked)
}

// QuarantineOverlay quarantines agent p on this node only, until LiftQuarantine. It reports
// whether p was admissible before. A revoked agent stays revoked.
func (vs *Views) QuarantineOverlay(p peer.ID) bool {
	return vs.setOverlay(p, identity.StatusQuarantined)
}

// LiftQuarantine ends a local quarantine of p. The View keeps p quarantined until the next
// Update (call Enforcer.Refresh), which rebuilds it from the registry.
func (vs *Views) LiftQuarantine(p peer.ID) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if vs.overlay[p] == identity.StatusQuarantined {
		delete(vs.overlay, p)
	}
}

func (vs *Views) setOverlay(p peer.ID, st identity.Status) bool {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	cur := vs.cur.Load()
	if cur != nil {
		if e, ok := cur.entries[p]; ok && e.Role != identity.RoleAgent {
			return false
		}
	}
	if vs.overlay == nil {
		vs.overlay = map[peer.ID]identity.Status{}
	}
	if vs.overlay[p] == identity.StatusRevoked {
		return false // already revoked here; a quarantine adds nothing
	}
	vs.overlay[p] = st
	if cur == nil {
		return false
	}
	e, ok := cur.entries[p]
	if !ok || e.Status == identity.StatusRevoked || e.Status == st {
		return false
	}
	nv := *cur
	nv.entries = maps.Clone(cur.entries)
	nv.agents = append([]identity.Agent(nil), cur.agents...)
	vs.applyOverlayLocked(&nv)
	vs.cur.Store(&nv)
	return e.wasAdmissible()
}

// Overlaid returns how many agents the overlay holds.
func (vs *Views) Overlaid() int {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	return len(vs.overlay)
}

// applyOverlayLocked applies the overlay to v (a View not yet published) and forgets revocations
// the registry already holds (and quarantines of agents it revoked).
func (vs *Views) applyOverlayLocked(v *View) {
	for p, st := range vs.overlay {
		e, ok := v.entries[p]
		if !ok || e.Role != identity.RoleAgent {
			continue
		}
		if e.Status == identity.StatusRevoked {
			delete(vs.overlay, p) // Raft caught up, or revoked anyway
			continue
		}
		if st == identity.StatusQuarantined && e.Status != identity.StatusActive {
			continue // the registry's own quarantine stands
		}
		e.Status = st
		v.entries[p] = e
		if e.agent >= 0 && int(e.agent) < len(v.agents) {
			v.agents[e.agent].Status = st
		}
	}
}
