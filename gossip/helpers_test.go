package gossip

import (
	"crypto/sha256"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

func seeded(seed uint64) io.Reader {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(s)
}

// admitSet is a concurrent Admission.
type admitSet struct{ m sync.Map }

func (a *admitSet) Admitted(id identity.ID) bool { _, ok := a.m.Load(id); return ok }
func (a *admitSet) add(id identity.ID)           { a.m.Store(id, true) }
func (a *admitSet) remove(id identity.ID)        { a.m.Delete(id) }

type testNode struct {
	key     identity.PrivateKey
	mesh    *Mesh
	tr      *MemTransport
	signals atomic.Int64
	revs    atomic.Int64
	mu      sync.Mutex
	got     []identity.Signal
	cmds    [][]byte
}

type testCluster struct {
	t       testing.TB
	rnd     io.Reader
	cluster identity.ClusterID
	net     *MemNetwork
	admit   *admitSet
	nodes   []*testNode
}

func newTestCluster(t *testing.T, seed uint64, n int, tweak func(*Config)) *testCluster {
	t.Helper()
	rnd := seeded(seed)
	cl, err := identity.NewClusterID(rnd)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, rnd: rnd, cluster: cl, net: NewMemNetwork(seed), admit: &admitSet{}}
	for range n {
		c.addNode(tweak, true)
	}
	// Each node joins every node started before it: push/pull with each gives it the full
	// membership at once (memberlist otherwise converges by gossip and by push/pull every 15 s,
	// and an alive message can miss a node for that long).
	var addrs []string
	for i, nd := range c.nodes {
		if i > 0 {
			if _, err := nd.mesh.Join(addrs); err != nil {
				t.Fatalf("node %d join: %v", i, err)
			}
		}
		addrs = append(addrs, nd.tr.Addr())
	}
	c.waitMembers(n, 10*time.Second)
	return c
}

func (c *testCluster) key() identity.PrivateKey {
	k, err := identity.GenerateKey(c.rnd)
	if err != nil {
		c.t.Fatal(err)
	}
	return k
}

func (c *testCluster) config(k identity.PrivateKey, tr *MemTransport, nd *testNode) Config {
	cfg := DefaultConfig()
	cfg.ClusterID, cfg.Key, cfg.Admission = c.cluster, k, c.admit
	cfg.Profile, cfg.Transport, cfg.AllowPlaintext = ProfileLocal, tr, true
	cfg.Site, cfg.Role, cfg.Addrs = "site-a", "voter", []string{"/ip4/127.0.0.1/tcp/7400"}
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.OnSignal = func(s identity.Signal) {
		nd.signals.Add(1)
		nd.mu.Lock()
		nd.got = append(nd.got, s)
		nd.mu.Unlock()
	}
	cfg.OnRevocation = func(cmd []byte, _ identity.ID) {
		nd.revs.Add(1)
		nd.mu.Lock()
		nd.cmds = append(nd.cmds, cmd)
		nd.mu.Unlock()
	}
	return cfg
}

func (c *testCluster) addNode(tweak func(*Config), admitted bool) *testNode {
	c.t.Helper()
	k := c.key()
	nd := &testNode{key: k, tr: c.net.NewTransport(k.ID().String())}
	if admitted {
		c.admit.add(k.ID())
	}
	cfg := c.config(k, nd.tr, nd)
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := Start(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	nd.mesh = m
	c.t.Cleanup(func() { m.Close() })
	c.nodes = append(c.nodes, nd)
	return nd
}

// waitMembers waits until every running node sees want live members.
func (c *testCluster) waitMembers(want int, d time.Duration) {
	c.t.Helper()
	defer func() {
		if c.t.Failed() {
			for i, nd := range c.nodes {
				c.t.Logf("node %d: %d members, stats %v", i, nd.mesh.NumMembers(), nd.mesh.Stats())
			}
		}
	}()
	eventually(c.t, d, func() bool {
		for _, nd := range c.nodes {
			if nd.mesh.closed.Load() || nd.tr.paused.Load() {
				continue
			}
			if nd.mesh.NumMembers() != want {
				return false
			}
		}
		return true
	}, "members")
}

func eventually(t testing.TB, d time.Duration, f func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// signal builds a signal by reporter about agent name, observed now.
func (c *testCluster) signal(reporter identity.PrivateKey, name string, subject identity.PublicKey) identity.Signal {
	c.t.Helper()
	s := identity.Signal{ClusterID: c.cluster, Subject: identity.SignalSubject{Name: name, Key: subject},
		Detector: "ngram", Score: 0.93, EvidenceDigest: sha256.Sum256([]byte(name)), ObservedAt: time.Now()}
	if err := s.Sign(reporter, c.rnd); err != nil {
		c.t.Fatal(err)
	}
	return s
}
