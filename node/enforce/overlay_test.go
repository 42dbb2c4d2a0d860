package enforce

import (
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

// TestRevokeOverlay: a gossip revocation revokes at once, survives later Views built from a
// registry that has not applied it yet, and leaves the overlay once the registry has.
func TestRevokeOverlay(t *testing.T) {
	f := newFixture(t)
	a := f.register("a", time.Hour)
	b := f.register("b", time.Hour)
	late := mustKey(t) // not yet in the registry
	vs := NewViews()
	f.update(vs)
	now := time.Now().UnixNano()
	if !vs.RevokeOverlay(a.ID().Peer()) {
		t.Fatal("an active agent revoked by gossip: want true (cut its sessions)")
	}
	if vs.RevokeOverlay(a.ID().Peer()) {
		t.Fatal("second overlay of the same agent reported a change")
	}
	if vs.RevokeOverlay(f.node.ID().Peer()) {
		t.Fatal("a node cannot be revoked through the agent overlay")
	}
	vs.RevokeOverlay(late.ID().Peer())
	if r := vs.Current().Decide(a.ID().Peer(), now); r != ReasonRevoked {
		t.Fatalf("after overlay: %s", r)
	}
	if r := vs.Current().Decide(b.ID().Peer(), now); r != ReasonAgent {
		t.Fatalf("another agent affected: %s", r)
	}
	if ag, _ := vs.Current().Agent(a.ID().Peer()); ag.Status != identity.StatusRevoked {
		t.Fatal("the agent record still says active")
	}
	// An unrelated registry change: the overlay holds.
	f.register("c", time.Hour)
	f.update(vs)
	if r := vs.Current().Decide(a.ID().Peer(), now); r != ReasonRevoked {
		t.Fatalf("overlay lost on the next View: %s", r)
	}
	// The agent registered late is revoked as soon as it appears.
	f.apply(&identity.RegisterAgent{Name: "late", Key: late.Public(), ExpiresAt: time.Now().Add(time.Hour)})
	f.update(vs)
	if r := vs.Current().Decide(late.ID().Peer(), now); r != ReasonRevoked {
		t.Fatalf("late agent: %s", r)
	}
	// Raft catches up: the overlay entry goes.
	f.apply(&identity.RevokeAgent{Name: "a", Reason: "committed"})
	f.apply(&identity.RevokeAgent{Name: "late", Reason: "committed"})
	f.update(vs)
	if n := vs.Overlaid(); n != 0 {
		t.Fatalf("%d overlay entries after the registry caught up", n)
	}
}

// TestQuarantineOverlay: a local quarantine refuses the agent until lifted; a revocation
// dominates it.
func TestQuarantineOverlay(t *testing.T) {
	f := newFixture(t)
	a := f.register("a", time.Hour)
	b := f.register("b", time.Hour)
	vs := NewViews()
	f.update(vs)
	now := time.Now().UnixNano()
	if !vs.QuarantineOverlay(a.ID().Peer()) {
		t.Fatal("quarantine of an active agent: want true")
	}
	if r := vs.Current().Decide(a.ID().Peer(), now); r != ReasonQuarantined {
		t.Fatalf("quarantined: %s", r)
	}
	f.update(vs) // a new View keeps it
	if r := vs.Current().Decide(a.ID().Peer(), now); r != ReasonQuarantined {
		t.Fatalf("quarantine lost on the next View: %s", r)
	}
	vs.LiftQuarantine(a.ID().Peer())
	f.update(vs)
	if r := vs.Current().Decide(a.ID().Peer(), now); r != ReasonAgent {
		t.Fatalf("after lifting: %s", r)
	}
	// Revoked by gossip, then a quarantine: still revoked; lifting does not unrevoke.
	vs.RevokeOverlay(b.ID().Peer())
	if vs.QuarantineOverlay(b.ID().Peer()) {
		t.Fatal("quarantine of a revoked agent reported a change")
	}
	vs.LiftQuarantine(b.ID().Peer())
	f.update(vs)
	if r := vs.Current().Decide(b.ID().Peer(), now); r != ReasonRevoked {
		t.Fatalf("revocation undone by a quarantine lift: %s", r)
	}
}
