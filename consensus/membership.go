package consensus

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/multiformats/go-multiaddr"

	"github.com/vigil-mesh/vigil/consensus/transport"
	"github.com/vigil-mesh/vigil/identity"
)

// TrustsNode reports whether p may speak to this node as a cluster node, by the same rules as the
// authorizer (registry, genesis, join peers, raft configuration, vouches), without side effects.
// The node's connection gater uses it for peers its registry view does not know yet.
func (n *Node) TrustsNode(p peer.ID) bool {
	_, err := n.admit(p)
	return err == nil
}

// authorize is the single gate of every node-to-node protocol (raft, propose, read-index, join):
// a peer is allowed iff the local registry holds it as an admitted node; or the genesis lists it
// and the genesis is not applied yet (afterwards the registry, which includes the genesis nodes,
// decides alone, so a removed genesis node is refused too); or, only while this node's own
// registry does not list this node yet (it is joining), it was learnt from a join peer; or it is
// a server in raft's latest configuration; or an admitted node vouched for it and this node's
// registry has not caught up with that node's yet (see catchup.go). Raft's configuration is
// persisted in the raft log and only the leader's reconciler changes it, always to match the
// registry; trusting it is what lets a restarted cluster elect a leader before any node has
// re-applied its log (until then every registry is empty, and without this rule every vote
// request would be refused). Deny by default. A refused peer that this node does not know
// triggers a refresh of the vouches (asynchronous: authorize never blocks on the network).
func (n *Node) authorize(p peer.ID) error {
	unknown, err := n.admit(p)
	if unknown {
		n.requestRefresh(p)
	}
	return err
}

// admit is authorize without the refresh side effect. unknown is true when p was refused only
// because no rule knows it and it could still be a node admitted elsewhere (see isVouchable);
// not for the fault hook, a key of another role, or the key of a removed node.
func (n *Node) admit(p peer.ID) (unknown bool, err error) {
	if _, blocked := n.blocked.Load(p); blocked {
		return false, errf(ErrNotAdmitted, "peer %s: blocked by fault hook", p)
	}
	id, err := identity.IDFromPeer(p)
	if err != nil {
		return false, errf(ErrNotAdmitted, "peer %s: %v", p, err)
	}
	now := time.Now()
	var admitted, selfListed, genesisApplied, vouchable bool
	n.fsm.Read(func(reg *identity.Registry) {
		_, admitted = reg.Node(id)
		_, selfListed = reg.Node(n.self)
		genesisApplied = reg.ClusterID() != identity.ClusterID{}
		vouchable = isVouchable(reg, id, now)
	})
	if admitted || n.inRaftConfiguration(p) {
		return false, nil
	}
	if _, ok := n.genesisNodes[p]; ok && !genesisApplied {
		return false, nil
	}
	if !selfListed {
		n.bootMu.RLock()
		_, ok := n.boot[p]
		n.bootMu.RUnlock()
		if ok {
			return false, nil
		}
	}
	if vouchable && n.vouchedFor(p, now) {
		return false, nil
	}
	return vouchable, errf(ErrNotAdmitted, "peer %s is not an admitted node", p)
}

// inRaftConfiguration reports whether p is a server in raft's latest configuration (a lock-free
// read of raft's own copy).
func (n *Node) inRaftConfiguration(p peer.ID) bool {
	r := n.raftRef.Load()
	if r == nil {
		return false
	}
	id := raft.ServerID(p.String())
	for _, s := range r.GetConfiguration().Configuration().Servers {
		if s.ID == id {
			return true
		}
	}
	return false
}

// wakeMembership nudges the membership loop; it never blocks (called on the apply goroutine).
func (n *Node) wakeMembership() {
	select {
	case n.memberCh <- struct{}{}:
	default:
	}
}

// reconcileInterval is how often a leader re-checks the raft configuration even without a
// change (a failed AddVoter is retried this way).
const reconcileInterval = time.Second

