package consensus

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// TestLaggingFollowerAcceptsLeaderAdmittedWhileAway: F is partitioned while N is admitted and
// becomes leader; after the partition heals, F learns N from the peers it trusts (/vigil/join/1)
// and catches up while N still leads (same term: leadership never moved back to a node F knew).
func TestLaggingFollowerAcceptsLeaderAdmittedWhileAway(t *testing.T) {
	c := newTestCluster(t, 3, 1)

	// F: a follower other than n1 (addNode joins through the first live node).
	var f *testNode
	for _, tn := range c.nodes[1:] {
		if !tn.node.IsLeader() {
			f = tn
			break
		}
	}
	var others []*testNode
	for _, tn := range c.live() {
		if tn != f {
			others = append(others, tn)
		}
	}
	partition(f, others)

	n := c.addNode("n4", true)
	nID := n.host.ID()
	mustPropose(t, c.leader().node, registerAgent(t, c.cid, "while-away", time.Now(), c.ops[0]))

	// F missed the admission: neither its registry nor its raft configuration knows N.
	nodeID, err := identity.IDFromPeer(nID)
	if err != nil {
		t.Fatal(err)
	}
	var known bool
	f.node.Read(func(r *identity.Registry) { _, known = r.Node(nodeID) })
	if known || f.node.inRaftConfiguration(nID) {
		t.Fatal("precondition: F already knows N")
	}

	// Make N the leader while F is still away. The old leader stays cut off from F: its raft
	// replication goroutine to F may still be asleep in raft's failure backoff, and when it wakes
	// it sends one last AppendEntries (with the admission) in the old term, which F would accept
	// and so learn N without any fix.
	old := c.leader()
	transferLeadership(t, c, n)
	term := n.node.raft.CurrentTerm()
	var rest []*testNode
	for _, tn := range others {
		if tn != old {
			rest = append(rest, tn)
		}
	}
	heal(f, rest)
	healed := time.Now()
	c.waitFor("F catches up under N", func() bool { return hasAgent(f.node, "while-away") })
	t.Logf("F caught up %v after the heal (%s refreshes)", time.Since(healed).Round(time.Millisecond),
		f.node.Stats()["vouch_refreshes"])
	mustPropose(t, n.node, registerAgent(t, c.cid, "after-heal", time.Now(), c.ops[0]))
	c.waitFor("F applies a write made by N after the heal", func() bool { return hasAgent(f.node, "after-heal") })
	c.waitConverged(c.live()...)
	if !n.node.IsLeader() || n.node.raft.CurrentTerm() != term {
		t.Fatalf("leadership moved (leader %v, term %d → %d): F may have caught up from another leader",
			n.node.IsLeader(), term, n.node.raft.CurrentTerm())
	}
	// F's registry now decides on its own: N is admitted there.
	f.node.Read(func(r *identity.Registry) { _, known = r.Node(nodeID) })
	if !known {
		t.Fatal("F's registry does not list N")
	}
}

