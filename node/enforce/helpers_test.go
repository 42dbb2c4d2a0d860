package enforce

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// fixture is a real registry (genesis signed by a generated operator key) behind a MemSource.
type fixture struct {
	t       testing.TB
	cluster identity.ClusterID
	op      identity.PrivateKey
	node    identity.PrivateKey
	src     *MemSource
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
	f := &fixture{t: tb, op: mustKey(tb), node: mustKey(tb), src: NewMemSource(identity.NewRegistry())}
	var err error
	if f.cluster, err = identity.NewClusterID(rand.Reader); err != nil {
		tb.Fatal(err)
	}
	f.apply(&identity.Genesis{ClusterID: f.cluster, TrustDomain: "test.vigil", Threshold: 1,
		Operators: []identity.OperatorEntry{{Name: "op-1", Key: f.op.Public()}},
		Nodes: []identity.NodeEntry{{Name: "node-1", Key: f.node.Public(), Site: "s1", Voter: true,
			Addrs: []string{"/ip4/127.0.0.1/tcp/7400"}}}})
	return f
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
}

// register registers an agent with a fresh key, expiring ttl from now.
func (f *fixture) register(name string, ttl time.Duration) identity.PrivateKey {
	f.t.Helper()
	k := mustKey(f.t)
	f.apply(&identity.RegisterAgent{Name: name, Key: k.Public(), ExpiresAt: time.Now().Add(ttl),
		Labels: map[string]string{"site": "s1"}, Capabilities: []string{"tool:search"}})
	return k
}

// newHost starts a real libp2p host on a loopback ephemeral port (listen) or with no listener.
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

// connect dials to, bypassing the dial backoff a refused attempt leaves behind.
func connect(h host.Host, to host.Host) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = network.WithForceDirectDial(ctx, "test")
	return h.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()})
}

const pingProto = "/vigil/test/ping/1"

// servePing makes h echo one byte on pingProto.
func servePing(h host.Host) {
	h.SetStreamHandler(pingProto, func(s network.Stream) {
		defer s.Close()
		var b [1]byte
		if _, err := io.ReadFull(s, b[:]); err == nil {
			_, _ = s.Write(b[:])
		}
	})
}

// ping proves a working session: a stream to p over an existing connection, one byte each way.
func ping(h host.Host, p peer.ID) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := h.NewStream(network.WithNoDial(ctx, "ping"), p, pingProto)
	if err != nil {
		return err
	}
	defer s.Reset()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write([]byte{7}); err != nil {
		return err
	}
	var b [1]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		return err
	}
	if b[0] != 7 {
		return errors.New("ping: wrong byte")
	}
	return nil
}

// connCounter counts connections a host opened with each peer (the server's truth: a refused
// handshake never produces one).
type connCounter struct {
	mu sync.Mutex
	n  map[peer.ID]int
}

func countConns(h host.Host) *connCounter {
	c := &connCounter{n: map[peer.ID]int{}}
	h.Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, cn network.Conn) {
		c.mu.Lock()
		c.n[cn.RemotePeer()]++
		c.mu.Unlock()
	}})
	return c
}

func (c *connCounter) get(p peer.ID) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[p]
}

// nodeUnderTest is a node host whose gater and enforcer follow f's registry.
type nodeUnderTest struct {
	h     host.Host
	g     *Gater
	e     *Enforcer
	conns *connCounter
	mu    sync.Mutex
	log   []Enforcement
}

func newNode(tb testing.TB, f *fixture, gcfg GaterConfig) *nodeUnderTest {
	tb.Helper()
	g, err := NewGater(NewViews(), gcfg)
	if err != nil {
		tb.Fatal(err)
	}
	n := &nodeUnderTest{g: g}
	n.h = newHost(tb, f.node, g, true)
	servePing(n.h)
	n.conns = countConns(n.h)
	cfg := DefaultConfig()
	cfg.Logger = testLogger(tb)
	cfg.OnEnforce = func(e Enforcement) {
		n.mu.Lock()
		n.log = append(n.log, e)
		n.mu.Unlock()
	}
	if n.e, err = NewEnforcer(n.h, g, f.src, cfg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = n.e.Close() })
	return n
}

func (n *nodeUnderTest) enforcements() []Enforcement {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Enforcement(nil), n.log...)
}

// waitEnforcements waits until at least n enforcements were recorded (OnEnforce runs just after
// the close that the test observes) and returns them all.
func (n *nodeUnderTest) waitEnforcements(tb testing.TB, want int) []Enforcement {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		es := n.enforcements()
		if len(es) >= want || time.Now().After(deadline) {
			return es
		}
		time.Sleep(time.Millisecond)
	}
}
