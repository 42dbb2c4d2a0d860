package enforce

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/identity"
)

var _ Source = (*consensus.Node)(nil)

// TestEnforcerOnConsensusNode runs the enforcer on a real one-node cluster (raft, Badger with
// SyncWrites, libp2p): a revocation proposed through raft closes the agent's live connection,
// driven only by the node's Subscribe callback.
func TestEnforcerOnConsensusNode(t *testing.T) {
	nodeKey, op, agentKey := mustKey(t), mustKey(t), mustKey(t)
	cid, err := identity.NewClusterID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(p identity.Payload) *identity.Command {
		c, err := identity.NewCommand(cid, p, time.Now(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		c.Sign(op)
		return c
	}
	g, err := NewGater(NewViews(), DefaultGaterConfig())
	if err != nil {
		t.Fatal(err)
	}
	h := newHost(t, nodeKey, g, true)
	servePing(h)
	genesis := sign(&identity.Genesis{ClusterID: cid, TrustDomain: "test.vigil", Threshold: 1,
		Operators: []identity.OperatorEntry{{Name: "op-1", Key: op.Public()}},
		Nodes: []identity.NodeEntry{{Name: "node-1", Key: nodeKey.Public(), Site: "s1", Voter: true,
			Addrs: []string{h.Addrs()[0].String()}}}})
	cfg := consensus.DefaultConfig()
	cfg.DataDir, cfg.Key, cfg.Host, cfg.Genesis, cfg.Bootstrap = t.TempDir(), nodeKey, h, genesis, true
	cfg.Logger = testLogger(t)
	cfg.CommitTimeout = 5 * time.Millisecond
	n, err := consensus.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for init := false; !init; { // the leader proposes the genesis after its election
		n.Read(func(r *identity.Registry) { init = r.Initialised() })
		if ctx.Err() != nil {
			t.Fatal("genesis never applied")
		}
		time.Sleep(5 * time.Millisecond)
	}
	propose := func(p identity.Payload) {
		t.Helper()
		res, err := n.Propose(ctx, sign(p))
		if err != nil || res.Err != nil {
			t.Fatalf("propose %s: %v / %v", p.Kind(), err, res.Err)
		}
	}
	ecfg := DefaultConfig()
	ecfg.Logger = testLogger(t)
	lat := make(chan Enforcement, 1)
	ecfg.OnEnforce = func(e Enforcement) { lat <- e }
	enf, err := NewEnforcer(h, g, n, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	defer enf.Close()

	propose(&identity.RegisterAgent{Name: "alpha", Key: agentKey.Public(), ExpiresAt: time.Now().Add(time.Hour)})
	agent := newHost(t, agentKey, nil, false)
	deadline := time.Now().Add(5 * time.Second)
	for connect(agent, h) != nil || ping(agent, h.ID()) != nil { // the view catches up with the apply
		if time.Now().After(deadline) {
			t.Fatal("registered agent never admitted")
		}
		_ = agent.Network().ClosePeer(h.ID())
		time.Sleep(5 * time.Millisecond)
	}
	propose(&identity.RevokeAgent{Name: "alpha", Reason: "compromised"})
	select {
	case e := <-lat:
		if e.Peer != agent.ID() || e.Reason != ReasonRevoked {
			t.Fatalf("enforcement %+v", e)
		}
		t.Logf("revocation through raft enforced %s after the leader appended it", e.Latency)
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked agent was never cut off")
	}
	if len(h.Network().ConnsToPeer(agent.ID())) != 0 {
		t.Fatal("connection still open after enforcement")
	}
}