// promoteRetry is the re-check period while a node waits for promotion to voter.
const promoteRetry = 50 * time.Millisecond

// membershipLoop owns the reaction to registry membership changes: on every node it cuts the
// raft streams of removed nodes; on the leader it proposes the genesis (once) and makes the raft
// configuration match the registry.
func (n *Node) membershipLoop() {
	known := map[peer.ID]struct{}{}
	t := time.NewTimer(reconcileInterval)
	defer t.Stop()
	for {
		if n.removed.Load() != nil {
			return // raft is stopped: nothing to reconcile, no streams to keep
		}
		next := reconcileInterval
		if n.IsLeader() {
			// Only on a registry that reflects every entry committed before this term: right
			// after a restart the registry is empty or partial until the log is re-applied, and
			// reconciling then would remove admitted servers (or re-propose the genesis).
			if err := n.leaderReady(n.ctx); err != nil {
				next = promoteRetry
			} else {
				n.ensureGenesis()
				if n.reconcile() {
					next = promoteRetry
				}
			}
		}
		// After reconcile: on the leader it sends a removed node its removal notice, which
		// needs the stream this cuts.
		n.dropRemoved(known)
		t.Reset(next)
		select {
		case <-n.ctx.Done():
			return
		case <-n.raft.LeaderCh():
		case <-n.memberCh:
		case <-t.C:
		}
	}
}

// dropRemoved closes the raft streams of every peer that lost its admission since the last call:
// in neither the registry nor raft's configuration nor a live vouch (the authorizer trusts all
// three, so a node removed from the registry is cut when the leader has also removed it from
// raft, and a vouched peer when its vouch lapses without the registry admitting it). It runs on
// every registry membership change and configuration entry, and at least every
// reconcileInterval.
func (n *Node) dropRemoved(known map[peer.ID]struct{}) {
	current := map[peer.ID]struct{}{}
	n.fsm.Read(func(reg *identity.Registry) {
		for _, nd := range reg.Nodes() {
			current[nd.ID.Peer()] = struct{}{}
		}
	})
	for _, s := range n.raft.GetConfiguration().Configuration().Servers {
		if p, err := peer.Decode(string(s.ID)); err == nil {
			current[p] = struct{}{}
		}
	}
	for _, p := range n.vouchedPeers(time.Now()) {
		current[p] = struct{}{}
	}
	for p := range known {
		if _, ok := current[p]; !ok {
			dropped := 0
			if n.layer != nil {
				dropped = n.layer.DropPeer(p)
			}
			n.log.Info("consensus: node removed, streams dropped", "peer", p.String(), "streams", dropped)
			delete(known, p)
		}
	}
	for p := range current {
		known[p] = struct{}{}
	}
}

// ensureGenesis proposes the genesis command while the registry is empty. Every node holds the
// same genesis, so a second copy is rejected identically everywhere (already initialised).
func (n *Node) ensureGenesis() {
	var empty bool
	n.fsm.Read(func(reg *identity.Registry) { empty = reg.ClusterID() == identity.ClusterID{} })
	if !empty || n.genesisRejected.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout)
	defer cancel()
	res, err := n.applyLocal(ctx, n.cfg.Genesis.Encode())
	if err != nil && !errors.Is(err, identity.ErrAlreadyInitialised) {
		if res.Index != 0 {
			// The registry rejected it: deterministic, retrying would only grow the log.
			n.genesisRejected.Store(true)
			n.log.Error("consensus: genesis rejected by the registry", "index", res.Index, "err", err)
			return
		}
		n.log.Warn("consensus: genesis proposal failed", "err", err)
		return
	}
	n.log.Info("consensus: genesis applied", "index", res.Index, "cluster", n.cluster.String())
}

