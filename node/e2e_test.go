package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/hashicorp/raft"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/config"
	"github.com/vigil-mesh/vigil/node/enforce"
)

// e2eCluster is a multi-node Vigil cluster of real daemons in this process: real libp2p hosts on
// 127.0.0.1, real raft over libp2p, real Badger stores in temporary data directories.
// node-1 is the genesis node; the others are admitted by an operator through a running node
// before they start, then join through node-1, as an operator would do it.
type e2eCluster struct {
	tb    testing.TB
	cid   identity.ClusterID
	op    identity.PrivateKey
	cfgs  []config.Config
	keys  []identity.PrivateKey // node keys, by index
	addrs []string              // libp2p listen addresses, by index
	nodes []*Node               // nil while a node is stopped
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. libp2p ports are fixed
// (not 0) so that a restarted node comes back at the address the raft configuration holds.
// They are taken below Linux's ephemeral range (32768–60999): a port the kernel hands out for
// a listener on :0 (a gossip bind, an admin API) or an outgoing connection could otherwise be
// the one reserved for a node that has not started yet. Successive calls walk the range from a
// random start, so the packages' test processes rarely meet.
func freePort(tb testing.TB) int {
	tb.Helper()
	for range portSpan {
		p := portLow + int(nextPort.Add(1))%portSpan
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		return p
	}
	tb.Fatal("freePort: no free port below the ephemeral range")
	return 0
}

const portLow, portSpan = 20000, 12000

var nextPort = func() *atomic.Int64 {
	var n atomic.Int64
	n.Store(mrand.Int64N(portSpan))
	return &n
}()

// startE2ECluster starts size nodes and waits until every node has applied every admission.
func startE2ECluster(tb testing.TB, size int) *e2eCluster {
	tb.Helper()
	return startE2EClusterYAML(tb, size, "")
}

// startE2EClusterYAML is startE2ECluster with extra YAML appended to every node's file.
func startE2EClusterYAML(tb testing.TB, size int, extra string) *e2eCluster {
	tb.Helper()
	c := newE2ECluster(tb, size, extra)
	c.start(0)
	for i := 1; i < size; i++ {
		// Admitted before it starts, through a running node (node-1, or the previous one).
		c.admit(c.nodes[i-1], i)
		c.start(i)
	}
	c.converge()
	// A node joins as a non-voter and is promoted once the leader reaches it: wait for that, or a
	// test that stops a node could leave fewer voters than a quorum needs.
	waitUntil(tb, "every node to be a raft voter", func() bool {
		ms, err := c.nodes[0].Consensus().Members()
		voters := 0
		for _, m := range ms {
			if m.Suffrage == raft.Voter {
				voters++
			}
		}
		return err == nil && voters == size
	})
	return c
}

// admit proposes the admission of node i through n.
func (c *e2eCluster) admit(n *Node, i int) {
	c.tb.Helper()
	c.propose(n, &identity.AdmitNode{Node: identity.NodeEntry{Name: c.cfgs[i].Node.Name,
		Key: c.keys[i].Public(), Site: "site-1", Voter: true, Addrs: []string{c.addrs[i]}}})
}

// newE2ECluster writes the keys, genesis and configuration of size nodes (node-1 is the genesis
// node, node-i joins through node-1 … node-(i-1)) and starts none of them.
func newE2ECluster(tb testing.TB, size int, extra string) *e2eCluster {
	tb.Helper()
	root := tb.TempDir()
	c := &e2eCluster{tb: tb}
	var err error
	if c.op, err = identity.GenerateKey(rand.Reader); err != nil {
		tb.Fatal(err)
	}
	if c.cid, err = identity.NewClusterID(rand.Reader); err != nil {
		tb.Fatal(err)
	}
	keys := make([]identity.PrivateKey, size)
	addrs := make([]string, size)
	for i := range keys {
		if keys[i], err = identity.GenerateKey(rand.Reader); err != nil {
			tb.Fatal(err)
		}
		addrs[i] = fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(tb))
	}
	g := &identity.Genesis{ClusterID: c.cid, TrustDomain: "e2e.vigil", Threshold: 1,
		Operators: []identity.OperatorEntry{{Name: "op", Key: c.op.Public()}},
		Nodes:     []identity.NodeEntry{{Name: "node-1", Key: keys[0].Public(), Site: "site-1", Voter: true, Addrs: []string{addrs[0]}}}}
	gen, err := identity.NewCommand(c.cid, g, time.Now(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	gen.Sign(c.op)
	for i := range size {
		name := fmt.Sprintf("node-%d", i+1)
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
			tb.Fatal(err)
		}
		if err := identity.WriteKeyFile(filepath.Join(dir, "keys", "node.key"), identity.RoleNode, keys[i]); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "genesis.bin"), gen.Encode(), 0o644); err != nil {
			tb.Fatal(err)
		}
		yaml := "node:\n  name: " + name + "\n  data_dir: " + dir + "\nlisten:\n  libp2p: [" + addrs[i] + "]\n" +
			"  admin: 127.0.0.1:0\n  http: 127.0.0.1:0\n" +
			"raft:\n  heartbeat_timeout: 300ms\n  election_timeout: 300ms\nlog:\n  level: warn\n" + extra
		// Each joining node names every node admitted before it (the genesis node first).
		var join []string
		for j := range i {
			join = append(join, addrs[j]+"/p2p/"+keys[j].ID().String())
		}
		if len(join) > 0 {
			yaml += "join: [" + strings.Join(join, ", ") + "]\n"
		}
		file := filepath.Join(dir, "node.yaml")
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			tb.Fatal(err)
		}
		cfg, err := config.Load(file)
		if err != nil {
			tb.Fatal(err)
		}
		c.cfgs = append(c.cfgs, cfg)
		c.nodes = append(c.nodes, nil)
	}
	tb.Cleanup(func() {
		for i := len(c.nodes) - 1; i >= 0; i-- {
			if c.nodes[i] != nil {
				c.nodes[i].Close()
			}
		}
	})

	c.keys, c.addrs = keys, addrs
	return c
}

