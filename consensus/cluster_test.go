package consensus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// testNode is one cluster member: key, libp2p host on 127.0.0.1, data dir, and the open Node.
type testNode struct {
	name string
	key  identity.PrivateKey
	host host.Host
	dir  string
	node *Node
}

func (tn *testNode) addrStrings() []string {
	var out []string
	for _, a := range tn.host.Addrs() {
		out = append(out, a.String())
	}
	return out
}

func (tn *testNode) info() peer.AddrInfo {
	return peer.AddrInfo{ID: tn.host.ID(), Addrs: tn.host.Addrs()}
}

// testCluster is a real cluster: raft, Badger stores with SyncWrites, libp2p on loopback.
type testCluster struct {
	t     testing.TB
	gen   *identity.Command
	cid   identity.ClusterID
	ops   []identity.PrivateKey
	nodes []*testNode
}

func newTestNode(t testing.TB, name string) *testNode {
	t.Helper()
	key := mustKey(t)
	h, err := libp2p.New(libp2p.Identity(key.Libp2p()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return &testNode{name: name, key: key, host: h, dir: t.TempDir()}
}

func (c *testCluster) config(tn *testNode, bootstrap bool, join []peer.AddrInfo) Config {
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Key, cfg.Host, cfg.Genesis = tn.dir, tn.key, tn.host, c.gen
	cfg.Bootstrap, cfg.Join = bootstrap, join
	cfg.Logger = testLogger(c.t).With("n", tn.name)
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	cfg.ApplyTimeout = 5 * time.Second
	return cfg
}

func (c *testCluster) open(tn *testNode, bootstrap bool, join []peer.AddrInfo) {
	c.t.Helper()
	n, err := Open(c.config(tn, bootstrap, join))
	if err != nil {
		c.t.Fatal(err)
	}
	tn.node = n
	c.t.Cleanup(func() { _ = n.Close() })
}

// newTestCluster starts node 1 (bootstrap, in the genesis), then admits and joins voters-1 more
// voters, and waits until all hold the same registry and the raft configuration has them all.
func newTestCluster(t testing.TB, voters, nOps int) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	first := newTestNode(t, "n1")
	c.gen, c.ops = newGenesis(t, nOps, []identity.NodeEntry{{Name: "n1", Key: first.key.Public(), Voter: true, Addrs: first.addrStrings()}}, time.Now())
	c.cid = c.gen.ClusterID
	c.nodes = append(c.nodes, first)
	c.open(first, true, nil)
	c.waitFor("genesis applied", func() bool {
		ok := false
		first.node.Read(func(r *identity.Registry) { ok = r.ClusterID() == c.cid })
		return ok
	})
	for i := 2; i <= voters; i++ {
		c.addNode(fmt.Sprintf("n%d", i), true)
	}
	c.waitConverged(c.nodes...)
	return c
}

// addNode admits a new node by an operator-signed AdmitNode, then starts it with the first
// live node as join peer, and waits until the leader's raft configuration has it.
func (c *testCluster) addNode(name string, voter bool) *testNode {
	c.t.Helper()
	tn := newTestNode(c.t, name)
	via := c.live()[0]
	admit := signed(c.t, c.cid, &identity.AdmitNode{Node: identity.NodeEntry{Name: name, Key: tn.key.Public(), Voter: voter, Addrs: tn.addrStrings()}}, time.Now(), c.ops[0])
	mustPropose(c.t, via.node, admit)
	c.nodes = append(c.nodes, tn)
	c.open(tn, false, []peer.AddrInfo{via.info()})
	c.waitFor("member "+name, func() bool {
		l := c.leader()
		if l == nil {
			return false
		}
		ms, err := l.node.Members()
		if err != nil {
			return false
		}
		for _, m := range ms {
			if m.ID == tn.host.ID() && (m.Suffrage.String() == "Voter") == voter {
				return true
			}
		}
		return false
	})
	return tn
}

func (c *testCluster) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	c.t.Cleanup(cancel)
	return ctx
}

// live returns the nodes that are open.
func (c *testCluster) live() []*testNode {
	var out []*testNode
	for _, tn := range c.nodes {
		if tn.node != nil && tn.node.ctx.Err() == nil {
			out = append(out, tn)
		}
	}
	return out
}

