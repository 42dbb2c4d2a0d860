package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/alerts"
	"github.com/vigil-mesh/vigil/node/enforce"
)

// gossipYAML turns gossip on for test daemons. The lan profile, not local: local's 200 ms probe
// timeout declares healthy nodes suspect when the race detector and other packages' tests load
// the machine.
const gossipYAML = "gossip:\n  enabled: true\n  bind: 127.0.0.1:0\n  profile: lan\n  keyring: \"\"\n"

// joinGossip joins every node's mesh through node-1's and waits for full membership.
func (c *e2eCluster) joinGossip() {
	c.tb.Helper()
	// Each node joins every node before it: push/pull with each gives it the whole membership at
	// once instead of waiting for gossip.
	var addrs []string
	for i, n := range c.nodes {
		if i > 0 {
			if _, err := n.GossipJoin(addrs); err != nil {
				c.tb.Fatalf("%s: gossip join: %v", n.cfg.Node.Name, err)
			}
		}
		addrs = append(addrs, n.GossipAddr())
	}
	for _, n := range c.nodes {
		waitUntil(c.tb, n.cfg.Node.Name+" to see every gossip member", func() bool {
			return n.GossipStats().Members == len(c.nodes)
		})
	}
}

// TestGossipRevocationReachesCutOffNode: node-3 loses every libp2p link to node-1 and node-2
// (so Raft cannot reach it) but still gossips. A revocation committed by the others is enforced
// on node-3 within seconds: the view says revoked, the agent's live connection is closed, and
// node-3's own replica has not applied the command.
func TestGossipRevocationReachesCutOffNode(t *testing.T) {
	for _, mode := range []string{"best_effort", "strict"} {
		t.Run(mode, func(t *testing.T) { testCutOffNode(t, mode) })
	}
}

func testCutOffNode(t *testing.T, mode string) {
	c := startE2EClusterYAML(t, 3, gossipYAML+"auth:\n  enforcement: "+mode+"\n  max_staleness: 30s\n")
	c.joinGossip()
	agentKey := c.register("worker")
	ah := newAgentHost(t, agentKey)
	cut := c.nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := agentproto.Attach(ctx, ah, addrInfo(cut)); err != nil {
		t.Fatal(err)
	}
	// Cut node-3 off over libp2p, both ways.
	for _, other := range c.nodes[:2] {
		cut.BlockPeer(other.Host().ID())
		other.BlockPeer(cut.Host().ID())
	}
	waitUntil(t, "node-3 to lose its libp2p links", func() bool {
		for _, other := range c.nodes[:2] {
			if len(cut.Host().Network().ConnsToPeer(other.Host().ID())) > 0 {
				return false
			}
		}
		return true
	})
	applied := cut.Consensus().AppliedIndex()

	cmd, err := identity.NewCommand(c.cid, &identity.RevokeAgent{Name: "worker", Reason: "compromised"}, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Sign(c.op)
	start := time.Now()
	res, err := c.nodes[0].Propose(ctx, cmd)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "node-3 to enforce the revocation by gossip", func() bool {
		return cut.gater.Decide(agentKey.ID().Peer()) == enforce.ReasonRevoked &&
			len(cut.Host().Network().ConnsToPeer(ah.ID())) == 0
	})
	elapsed := time.Since(start) // logged, not asserted: the machine is shared (waitUntil bounds it at 20 s)
	if cut.Consensus().AppliedIndex() != applied {
		t.Fatal("node-3 applied through Raft: the test did not cut it off")
	}
	var st identity.Status
	cut.Consensus().Read(func(r *identity.Registry) { a, _ := r.Agent("worker"); st = a.Status })
	if st != identity.StatusActive {
		t.Fatalf("node-3's replica says %s: the revocation came through Raft", st)
	}
	if gs := cut.GossipStats(); gs.RevocationsApplied != 1 || gs.RevocationsRefused != 0 {
		t.Fatalf("gossip stats on node-3: %+v", gs)
	}
	t.Logf("cut-off node enforced the revocation %s after the commit started", elapsed)

	// Heal: Raft delivers the same revocation; the overlay entry goes.
	for _, other := range c.nodes[:2] {
		cut.UnblockPeer(other.Host().ID())
		other.UnblockPeer(cut.Host().ID())
	}
	waitUntil(t, "node-3 to apply the revocation through Raft", func() bool {
		var s identity.Status
		cut.Consensus().Read(func(r *identity.Registry) { a, _ := r.Agent("worker"); s = a.Status })
		return s == identity.StatusRevoked
	})
	waitUntil(t, "the overlay to empty", func() bool {
		_ = cut.enforcer.Refresh(ctx)
		return cut.views.Overlaid() == 0
	})
}