// reconcile makes the raft configuration match the registry (leader only): admitted nodes are
// added, servers the registry does not hold are removed, and suffrage follows the Voter flag.
// A new voter is first added as a non-voter and promoted once it serves raft (see
// raftReachable), so admitting a voter that never starts cannot stall commits or depose the
// leader (with two voters, both are needed). The leader never removes or demotes itself here. Nothing happens before the genesis is
// applied. It returns true when a promotion is still pending.
func (n *Node) reconcile() (pending bool) {
	var nodes []identity.Node
	var genesisApplied bool
	n.fsm.Read(func(reg *identity.Registry) {
		genesisApplied = reg.ClusterID() != identity.ClusterID{}
		nodes = reg.Nodes()
	})
	if !genesisApplied {
		return false
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return false
	}
	current := map[raft.ServerID]raft.Server{}
	for _, s := range cf.Configuration().Servers {
		current[s.ID] = s
	}
	selfID := raft.ServerID(n.h.ID().String())
	timeout := n.cfg.ApplyTimeout
	desired := map[raft.ServerID]struct{}{}
	for _, nd := range nodes {
		p := nd.ID.Peer()
		id := raft.ServerID(p.String())
		desired[id] = struct{}{}
		cur, present := current[id]
		var f raft.IndexFuture
		switch {
		case id == selfID:
			continue
		case !present:
			f = n.raft.AddNonvoter(id, n.addressOf(nd), 0, timeout)
			pending = pending || nd.Voter
		case nd.Voter && cur.Suffrage != raft.Voter:
			if !n.raftReachable(p) {
				pending = true
				continue
			}
			f = n.raft.AddVoter(id, cur.Address, 0, timeout)
		case !nd.Voter && cur.Suffrage == raft.Voter:
			f = n.raft.DemoteVoter(id, 0, timeout)
		default:
			continue
		}
		if err := f.Error(); err != nil {
			n.log.Warn("consensus: raft membership change failed", "peer", string(id), "voter", nd.Voter, "err", err)
			return true
		}
		n.log.Info("consensus: raft membership changed", "peer", string(id), "present", present, "voter", nd.Voter)
	}
	for id := range current {
		if _, ok := desired[id]; ok {
			continue
		}
		if id == selfID {
			n.log.Warn("consensus: leader is not an admitted node; keeping itself in the configuration")
			continue
		}
		n.noticeRemoved(id)
		if err := n.raft.RemoveServer(id, 0, timeout).Error(); err != nil {
			n.log.Warn("consensus: raft remove failed", "peer", string(id), "err", err)
			return true
		}
		n.log.Info("consensus: raft server removed", "peer", string(id))
	}
	return pending
}

// noticeRemoved sends the server id, when the registry removed it (its key is retired) and this
// replica holds the command that did it, a removal notice before it leaves the configuration.
func (n *Node) noticeRemoved(id raft.ServerID) {
	p, err := peer.Decode(string(id))
	if err != nil {
		return
	}
	nid, err := identity.IDFromPeer(p)
	if err != nil {
		return
	}
	rec, ok := n.fsm.removal(nid)
	if !ok {
		return
	}
	n.sendRemovalNotice(n.ctx, p, rec)
}

// raftReachable reports whether the leader has a live connection to p and p announced the raft
// protocol (libp2p identify): its raft node is up, not merely its host.
func (n *Node) raftReachable(p peer.ID) bool {
	if n.h.Network().Connectedness(p) != network.Connected {
		return false
	}
	protos, err := n.h.Peerstore().SupportsProtocols(p, transport.RaftProtocol)
	return err == nil && len(protos) > 0
}

// addressOf is the raft address of an admitted node: its registered addresses, else what the
// peerstore knows, else the bare peer ID (the transport resolves it at dial time).
func (n *Node) addressOf(nd identity.Node) raft.ServerAddress {
	p := nd.ID.Peer()
	var addrs []multiaddr.Multiaddr
	for _, s := range nd.Addrs {
		if a, err := multiaddr.NewMultiaddr(s); err == nil {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) > 0 {
		n.h.Peerstore().AddAddrs(p, addrs, peerstore.AddressTTL)
	} else {
		addrs = n.h.Peerstore().Addrs(p)
	}
	return transport.ServerAddress(p, addrs)
}