// start starts node i (again) from its configuration and waits until it is ready to enforce.
func (c *e2eCluster) start(i int) *Node {
	c.tb.Helper()
	n, err := Start(c.cfgs[i], testLogger(c.tb))
	if err != nil {
		c.tb.Fatalf("start %s: %v", c.cfgs[i].Node.Name, err)
	}
	c.nodes[i] = n
	waitUntil(c.tb, c.cfgs[i].Node.Name+" ready", func() bool { return n.ready() == nil })
	return n
}

// stop closes node i, as a crash after its last acknowledged write would leave it.
func (c *e2eCluster) stop(i int) {
	c.tb.Helper()
	if err := c.nodes[i].Close(); err != nil {
		c.tb.Logf("close %s: %v", c.cfgs[i].Node.Name, err)
	}
	c.nodes[i] = nil
}

// converge waits until every running node has applied everything the leader has applied.
func (c *e2eCluster) converge() {
	c.tb.Helper()
	waitUntil(c.tb, "all nodes to apply the leader's log", func() bool {
		var top uint64
		for _, n := range c.nodes {
			if n != nil && n.Consensus().IsLeader() {
				top = n.Consensus().AppliedIndex()
			}
		}
		if top == 0 {
			return false
		}
		for _, n := range c.nodes {
			if n != nil && n.Consensus().AppliedIndex() < top {
				return false
			}
		}
		return true
	})
}

// propose signs p with the operator key and proposes it through n; it fails the test unless the
// command is committed and applied (acknowledged).
func (c *e2eCluster) propose(n *Node, p identity.Payload) {
	c.tb.Helper()
	if err := c.tryPropose(n, p); err != nil {
		c.tb.Fatalf("%T: %v", p, err)
	}
}

func (c *e2eCluster) tryPropose(n *Node, p identity.Payload) error {
	cmd, err := identity.NewCommand(c.cid, p, time.Now(), rand.Reader)
	if err != nil {
		return err
	}
	cmd.Sign(c.op)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := n.Consensus().Propose(ctx, cmd)
	if err == nil {
		err = res.Err
	}
	return err
}

// register registers an agent with a fresh key and waits until every running node's view
// admits it.
func (c *e2eCluster) register(name string) identity.PrivateKey {
	c.tb.Helper()
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.propose(c.nodes[0], &identity.RegisterAgent{Name: name, Key: k.Public(),
		Capabilities: []string{"tool:search"}, ExpiresAt: time.Now().Add(time.Hour)})
	for _, n := range c.nodes {
		if n == nil {
			continue
		}
		waitUntil(c.tb, n.cfg.Node.Name+" to admit "+name, func() bool {
			return n.gater.Decide(k.ID().Peer()) == enforce.ReasonAgent
		})
	}
	return k
}

