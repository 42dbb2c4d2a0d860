package agentproto

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/enforce"
)

// fixture is a real registry (genesis signed by a generated operator key) behind a MemSource,
// and the Views a server reads. update() publishes the registry's current state.
type fixture struct {
	t       testing.TB
	cluster identity.ClusterID
	op      identity.PrivateKey
	node    identity.PrivateKey
	src     *enforce.MemSource
	views   *enforce.Views
}

func mustKey(tb testing.TB) identity.PrivateKey {
	tb.Helper()
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	f, _ := newFixtureNodes(tb, 1)
	return f
}

// newFixtureNodes is newFixture with n admitted nodes; f.node is the first of the keys returned.
func newFixtureNodes(tb testing.TB, n int) (*fixture, []identity.PrivateKey) {
	tb.Helper()
	f := &fixture{t: tb, op: mustKey(tb), src: enforce.NewMemSource(identity.NewRegistry()), views: enforce.NewViews()}
	var err error
	if f.cluster, err = identity.NewClusterID(rand.Reader); err != nil {
		tb.Fatal(err)
	}
	keys := make([]identity.PrivateKey, n)
	nodes := make([]identity.NodeEntry, n)
	for i := range keys {
		keys[i] = mustKey(tb)
		nodes[i] = identity.NodeEntry{Name: fmt.Sprintf("node-%d", i+1), Key: keys[i].Public(), Site: "s1", Voter: true,
			Addrs: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 7400+i)}}
	}
	f.node = keys[0]
	f.apply(&identity.Genesis{ClusterID: f.cluster, TrustDomain: "test.vigil", Threshold: 1,
		Operators: []identity.OperatorEntry{{Name: "op-1", Key: f.op.Public()}}, Nodes: nodes})
	return f, keys
}

func (f *fixture) apply(p identity.Payload) {
	f.t.Helper()
	now := time.Now()
	c, err := identity.NewCommand(f.cluster, p, now, rand.Reader)
	if err != nil {
		f.t.Fatal(err)
	}
	c.Sign(f.op)
	if err := f.src.Apply(c, now); err != nil {
		f.t.Fatalf("apply %s: %v", p.Kind(), err)
	}
	f.src.Read(func(r *identity.Registry) { f.views.Update(r, f.src.AppliedIndex()) })
}

func (f *fixture) register(name string, ttl time.Duration) identity.PrivateKey {
	f.t.Helper()
	k := mustKey(f.t)
	f.apply(&identity.RegisterAgent{Name: name, Key: k.Public(), ExpiresAt: time.Now().Add(ttl),
		Labels: map[string]string{"site": "s1", "role": "demo"}, Capabilities: []string{"message:b", "tool:search"}})
	return k
}

// registerWith registers an agent with the given capabilities, valid for an hour.
func (f *fixture) registerWith(name string, caps []string) identity.PrivateKey {
	f.t.Helper()
	k := mustKey(f.t)
	f.apply(&identity.RegisterAgent{Name: name, Key: k.Public(), ExpiresAt: time.Now().Add(time.Hour), Capabilities: caps})
	return k
}

func newHost(tb testing.TB, k identity.PrivateKey, g connmgr.ConnectionGater, listen bool) host.Host {
	tb.Helper()
	opts := []libp2p.Option{libp2p.Identity(k.Libp2p()), libp2p.DisableRelay()}
	if listen {
		opts = append(opts, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	} else {
		opts = append(opts, libp2p.NoListenAddrs)
	}
	if g != nil {
		opts = append(opts, libp2p.ConnectionGater(g))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

func info(h host.Host) peer.AddrInfo { return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()} }

// newServer starts a node host with no gater (so only the server's own checks apply) and a
// server over f's views.
func newServer(tb testing.TB, f *fixture, mod func(*Config)) (host.Host, *Server) {
	tb.Helper()
	h := newHost(tb, f.node, nil, true)
	cfg := DefaultConfig()
	cfg.Logger = testLogger(tb)
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewServer(h, f.views, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return h, s
}

func waitFor(tb testing.TB, what string, within time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testLogger logs through tb.Log and goes quiet once the test is over.
func testLogger(tb testing.TB) *slog.Logger {
	w := &tbWriter{tb: tb}
	tb.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tbWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *tbWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimSpace(string(b)))
	}
	return len(b), nil
}