// TestGossipForgedRevocationRefused: a revocation signed by a node key (not an operator)
// arrives by gossip and is refused: nothing is cut off.
func TestGossipForgedRevocationRefused(t *testing.T) {
	c := startE2EClusterYAML(t, 2, gossipYAML)
	c.joinGossip()
	agentKey := c.register("worker")
	cmd, err := identity.NewCommand(c.cid, &identity.RevokeAgent{Name: "worker", Reason: "forged"}, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Sign(c.nodes[0].key) // a node is not an operator
	if err := c.nodes[0].gossip.mesh.PublishRevocation(cmd.Encode()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "node-2 to refuse the forged revocation", func() bool {
		return c.nodes[1].GossipStats().RevocationsRefused == 1
	})
	if r := c.nodes[1].gater.Decide(agentKey.ID().Peer()); r != enforce.ReasonAgent {
		t.Fatalf("forged revocation enforced: %s", r)
	}
}

// TestGossipAutomatedRevocation: with automated response on and revoke_quorum 2, one node's
// signals only alert; a second node's signal reaches the quorum, a node proposes an
// AutoRevokeAgent carrying both signals, every replica verifies them, and the agent is revoked
// everywhere.
func TestGossipAutomatedRevocation(t *testing.T) {
	c := startE2EClusterYAML(t, 3, gossipYAML)
	c.joinGossip()
	agentKey := c.register("worker")
	c.propose(c.nodes[0], &identity.SetAutomatedResponse{Enabled: true})
	ev := sha256.Sum256([]byte("syscalls"))
	for range 5 { // one node at full rate: never enough
		if err := c.nodes[0].ReportAnomaly("worker", "ngram", 0.99, ev); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "node-2 to hear node-1's signals", func() bool {
		ds, err := c.nodes[1].Decisions(alerts.DecisionQuery{Agent: "worker"})
		return err == nil && len(ds) > 0
	})
	time.Sleep(500 * time.Millisecond)
	for _, n := range c.nodes {
		if r := n.gater.Decide(agentKey.ID().Peer()); r != enforce.ReasonAgent {
			t.Fatalf("%s: one reporter revoked the agent (%s)", n.cfg.Node.Name, r)
		}
	}
	start := time.Now()
	if err := c.nodes[1].ReportAnomaly("worker", "lstm", 0.97, ev); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		waitUntil(t, n.cfg.Node.Name+" to revoke automatically", func() bool {
			return n.gater.Decide(agentKey.ID().Peer()) == enforce.ReasonRevoked
		})
	}
	t.Logf("second reporter's signal to revoked on every node: %s", time.Since(start))
	var detail string
	c.nodes[2].Consensus().Read(func(r *identity.Registry) {
		es := r.Audit(identity.AuditQuery{Principal: "worker"})
		detail = es[len(es)-1].Detail
	})
	if want := "automated revoked agent worker"; len(detail) < len(want) || detail[:len(want)] != want {
		t.Fatalf("audit detail %q", detail)
	}
	code, body := get(t, c.nodes[1], "/decisions")
	if code != 200 || !strings.Contains(body, `"action":"revoke"`) || !strings.Contains(body, `"agent":"worker"`) {
		t.Fatalf("/decisions: %d %s", code, body)
	}
	_, metrics := get(t, c.nodes[1], "/metrics")
	for _, want := range []string{"vigil_gossip_members 3", `vigil_response_decisions_total{action="revoke"} 1`,
		`vigil_gossip_payloads_total{outcome="delivered"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestGossipLocalQuarantine: with revoke_quorum 3, two nodes' signals put the agent in local
// quarantine on every node (refused by the gater, its connection closed) while the registry
// still holds it active.
func TestGossipLocalQuarantine(t *testing.T) {
	c := startE2EClusterYAML(t, 3, gossipYAML)
	c.joinGossip()
	c.propose(c.nodes[0], &identity.SetRevokeQuorum{Quorum: 3})
	agentKey := c.register("worker")
	ah := newAgentHost(t, agentKey)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := agentproto.Attach(ctx, ah, addrInfo(c.nodes[2])); err != nil {
		t.Fatal(err)
	}
	ev := sha256.Sum256([]byte("x"))
	for _, n := range c.nodes[:2] {
		if err := n.ReportAnomaly("worker", "ngram", 0.9, ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.nodes {
		waitUntil(t, n.cfg.Node.Name+" to quarantine locally", func() bool {
			return n.gater.Decide(agentKey.ID().Peer()) == enforce.ReasonQuarantined
		})
	}
	waitUntil(t, "node-3 to close the agent's connection", func() bool {
		return len(c.nodes[2].Host().Network().ConnsToPeer(ah.ID())) == 0
	})
	var st identity.Status
	c.nodes[2].Consensus().Read(func(r *identity.Registry) { a, _ := r.Agent("worker"); st = a.Status })
	if st != identity.StatusActive {
		t.Fatalf("registry says %s: a local quarantine reached the registry", st)
	}
	if ds, err := c.nodes[2].Decisions(alerts.DecisionQuery{Action: "revoke"}); err != nil || len(ds) != 0 {
		t.Fatalf("two reporters under quorum 3 decided revoke: %+v %v", ds, err)
	}
}

// TestGossipForgedReverificationSignals: an agent whose re-verification answer does not verify
// under its registered key is cut off, and its node gossips an anomaly signal about it that the
// other nodes count.
func TestGossipForgedReverificationSignals(t *testing.T) {
	c := startE2EClusterYAML(t, 2, gossipYAML+"auth:\n  reverify_interval: 1s\n")
	c.joinGossip()
	agentKey := c.register("worker")
	wrong, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(agentKey.Libp2p()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	agentproto.ServeReverify(h, wrong) // answers challenges with another key's signature
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := agentproto.Attach(ctx, h, addrInfo(c.nodes[0])); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "node-2 to count node-1's re-verification signal", func() bool {
		ds, _ := c.nodes[1].Decisions(alerts.DecisionQuery{Agent: "worker"})
		for _, d := range ds {
			if d.Action != alerts.ActionLift && d.Reporters == 1 {
				return true
			}
		}
		return false
	})
}