// newAgentHost is an agent's libp2p host that answers re-verification challenges.
func newAgentHost(tb testing.TB, k identity.PrivateKey) host.Host {
	tb.Helper()
	h, err := libp2p.New(libp2p.Identity(k.Libp2p()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		tb.Fatal(err)
	}
	agentproto.ServeReverify(h, k)
	tb.Cleanup(func() { h.Close() })
	return h
}

func addrInfo(n *Node) peer.AddrInfo {
	return peer.AddrInfo{ID: n.Host().ID(), Addrs: n.Host().Addrs()}
}

// testLogger sends the nodes' warnings and errors to the test log, until the test ends.
func testLogger(tb testing.TB) *slog.Logger {
	w := &tbWriter{tb: tb}
	tb.Cleanup(w.stop) // registered before the nodes' Close, so it runs after it
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tbWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tbWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestE2ERevokeEnforcedOnEveryNode: an agent attached to each of three daemons is revoked
// through node-2; its live connection is closed on every node, and afterwards every real attach
// attempt and every gater decision refuses it, on every node. An unknown key fares the same.
func TestE2ERevokeEnforcedOnEveryNode(t *testing.T) {
	c := startE2ECluster(t, 3)
	agentKey := c.register("worker")
	ah := newAgentHost(t, agentKey)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		reg, err := agentproto.Attach(ctx, ah, addrInfo(n))
		if err != nil {
			t.Fatalf("attach to %s: %v", n.cfg.Node.Name, err)
		}
		if reg.Name != "worker" {
			t.Fatalf("attached to %s as %q", n.cfg.Node.Name, reg.Name)
		}
		if len(n.Host().Network().ConnsToPeer(ah.ID())) == 0 {
			t.Fatalf("%s has no connection to the attached agent", n.cfg.Node.Name)
		}
	}

	c.propose(c.nodes[1], &identity.RevokeAgent{Name: "worker", Reason: "e2e"})
	for _, n := range c.nodes {
		waitUntil(t, n.cfg.Node.Name+" to close the agent's connection", func() bool {
			return len(n.Host().Network().ConnsToPeer(ah.ID())) == 0
		})
		waitUntil(t, "the agent to see "+n.cfg.Node.Name+" close", func() bool {
			return len(ah.Network().ConnsToPeer(n.Host().ID())) == 0
		})
		// The enforcer counts a cut once ClosePeer has returned, which can be after the
		// connections are seen gone.
		waitUntil(t, n.cfg.Node.Name+"'s enforcer to count the cut", func() bool { return n.enforcer.Closed() >= 1 })
		if got := n.enforcer.Closed(); got != 1 {
			t.Errorf("%s: enforcer closed %d peers, want 1", n.cfg.Node.Name, got)
		}
	}

	const attempts = 50      // real attaches per node and key
	const decisions = 10_000 // gater decisions per node and key
	unknown, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	uh := newAgentHost(t, unknown)
	for _, tc := range []struct {
		name   string
		h      host.Host
		reason enforce.Reason
	}{
		{"revoked", ah, enforce.ReasonRevoked},
		{"unknown", uh, enforce.ReasonUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range c.nodes {
				before := n.gater.Stats().Secured[tc.reason]
				through := 0
				for range attempts {
					// Forget the previous refusal, so each attempt is a new handshake the node's
					// gater decides, not a dial backoff on the agent's side.
					tc.h.Network().(*swarm.Swarm).Backoff().Clear(n.Host().ID())
					actx, acancel := context.WithTimeout(ctx, 5*time.Second)
					_, err := agentproto.Attach(actx, tc.h, addrInfo(n))
					acancel()
					if err == nil {
						through++
					} else if !errors.Is(err, agentproto.ErrUnreachable) && !errors.Is(err, agentproto.ErrRefused) {
						t.Errorf("%s: attach: %v", n.cfg.Node.Name, err)
					}
					tc.h.Network().ClosePeer(n.Host().ID())
				}
				if through != 0 {
					t.Errorf("%s: %d of %d attaches of a %s key got through", n.cfg.Node.Name, through, attempts, tc.name)
				}
				// Every attempt reached the node and was refused there by its gater.
				if got := n.gater.Stats().Secured[tc.reason] - before; got < attempts {
					t.Errorf("%s: gater refused %d inbound sessions as %s, want ≥ %d", n.cfg.Node.Name, got, tc.reason, attempts)
				}
				admitted := 0
				p := tc.h.ID()
				for range decisions {
					if r := n.gater.Decide(p); r != tc.reason {
						admitted++
					}
				}
				if admitted != 0 {
					t.Errorf("%s: %d of %d gater decisions for a %s key were not %s", n.cfg.Node.Name, admitted, decisions, tc.name, tc.reason)
				}
			}
		})
	}
}

