package enforce

import (
	"maps"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// The revocation overlay: agents revoked by a verified revocation that arrived by gossip before
// the local replica applied it through Raft (a site cut off from the leader). Revocations are
// monotonic, so every View treats these peers as revoked, in best_effort and strict alike, until
// the registry says so itself; then the overlay entry is dropped.

// RevokeOverlay marks agent p revoked now: it publishes a copy of the current View with p's
// entry revoked and keeps p in the overlay for every later View until the registry holds it
// revoked. It reports whether p was admissible before (so the caller should cut its sessions).
// A p that the current View does not know is kept and applied when it appears.
func (vs *Views) RevokeOverlay(p peer.ID) bool {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	cur := vs.cur.Load()
	if cur != nil {
		if e, ok := cur.entries[p]; ok && e.Role != identity.RoleAgent {
			return false // only agents are revoked; nodes leave by RemoveNode through Raft
		}
	}
	if vs.overlay == nil {
		vs.overlay = map[peer.ID]struct{}{}
	}
	vs.overlay[p] = struct{}{}
	if cur == nil {
		return false
	}
	e, ok := cur.entries[p]
	if !ok || e.Role != identity.RoleAgent || e.Status == identity.StatusRevoked {
		return false
	}
	nv := *cur
	nv.entries = maps.Clone(cur.entries)
	nv.agents = append([]identity.Agent(nil), cur.agents...)
	vs.applyOverlayLocked(&nv)
	vs.cur.Store(&nv)
	return e.wasAdmissible()
}

// Overlaid returns how many peers are revoked by gossip and not yet by the registry.
func (vs *Views) Overlaid() int {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	return len(vs.overlay)
}

// applyOverlayLocked revokes the overlay's peers in v (a View not yet published) and forgets
// those the registry already holds revoked.
func (vs *Views) applyOverlayLocked(v *View) {
	for p := range vs.overlay {
		e, ok := v.entries[p]
		if !ok || e.Role != identity.RoleAgent {
			continue
		}
		if e.Status == identity.StatusRevoked {
			delete(vs.overlay, p) // Raft caught up
			continue
		}
		e.Status = identity.StatusRevoked
		v.entries[p] = e
		if e.agent >= 0 && int(e.agent) < len(v.agents) {
			v.agents[e.agent].Status = identity.StatusRevoked
		}
	}
}
