package enforce

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

func (f *fixture) update(vs *Views) []Change {
	var ch []Change
	f.src.Read(func(r *identity.Registry) { ch = vs.Update(r, f.src.AppliedIndex()) })
	return ch
}

func TestViewDecide(t *testing.T) {
	f := newFixture(t)
	active := f.register("active", time.Hour)
	revoked := f.register("revoked", time.Hour)
	quar := f.register("quar", time.Hour)
	short := f.register("short", time.Minute)
	f.apply(&identity.RevokeAgent{Name: "revoked", Reason: "test"})
	f.apply(&identity.QuarantineAgent{Name: "quar", Reason: "test"})
	vs := NewViews()
	f.update(vs)
	v := vs.Current()
	now := time.Now().UnixNano()
	later := time.Now().Add(2 * time.Minute).UnixNano()
	tests := []struct {
		name string
		p    peer.ID
		now  int64
		want Reason
	}{
		{"node", f.node.ID().Peer(), now, ReasonNode},
		{"operator", f.op.ID().Peer(), now, ReasonOperator},
		{"active agent", active.ID().Peer(), now, ReasonAgent},
		{"revoked agent", revoked.ID().Peer(), now, ReasonRevoked},
		{"quarantined agent", quar.ID().Peer(), now, ReasonQuarantined},
		{"unexpired agent", short.ID().Peer(), now, ReasonAgent},
		{"expired agent", short.ID().Peer(), later, ReasonExpired},
		{"unknown key", mustKey(t).ID().Peer(), now, ReasonUnknown},
		{"empty peer id", "", now, ReasonUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := v.Decide(tc.p, tc.now); got != tc.want {
				t.Fatalf("Decide = %s, want %s", got, tc.want)
			}
		})
	}
	if a, ok := v.Agent(active.ID().Peer()); !ok || a.Name != "active" || a.Labels["site"] != "s1" {
		t.Fatalf("Agent(active) = %+v, %v", a, ok)
	}
	if _, ok := v.Agent(f.node.ID().Peer()); ok {
		t.Fatal("Agent(node) found")
	}
	next, ok := v.NextExpiry(now)
	if sa, _ := v.Lookup(short.ID().Peer()); !ok || next != sa.ExpiresAt {
		t.Fatalf("NextExpiry = %d, %v; want the short agent's %d", next, ok, sa.ExpiresAt)
	}
	if _, ok := v.NextExpiry(time.Now().Add(2 * time.Hour).UnixNano()); ok {
		t.Fatal("NextExpiry after every expiry found one")
	}
}

func TestViewsUpdateChanges(t *testing.T) {
	f := newFixture(t)
	a := f.register("a", time.Hour)
	b := f.register("b", time.Hour)
	vs := NewViews()
	if ch := f.update(vs); ch != nil {
		t.Fatalf("first update returned %d changes, want none", len(ch))
	}
	f.apply(&identity.RevokeAgent{Name: "a", Reason: "compromised"})
	f.apply(&identity.QuarantineAgent{Name: "b", Reason: "anomaly"})
	c := f.register("c", time.Hour)
	ch := f.update(vs)
	now := time.Now().UnixNano()
	got := map[peer.ID]Change{}
	for _, x := range ch {
		got[x.Peer] = x
	}
	if len(got) != 3 {
		t.Fatalf("changes = %+v, want a, b and c", ch)
	}
	for _, tc := range []struct {
		name string
		p    peer.ID
		lost bool
		to   identity.Status
	}{
		{"revoked", a.ID().Peer(), true, identity.StatusRevoked},
		{"quarantined", b.ID().Peer(), true, identity.StatusQuarantined},
		{"added", c.ID().Peer(), false, identity.StatusActive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := got[tc.p]
			if x.Lost(now) != tc.lost || x.New.Status != tc.to {
				t.Fatalf("change %+v: lost %v status %s, want %v %s", x, x.Lost(now), x.New.Status, tc.lost, tc.to)
			}
			if tc.lost && (x.At.IsZero() || time.Since(x.At) > time.Minute) {
				t.Fatalf("At = %v, want the revoking command's time", x.At)
			}
		})
	}
	// Release brings b back: a status change that loses nothing.
	f.apply(&identity.ReleaseAgent{Name: "b"})
	ch = f.update(vs)
	if len(ch) != 1 || ch[0].Peer != b.ID().Peer() || ch[0].Lost(now) || ch[0].New.Status != identity.StatusActive {
		t.Fatalf("after release: %+v", ch)
	}
	// An older index is ignored.
	old := vs.Current()
	f.src.Read(func(r *identity.Registry) { vs.Update(r, 1) })
	if vs.Current() != old {
		t.Fatal("an out-of-order update replaced the view")
	}
}

func TestLookupAllocatesNothing(t *testing.T) {
	f := newFixture(t)
	k := f.register("a", time.Hour)
	vs := NewViews()
	f.update(vs)
	v := vs.Current()
	p := k.ID().Peer()
	now := time.Now().UnixNano()
	if n := testing.AllocsPerRun(1000, func() { _, _ = v.Lookup(p); _ = v.Decide(p, now) }); n != 0 {
		t.Fatalf("lookup allocates %v times", n)
	}
}