// TestE2ERestartLosesNothing: a node is stopped, agents are registered through another node
// (each acknowledged only once committed), and the stopped node, started again on the same data
// directory, holds every acknowledged registration and enforces from it.
func TestE2ERestartLosesNothing(t *testing.T) {
	// node-3 joined through node-1 and node-2: its configured join peers are what its gater
	// admits while its registry is empty after the restart (see TestE2ERestartGenesisLeader).
	testRestart(t, 2)
}

// TestE2ERestartGenesisLeader restarts the leader, node-1, the genesis node, which has no join
// peers. After a restart a node's registry is empty until the leader tells it the commit index; its
// gater must admit the servers of raft's persisted configuration meanwhile (enforce.GaterConfig.Member
// backed by consensus.Node.TrustsNode), or node-1 refuses node-2 and node-3 and never catches up.
func TestE2ERestartGenesisLeader(t *testing.T) {
	testRestart(t, 0)
}

// TestE2EWholeClusterRestart stops every daemon and starts them again on their data directories:
// no registry is replayed when the election starts, so the gaters must trust the persisted raft
// configuration; every acknowledged registration is still there.
func TestE2EWholeClusterRestart(t *testing.T) {
	c := startE2ECluster(t, 3)
	var acked []string
	for i := range 5 {
		name := fmt.Sprintf("before-restart-%d", i)
		c.register(name)
		acked = append(acked, name)
	}
	for i := range c.nodes {
		c.stop(i)
	}
	// Start all before waiting: one node alone cannot win an election.
	for i := range c.nodes {
		n, err := Start(c.cfgs[i], testLogger(t))
		if err != nil {
			t.Fatalf("restart %s: %v", c.cfgs[i].Node.Name, err)
		}
		c.nodes[i] = n
	}
	for _, n := range c.nodes {
		waitUntil(t, n.cfg.Node.Name+" ready after the restart", func() bool { return n.ready() == nil })
	}
	c.converge()
	for _, n := range c.nodes {
		n.Consensus().Read(func(r *identity.Registry) {
			for _, name := range acked {
				if _, ok := r.Agent(name); !ok {
					t.Errorf("%s lacks %s after a whole-cluster restart", n.cfg.Node.Name, name)
				}
			}
		})
	}
	c.register("after-restart") // the restarted cluster commits again
}

func testRestart(t *testing.T, down int) {
	c := startE2ECluster(t, 3)
	before := c.register("before-stop")
	c.stop(down)
	via := c.nodes[(down+1)%3]

	// If the stopped node led, the survivors elect a new leader; a proposal that fails in the
	// meantime was not acknowledged and is retried under a new name.
	var acked []string
	for i := 0; len(acked) < 10; i++ {
		if i > 200 {
			t.Fatalf("only %d registrations acknowledged", len(acked))
		}
		name := fmt.Sprintf("while-down-%d", i)
		k, err := identity.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		err = c.tryPropose(via, &identity.RegisterAgent{Name: name, Key: k.Public(), ExpiresAt: time.Now().Add(time.Hour)})
		if err != nil {
			t.Logf("%s not acknowledged: %v", name, err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		acked = append(acked, name)
	}

	n := c.start(down)
	c.converge()
	n.Consensus().Read(func(r *identity.Registry) {
		if a, ok := r.Agent("before-stop"); !ok || a.ID != before.ID() {
			t.Errorf("%s lost before-stop after its restart", n.cfg.Node.Name)
		}
		for _, name := range acked {
			if a, ok := r.Agent(name); !ok || a.Status != identity.StatusActive {
				t.Errorf("%s lacks the acknowledged registration %s after its restart", n.cfg.Node.Name, name)
			}
		}
	})
	// The restarted node enforces from what it recovered: a registered agent attaches.
	k := c.register("after-restart")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := agentproto.Attach(ctx, newAgentHost(t, k), addrInfo(n)); err != nil {
		t.Fatalf("attach to the restarted %s: %v", n.cfg.Node.Name, err)
	}
}