func (c *testCluster) leader() *testNode {
	for _, tn := range c.live() {
		if tn.node.IsLeader() {
			return tn
		}
	}
	return nil
}

func (c *testCluster) follower() *testNode {
	for _, tn := range c.live() {
		if !tn.node.IsLeader() && tn.node.State().String() == "Follower" {
			return tn
		}
	}
	c.t.Fatal("no follower")
	return nil
}

func (c *testCluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitConverged waits until every given node holds the same registry as the others.
func (c *testCluster) waitConverged(nodes ...*testNode) [32]byte {
	c.t.Helper()
	var h [32]byte
	c.waitFor("converged hashes", func() bool {
		h = nodes[0].node.fsm.hash()
		for _, tn := range nodes[1:] {
			if tn.node.fsm.hash() != h {
				return false
			}
		}
		return nodes[0].node.AppliedIndex() > 0
	})
	return h
}

func (c *testCluster) hashes() map[string][32]byte {
	out := map[string][32]byte{}
	for _, tn := range c.live() {
		out[tn.name] = tn.node.fsm.hash()
	}
	return out
}

func hasAgent(n *Node, name string) (ok bool) {
	n.Read(func(r *identity.Registry) { _, ok = r.Agent(name) })
	return ok
}

func TestCluster(t *testing.T) {
	c := newTestCluster(t, 3, 2)
	var first *identity.Command

	t.Run("propose at follower is forwarded", func(t *testing.T) {
		f := c.follower()
		for i := range 5 {
			cmd := registerAgent(t, c.cid, fmt.Sprintf("fwd-%d", i), time.Now(), c.ops[i%2])
			if i == 0 {
				first = cmd
			}
			if res := mustPropose(t, f.node, cmd); res.Index == 0 {
				t.Fatalf("propose %d: index 0", i)
			}
		}
		c.waitConverged(c.live()...)
		for _, tn := range c.live() {
			if !hasAgent(tn.node, "fwd-4") {
				t.Fatalf("%s lacks fwd-4", tn.name)
			}
		}
	})

	t.Run("rejections are identical everywhere", func(t *testing.T) {
		other, otherOps := newGenesis(t, 1, []identity.NodeEntry{{Name: "x", Key: mustKey(t).Public(), Voter: true}}, time.Now())
		cases := []struct {
			name string
			cmd  *identity.Command
			want error
		}{
			{"forged signature", forged(registerAgent(t, c.cid, "forged", time.Now(), c.ops[0])), identity.ErrBadSignature},
			{"unsigned", signed(t, c.cid, &identity.RegisterAgent{Name: "unsigned", Key: mustKey(t).Public(), ExpiresAt: time.Now().Add(time.Hour)}, time.Now()), identity.ErrUnsigned},
			{"replayed", first, identity.ErrReplay},
			{"stale", registerAgent(t, c.cid, "stale", time.Now().Add(-11*time.Minute), c.ops[0]), identity.ErrStale},
			{"wrong cluster", registerAgent(t, other.ClusterID, "wrong", time.Now(), otherOps[0]), identity.ErrWrongCluster},
			{"not an operator", registerAgent(t, c.cid, "intruder", time.Now(), mustKey(t)), identity.ErrUnauthorized},
		}
		before := c.waitConverged(c.live()...)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				for _, at := range []*testNode{c.follower(), c.leader()} {
					_, err := at.node.Propose(c.ctx(), tc.cmd)
					if !errors.Is(err, tc.want) {
						t.Fatalf("at %s: got %v, want %v", at.name, err, tc.want)
					}
				}
			})
		}
		// The stateful rejections went through the log: wait for every node to apply it.
		idx := c.leader().node.raft.LastIndex()
		for _, tn := range c.live() {
			if err := tn.node.WaitApplied(c.ctx(), idx); err != nil {
				t.Fatal(err)
			}
		}
		for name, h := range c.hashes() {
			if h != before {
				t.Fatalf("%s: a rejected command changed the registry", name)
			}
		}
	})

	t.Run("a voter appending forged commands directly changes nothing", func(t *testing.T) {
		before := c.waitConverged(c.live()...)
		l := c.leader()
		for _, cmd := range []*identity.Command{
			forged(registerAgent(t, c.cid, "direct-forged", time.Now(), c.ops[0])),
			forged(signed(t, c.cid, &identity.AdmitNode{Node: identity.NodeEntry{Name: "evil", Key: mustKey(t).Public(), Voter: true}}, time.Now(), c.ops[0])),
			signed(t, c.cid, &identity.RevokeAgent{Name: "fwd-0", Reason: "x"}, time.Now()),
		} {
			f := l.node.raft.Apply(cmd.Encode(), 5*time.Second)
			if err := f.Error(); err != nil {
				t.Fatal(err)
			}
			res := f.Response().(ApplyResult)
			if res.Err == nil {
				t.Fatal("forged command applied")
			}
			for _, tn := range c.live() {
				if err := tn.node.WaitApplied(c.ctx(), res.Index); err != nil {
					t.Fatal(err)
				}
			}
		}
		for name, h := range c.hashes() {
			if h != before {
				t.Fatalf("%s: forged command changed the registry", name)
			}
		}
	})

	t.Run("consistent read at a follower sees a write made elsewhere", func(t *testing.T) {
		l, f := c.leader(), c.follower()
		mustPropose(t, l.node, registerAgent(t, c.cid, "fresh", time.Now(), c.ops[0]))
		var seen bool
		if err := f.node.ConsistentRead(c.ctx(), func(r *identity.Registry) { _, seen = r.Agent("fresh") }); err != nil {
			t.Fatal(err)
		}
		if !seen {
			t.Fatal("consistent read missed a committed write")
		}
		if err := l.node.ConsistentRead(c.ctx(), func(r *identity.Registry) { _, seen = r.Agent("fresh") }); err != nil || !seen {
			t.Fatalf("leader consistent read: %v %v", err, seen)
		}
	})

	t.Run("a non-voter joins and converges", func(t *testing.T) {
		nv := c.addNode("n4", false)
		mustPropose(t, nv.node, registerAgent(t, c.cid, "from-nonvoter", time.Now(), c.ops[0]))
		c.waitConverged(c.live()...)
		if !hasAgent(nv.node, "from-nonvoter") || !hasAgent(nv.node, "fwd-0") {
			t.Fatal("non-voter lacks agents")
		}
	})

	t.Run("a minority cannot commit and heals", func(t *testing.T) {
		old := c.leader()
		var majority []*testNode
		for _, tn := range c.live() {
			if tn != old {
				majority = append(majority, tn)
			}
		}
		partition(old, majority)
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		if _, err := old.node.Propose(ctx, registerAgent(t, c.cid, "minority", time.Now(), c.ops[0])); err == nil {
			t.Fatal("isolated leader committed a write")
		}
		c.waitFor("new leader in the majority", func() bool {
			for _, tn := range majority {
				if tn.node.IsLeader() {
					return true
				}
			}
			return false
		})
		mustPropose(t, majority[len(majority)-1].node, registerAgent(t, c.cid, "majority", time.Now(), c.ops[0]))
		heal(old, majority)
		c.waitConverged(c.live()...)
		for _, tn := range c.live() {
			if hasAgent(tn.node, "minority") || !hasAgent(tn.node, "majority") {
				t.Fatalf("%s: minority write kept or majority write lost", tn.name)
			}
		}
	})

	t.Run("a removed node is removed from raft and refused", func(t *testing.T) {
		nv := c.nodes[3]
		defer nv.node.Close()
		rm := signed(t, c.cid, &identity.RemoveNode{Name: nv.name}, time.Now(), c.ops[0])
		removed := mustPropose(t, c.leader().node, rm)
		c.waitFor("n4 out of the raft configuration", func() bool {
			l := c.leader()
			if l == nil {
				return false
			}
			ms, _ := l.node.Members()
			for _, m := range ms {
				if m.ID == nv.host.ID() {
					return false
				}
			}
			return len(ms) == 3
		})
		// Every node refuses it once it applied the removal and the leader's matching raft
		// configuration change (the authorizer trusts both).
		for _, tn := range c.live() {
			if tn == nv {
				continue
			}
			if err := tn.node.WaitApplied(c.ctx(), removed.Index); err != nil {
				t.Fatal(err)
			}
			c.waitFor(tn.name+" refuses the removed node", func() bool {
				return errors.Is(tn.node.authorize(nv.host.ID()), ErrNotAdmitted)
			})
		}
		_, err := nv.node.Propose(c.ctx(), registerAgent(t, c.cid, "from-removed", time.Now(), c.ops[0]))
		if err == nil {
			t.Fatal("removed node could still propose")
		}
		if err := nv.node.Close(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("leader killed, a new leader is elected and writes go on", func(t *testing.T) {
		old := c.leader()
		if err := old.node.Close(); err != nil {
			t.Fatal(err)
		}
		if err := old.node.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		c.waitFor("new leader", func() bool { return c.leader() != nil })
		survivor := c.live()[0]
		mustPropose(t, survivor.node, registerAgent(t, c.cid, "after-kill", time.Now(), c.ops[1]))
		c.waitConverged(c.live()...)
		if c.leader().node.LastContact() != 0 {
			t.Fatal("leader reports a last contact age")
		}
		if f := c.follower(); f.node.LastContact() > 2*time.Second {
			t.Fatalf("follower last contact %v", f.node.LastContact())
		}
	})
}

// partition cuts a from every node in others, both ways, with the authorizer's fault hook and
// DropPeer (the same path a removal takes).
func partition(a *testNode, others []*testNode) {
	for _, o := range others {
		a.node.blocked.Store(o.host.ID(), struct{}{})
		o.node.blocked.Store(a.host.ID(), struct{}{})
		a.node.layer.DropPeer(o.host.ID())
		o.node.layer.DropPeer(a.host.ID())
	}
}

func heal(a *testNode, others []*testNode) {
	for _, o := range others {
		a.node.blocked.Delete(o.host.ID())
		o.node.blocked.Delete(a.host.ID())
	}
}

// mustPropose proposes cmd and fails the test unless it is applied. An outcome-unknown answer
// (leadership lost under load) is retried with the same command; a replay rejection on a retry
// means the first attempt committed.
func mustPropose(t testing.TB, n *Node, cmd *identity.Command) ApplyResult {
	t.Helper()
	for attempt := range 4 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := n.Propose(ctx, cmd)
		cancel()
		switch {
		case err == nil:
			return res
		case attempt > 0 && errors.Is(err, identity.ErrReplay):
			return res
		case errors.Is(err, ErrTimeout), errors.Is(err, ErrNoLeader):
			t.Logf("propose: %v; retrying", err)
			continue
		default:
			t.Fatalf("propose: %v", err)
		}
	}
	t.Fatal("propose: no outcome after 4 attempts")
	return ApplyResult{}
}

// TestMembersLastHeard: the leader hears every follower (heartbeat responses), a follower hears
// the leader, a node never reports itself, and a stopped follower's time stops advancing.
func TestMembersLastHeard(t *testing.T) {
	c := newTestCluster(t, 3, 1)
	var ld *testNode
	c.waitFor("a leader hearing both followers", func() bool {
		if ld = c.leader(); ld == nil {
			return false
		}
		ms, err := ld.node.Members()
		if err != nil || len(ms) != 3 {
			return false
		}
		for _, m := range ms {
			if m.ID != ld.host.ID() && (m.LastHeard.IsZero() || time.Since(m.LastHeard) > time.Second) {
				return false
			}
		}
		return true
	})
	ms, _ := ld.node.Members()
	for _, m := range ms {
		if m.ID == ld.host.ID() && !m.LastHeard.IsZero() {
			t.Fatalf("the leader reports hearing itself at %v", m.LastHeard)
		}
	}
	f := c.follower()
	c.waitFor("a follower hearing the leader", func() bool {
		ms, err := f.node.Members()
		if err != nil {
			return false
		}
		for _, m := range ms {
			if m.ID == ld.host.ID() {
				return !m.LastHeard.IsZero() && time.Since(m.LastHeard) < time.Second
			}
		}
		return false
	})

	stopped := f.host.ID()
	if err := f.node.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	ms, err := ld.node.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		switch {
		case m.ID == stopped && time.Since(m.LastHeard) < time.Second:
			t.Fatalf("stopped follower last heard %v ago", time.Since(m.LastHeard))
		case m.ID != stopped && m.ID != ld.host.ID() && time.Since(m.LastHeard) > time.Second:
			t.Fatalf("live follower last heard %v ago", time.Since(m.LastHeard))
		}
	}
}
