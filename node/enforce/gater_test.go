package enforce

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

func TestGaterConfigValidate(t *testing.T) {
	ok := DefaultGaterConfig()
	for _, tc := range []struct {
		name string
		mod  func(*GaterConfig)
	}{
		{"bad mode", func(c *GaterConfig) { c.Mode = 9 }},
		{"zero staleness", func(c *GaterConfig) { c.MaxStaleness = 0 }},
		{"strict without staleness func", func(c *GaterConfig) { c.Mode = Strict }},
		{"nil clock", func(c *GaterConfig) { c.Now = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestGaterStaleness: strict refuses new agent sessions on a stale view and still admits nodes
// and operators; best_effort keeps the last known state.
func TestGaterStaleness(t *testing.T) {
	f := newFixture(t)
	agent := f.register("a", time.Hour)
	var stale atomic.Int64 // the fake age of the view, ns
	tests := []struct {
		name  string
		mode  Mode
		age   time.Duration
		p     peer.ID
		want  Reason
		allow bool
	}{
		{"strict fresh agent", Strict, time.Second, agent.ID().Peer(), ReasonAgent, true},
		{"strict stale agent", Strict, time.Minute, agent.ID().Peer(), ReasonStale, false},
		{"strict stale node", Strict, time.Minute, f.node.ID().Peer(), ReasonNode, true},
		{"strict stale operator", Strict, time.Minute, f.op.ID().Peer(), ReasonOperator, true},
		{"strict never contacted", Strict, time.Duration(1<<63 - 1), agent.ID().Peer(), ReasonStale, false},
		{"best effort stale agent", BestEffort, time.Hour, agent.ID().Peer(), ReasonAgent, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultGaterConfig()
			cfg.Mode, cfg.MaxStaleness = tc.mode, 10*time.Second
			cfg.Staleness = func() time.Duration { return time.Duration(stale.Load()) }
			g, err := NewGater(NewViews(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			f.update(g.Views())
			stale.Store(int64(tc.age))
			if got := g.Decide(tc.p); got != tc.want {
				t.Fatalf("Decide = %s, want %s", got, tc.want)
			}
			if got := g.InterceptSecured(network.DirInbound, tc.p, nil); got != tc.allow {
				t.Fatalf("InterceptSecured = %v, want %v", got, tc.allow)
			}
			if got := g.Stats().Secured[tc.want]; got != 1 {
				t.Fatalf("Stats().Secured[%s] = %d, want 1", tc.want, got)
			}
		})
	}
}

// TestGaterStrictRealHosts: the same agent is refused a real session while the view is stale in
// strict mode, and admitted again once it is fresh.
func TestGaterStrictRealHosts(t *testing.T) {
	f := newFixture(t)
	agentKey := f.register("a", time.Hour)
	var stale atomic.Int64
	cfg := DefaultGaterConfig()
	cfg.Mode, cfg.MaxStaleness = Strict, 5*time.Second
	cfg.Staleness = func() time.Duration { return time.Duration(stale.Load()) }
	n := newNode(t, f, cfg)
	agent := newHost(t, agentKey, nil, false)
	opHost := newHost(t, f.op, nil, false)

	stale.Store(int64(time.Minute))
	if err := connect(agent, n.h); err == nil && n.conns.get(agent.ID()) > 0 {
		t.Fatal("strict, stale view: agent admitted")
	}
	if err := connect(opHost, n.h); err != nil {
		t.Fatalf("strict, stale view: operator refused: %v", err)
	}
	stale.Store(int64(time.Second))
	if err := connect(agent, n.h); err != nil {
		t.Fatalf("strict, fresh view: agent refused: %v", err)
	}
	if n.conns.get(agent.ID()) != 1 {
		t.Fatalf("node saw %d connections from the agent, want 1", n.conns.get(agent.ID()))
	}
}

// TestGaterRefusesKeys is the "0 of 10,000 attempts" promise: for a revoked, an unknown and an
// expired key, 10,000 gater decisions and 200 real handshakes on loopback, none accepted. An
// active agent in the same run is accepted every time (the test can fail).
func TestGaterRefusesKeys(t *testing.T) {
	decisions, handshakes := 10_000, 200
	if testing.Short() {
		handshakes = 20
	}
	f := newFixture(t)
	revoked := f.register("revoked", time.Hour)
	f.apply(&identity.RevokeAgent{Name: "revoked", Reason: "test"})
	expired := f.register("expired", 50*time.Millisecond)
	active := f.register("active", time.Hour)
	unknown := mustKey(t)
	time.Sleep(60 * time.Millisecond) // the expired agent's registration lapses (wall clock)
	n := newNode(t, f, DefaultGaterConfig())

	for _, tc := range []struct {
		name string
		key  identity.PrivateKey
		want Reason
	}{
		{"revoked", revoked, ReasonRevoked},
		{"unknown", unknown, ReasonUnknown},
		{"expired", expired, ReasonExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.key.ID().Peer()
			accepted := 0
			for range decisions {
				if n.g.InterceptSecured(network.DirInbound, p, nil) {
					accepted++
				}
			}
			h := newHost(t, tc.key, nil, false)
			dialOK, sessions := 0, 0
			for range handshakes {
				if connect(h, n.h) == nil {
					dialOK++
				}
				if ping(h, n.h.ID()) == nil {
					sessions++
				}
				_ = h.Network().ClosePeer(n.h.ID()) // the next attempt makes a new handshake
			}
			if accepted != 0 || n.conns.get(p) != 0 || sessions != 0 {
				t.Fatalf("accepted %d of %d decisions, %d real connections, %d working sessions; want 0",
					accepted, decisions, n.conns.get(p), sessions)
			}
			if got := n.g.Stats().Secured[tc.want]; got < uint64(decisions+handshakes) {
				t.Fatalf("Stats().Secured[%s] = %d, want >= %d", tc.want, got, decisions+handshakes)
			}
			t.Logf("%s: 0 of %d decisions, 0 of %d handshakes accepted by the node (client-side Connect returned nil %d times: the client finishes its handshake before the node refuses)",
				tc.name, decisions, handshakes, dialOK)
		})
	}
	t.Run("active control", func(t *testing.T) {
		h := newHost(t, active, nil, false)
		for range 20 {
			if err := connect(h, n.h); err != nil {
				t.Fatalf("active agent refused: %v", err)
			}
			if err := ping(h, n.h.ID()); err != nil {
				t.Fatalf("active agent: ping: %v", err)
			}
			_ = h.Network().ClosePeer(n.h.ID())
		}
	})
}

func TestBootstrapPeers(t *testing.T) {
	boot, other := mustKey(t).ID().Peer(), mustKey(t).ID().Peer()
	cfg := DefaultGaterConfig()
	cfg.Bootstrap = []peer.ID{boot}
	g, err := NewGater(NewViews(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r := g.Decide(boot); r != ReasonBootstrap {
		t.Fatalf("no view: bootstrap peer = %s", r)
	}
	if r := g.Decide(other); r != ReasonNoView {
		t.Fatalf("no view: other peer = %s", r)
	}
	f := newFixture(t) // genesis applied: the bootstrap list no longer applies
	f.update(g.Views())
	if r := g.Decide(boot); r != ReasonUnknown {
		t.Fatalf("after genesis: bootstrap peer = %s, want unknown", r)
	}
}

func BenchmarkGaterDecision(b *testing.B) {
	f := newFixture(b)
	for i := range 1000 {
		f.register("agent-"+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676)), time.Hour)
	}
	k := f.register("target", time.Hour)
	cfg := DefaultGaterConfig()
	cfg.Mode = Strict
	cfg.Staleness = func() time.Duration { return time.Second }
	g, err := NewGater(NewViews(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	f.update(g.Views())
	p := k.ID().Peer()
	b.ReportAllocs()
	for b.Loop() {
		if !g.InterceptSecured(network.DirInbound, p, nil) {
			b.Fatal("refused")
		}
	}
}
