package gossip

import (
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/gossip/response"
	"github.com/vigil-mesh/vigil/identity"
)

// decide feeds what node nd has seen (its own signals and those delivered to it) into a fresh
// aggregator with revoke quorum q and returns the decision about subject now.
func decide(t testing.TB, nd *testNode, own []identity.Signal, subject identity.SignalSubject, q int) response.Decision {
	t.Helper()
	a, err := response.New(response.DefaultConfig())
	if err == nil {
		err = a.SetRevokeQuorum(q)
	}
	if err != nil {
		t.Fatal(err)
	}
	nd.mu.Lock()
	seen := append(append([]identity.Signal(nil), nd.got...), own...)
	nd.mu.Unlock()
	for _, s := range seen {
		a.Observe(s, time.Now())
	}
	return a.Evaluate(subject, time.Now())
}

// TestHonestQuorumUnderLoss: revoke_quorum honest nodes report an agent with 10% packet loss;
// every node of ten ends up with a revoke decision and the evidence for it.
func TestHonestQuorumUnderLoss(t *testing.T) {
	c := newTestCluster(t, 31, 10, nil)
	c.net.SetLoss(0.10)
	agent := identity.SignalSubject{Name: "agent-x", Key: c.key().Public()}
	own := map[int][]identity.Signal{}
	for i := range 2 {
		s := c.signal(c.nodes[i].key, agent.Name, agent.Key)
		own[i] = []identity.Signal{s}
		if err := c.nodes[i].mesh.PublishSignal(s); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	eventually(t, 10*time.Second, func() bool {
		for i, nd := range c.nodes {
			if decide(t, nd, own[i], agent, 2).Action != response.Revoke {
				return false
			}
		}
		return true
	}, "a revoke decision on every node")
	t.Logf("every node decided revoke %s after the signals were published (10%% loss)", time.Since(start))
	for i, nd := range c.nodes {
		if d := decide(t, nd, own[i], agent, 2); len(d.Evidence) != 2 {
			t.Fatalf("node %d: evidence %d", i, len(d.Evidence))
		}
	}
}

// TestCompromisedMinorityFlood: revoke_quorum − 1 = 2 compromised nodes sign signals against a
// healthy agent as fast as they can for two seconds: no node ever decides revoke.
func TestCompromisedMinorityFlood(t *testing.T) {
	c := newTestCluster(t, 32, 6, nil)
	agent := identity.SignalSubject{Name: "healthy", Key: c.key().Public()}
	own := map[int][]identity.Signal{}
	stop := time.Now().Add(2 * time.Second)
	for time.Now().Before(stop) {
		for i := range 2 {
			s := c.signal(c.nodes[i].key, agent.Name, agent.Key)
			own[i] = append(own[i], s)
			_ = c.nodes[i].mesh.PublishSignal(s)
		}
	}
	time.Sleep(time.Second)
	for i, nd := range c.nodes {
		d := decide(t, nd, own[i], agent, 3)
		if d.Action == response.Revoke || len(d.Evidence) != 0 {
			t.Fatalf("node %d: two compromised nodes revoked a healthy agent: %+v", i, d.Action)
		}
		if i >= 2 && d.Reporters > 2 {
			t.Fatalf("node %d counts %d reporters", i, d.Reporters)
		}
	}
	t.Logf("%d signals signed; node 5 delivered %d, rate-limited %d", len(own[0])+len(own[1]),
		c.nodes[5].signals.Load(), c.nodes[5].mesh.Count(CountRateLimited))
}