// TestVouchedEntriesExpire: a vouched peer is trusted only until the local registry reaches the
// voucher's applied index or the TTL passes, and never when the local registry knows its key in
// another role or as the key of a removed node (no voucher can bring a removed node back).
func TestVouchedEntriesExpire(t *testing.T) {
	c := newTestCluster(t, 1, 1)
	nd := c.nodes[0].node
	gone := mustKey(t)
	mustPropose(t, nd, signed(t, c.cid, &identity.AdmitNode{Node: identity.NodeEntry{Name: "gone", Key: gone.Public()}}, time.Now(), c.ops[0]))
	mustPropose(t, nd, signed(t, c.cid, &identity.RemoveNode{Name: "gone"}, time.Now(), c.ops[0]))
	c.waitFor("removed node out of the raft configuration", func() bool { return !nd.inRaftConfiguration(gone.ID().Peer()) })

	stranger := mustKey(t).ID().Peer()
	applied := nd.AppliedIndex()
	now := time.Now()
	fresh := vouch{until: applied + 100, expires: now.Add(time.Minute)}
	cases := []struct {
		name    string
		p       peer.ID
		v       vouch
		allowed bool
	}{
		{"ahead of the local registry, fresh", stranger, fresh, true},
		{"local registry caught up", stranger, vouch{until: applied, expires: now.Add(time.Minute)}, false},
		{"ttl passed", stranger, vouch{until: applied + 100, expires: now.Add(-time.Millisecond)}, false},
		{"removed node", gone.ID().Peer(), fresh, false},
		{"operator key", c.ops[0].ID().Peer(), fresh, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nd.vouchMu.Lock()
			nd.vouched = map[peer.ID]vouch{tc.p: tc.v}
			nd.vouchMu.Unlock()
			err := nd.authorize(tc.p)
			if tc.allowed && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.allowed && !errors.Is(err, ErrNotAdmitted) {
				t.Fatalf("got %v, want ErrNotAdmitted", err)
			}
		})
	}
	nd.vouchMu.Lock()
	nd.vouched = nil
	nd.vouchMu.Unlock()

	// A voucher's answer is filtered the same way before it is stored.
	nd.acceptVouch(c.nodes[0].host.ID(), joinResponse{Result: wireResult{Index: applied + 100}, Nodes: []joinNode{
		{ID: gone.ID().Peer().String()}, {ID: c.ops[0].ID().Peer().String()}, {ID: stranger.String()}, {ID: "not-a-peer-id"},
	}})
	got := nd.vouchedPeers(time.Now())
	if len(got) != 1 || got[0] != stranger {
		t.Fatalf("vouched %v, want only the unknown key %s", got, stranger)
	}
	nd.acceptVouch(c.nodes[0].host.ID(), joinResponse{Result: wireResult{Index: applied}, Nodes: []joinNode{{ID: mustKey(t).ID().Peer().String()}}})
	if got := nd.vouchedPeers(time.Now()); len(got) != 1 {
		t.Fatalf("a voucher that is not ahead added vouches: %v", got)
	}
}

// TestUnknownPeerNotVouched: a refusal triggers a refresh, but the trusted peers do not list an
// unknown key, so it stays refused (and the refresh is rate-limited, at most one in flight).
func TestUnknownPeerNotVouched(t *testing.T) {
	c := newTestCluster(t, 2, 1)
	a := c.nodes[0].node
	stranger := mustKey(t).ID().Peer()
	for range 50 {
		if err := a.authorize(stranger); !errors.Is(err, ErrNotAdmitted) {
			t.Fatalf("stranger: got %v, want ErrNotAdmitted", err)
		}
	}
	c.waitFor("a refresh ran", func() bool { return a.refreshes.Load() >= 1 })
	time.Sleep(3 * refreshMinInterval)
	if err := a.authorize(stranger); !errors.Is(err, ErrNotAdmitted) {
		t.Fatalf("stranger after refresh: got %v, want ErrNotAdmitted", err)
	}
	// 50 refusals within one interval, then one more: at most two refreshes ran.
	if got := a.refreshes.Load(); got > 2 {
		t.Fatalf("%d refreshes for a burst of refusals, want at most 2 (rate limit)", got)
	}
}

// transferLeadership moves leadership to to (retrying while it catches up) and waits for it.
func transferLeadership(t *testing.T, c *testCluster, to *testNode) {
	t.Helper()
	id := raft.ServerID(to.host.ID().String())
	c.waitFor("leadership transferred to "+to.name, func() bool {
		if to.node.IsLeader() {
			return true
		}
		l := c.leader()
		if l == nil {
			return false
		}
		ms, err := l.node.Members()
		if err != nil {
			return false
		}
		for _, m := range ms {
			if m.ID == to.host.ID() {
				if err := l.node.raft.LeadershipTransferToServer(id, m.Address).Error(); err != nil {
					t.Logf("leadership transfer: %v", err)
				}
			}
		}
		return to.node.IsLeader()
	})
}
