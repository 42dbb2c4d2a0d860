package consensus

import (
	"bytes"
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/multiformats/go-multiaddr"

	"github.com/vigil-mesh/vigil/identity"
)

// Catching up with nodes admitted while this node was away. A follower that missed an admission
// (partitioned, down) refuses the new node's raft traffic; if that node now leads, the follower
// would never catch up. So a refusal of an unknown peer asks peers this node trusts for their
// admitted nodes over /vigil/join/1, and trusts the answer as a joining node trusts its join
// peers: a vouch lasts until the local registry has applied the voucher's index (then the
// registry decides again) or vouchTTL passes, whichever comes first.

const (
	// refreshMinInterval is the pause after a refresh that made the refused peer trusted; each
	// refresh that did not doubles the pause, up to refreshMaxBackoff. No refresh starts during
	// the pause, so a flood of refused streams costs at most one join exchange per pause.
	refreshMinInterval = 200 * time.Millisecond
	refreshMaxBackoff  = 10 * time.Second
	// refreshPeers is how many trusted peers one refresh asks at most (connected ones first).
	refreshPeers = 3
	// refreshRPCTimeout bounds one join exchange of a refresh (also bounded by RPCTimeout).
	refreshRPCTimeout = 3 * time.Second
	// vouchTTL bounds a vouch even if the local registry never catches up.
	vouchTTL = time.Minute
	// maxVouched caps the vouch table (a lying voucher cannot grow it without bound); it is
	// the most nodes a registry can hold.
	maxVouched = identity.MaxNodes
)

// vouch is the trust lent to a peer listed by an admitted node.
type vouch struct {
	until   uint64    // the voucher's applied index: once ours reaches it, the registry decides
	expires time.Time // wall clock; the vouch is void afterwards
}

// isVouchable reports whether a vouch for id may be honoured: the local registry must not know
// the key at all. A key it holds in any role is decided by the registry alone, and a retired key
// (a removed node, a revoked or rotated-out agent key) can never be admitted again, so no voucher
// can bring it back, however far ahead it claims to be.
func isVouchable(reg *identity.Registry, id identity.ID, now time.Time) bool {
	_, st, known := reg.Principal(id, now)
	return !known && st != identity.StatusRevoked
}

// vouchedFor reports whether p holds a live vouch.
func (n *Node) vouchedFor(p peer.ID, now time.Time) bool {
	n.vouchMu.RLock()
	v, ok := n.vouched[p]
	n.vouchMu.RUnlock()
	return ok && v.live(now, n.fsm.AppliedIndex())
}

func (v vouch) live(now time.Time, applied uint64) bool {
	return now.Before(v.expires) && applied < v.until
}

// vouchedPeers prunes lapsed vouches and returns the live ones.
func (n *Node) vouchedPeers(now time.Time) []peer.ID {
	applied := n.fsm.AppliedIndex()
	n.vouchMu.Lock()
	defer n.vouchMu.Unlock()
	n.pruneVouchedLocked(now, applied)
	out := make([]peer.ID, 0, len(n.vouched))
	for p := range n.vouched {
		out = append(out, p)
	}
	return out
}

// pruneVouchedLocked deletes lapsed vouches; vouchMu must be held.
func (n *Node) pruneVouchedLocked(now time.Time, applied uint64) {
	for p, v := range n.vouched {
		if !v.live(now, applied) {
			delete(n.vouched, p)
		}
	}
}

// requestRefresh asks the refresh loop to learn p. Never blocks: called from transport and
// stream-handler goroutines; a request that finds one already queued is dropped (the queued
// refresh fetches the whole list anyway).
func (n *Node) requestRefresh(p peer.ID) {
	select {
	case n.refreshCh <- p:
	default:
	}
}

// refreshLoop owns the refresh: one at a time, rate-limited, with backoff.
func (n *Node) refreshLoop() {
	wait := refreshMinInterval
	var lastEnd time.Time
	for {
		var p peer.ID
		select {
		case <-n.ctx.Done():
			return
		case p = <-n.refreshCh:
		}
		if _, err := n.admit(p); err == nil {
			continue // trusted meanwhile (applied the admission, or an earlier refresh)
		}
		if time.Since(lastEnd) > refreshMaxBackoff {
			wait = refreshMinInterval // quiet for a while: forget the old backoff
		}
		learnt := n.refresh(p)
		n.refreshes.Add(1)
		lastEnd = time.Now()
		if learnt {
			wait = refreshMinInterval
		} else {
			wait = min(2*wait, refreshMaxBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// refresh asks up to refreshPeers trusted peers for their admitted nodes, stopping once target
// is vouched for. It reports whether target is trusted afterwards.
func (n *Node) refresh(target peer.ID) bool {
	for _, q := range n.refreshCandidates() {
		ctx, cancel := context.WithTimeout(n.ctx, min(refreshRPCTimeout, n.cfg.RPCTimeout))
		body, _, err := n.exchange(ctx, q, JoinProtocol, n.cluster[:], maxJoinMsg)
		cancel()
		if err == nil {
			var j joinResponse
			if j, err = decodeJoinResponse(bytes.NewReader(body)); err == nil {
				if err = j.Result.Err(); err == nil {
					n.acceptVouch(q, j)
				}
			}
		}
		if err != nil {
			n.log.Debug("consensus: refresh from trusted peer failed", "peer", q.String(), "err", err)
			continue
		}
		if _, err := n.admit(target); err == nil {
			return true
		}
	}
	n.log.Debug("consensus: refused peer still unknown after refresh", "peer", target.String())
	return false
}

// refreshCandidates are the peers this node trusts on its own account (its registry's admitted
// nodes and its raft configuration's servers; never vouched peers, so trust is not transitive),
// connected ones first, at most refreshPeers.
func (n *Node) refreshCandidates() []peer.ID {
	self := n.h.ID()
	seen := map[peer.ID]struct{}{self: {}}
	var cands []peer.ID
	add := func(p peer.ID) {
		if _, dup := seen[p]; !dup {
			seen[p] = struct{}{}
			cands = append(cands, p)
		}
	}
	n.fsm.Read(func(reg *identity.Registry) {
		for _, nd := range reg.Nodes() {
			p := nd.ID.Peer()
			if p != self && len(nd.Addrs) > 0 && n.h.Network().Connectedness(p) != network.Connected {
				n.h.Peerstore().AddAddrs(p, parseAddrs(nd.Addrs), peerstore.AddressTTL)
			}
			add(p)
		}
	})
	if r := n.raftRef.Load(); r != nil {
		for _, s := range r.GetConfiguration().Configuration().Servers {
			if p, err := peer.Decode(string(s.ID)); err == nil {
				add(p)
			}
		}
	}
	var connected, other []peer.ID
	for _, p := range cands {
		if n.h.Network().Connectedness(p) == network.Connected {
			connected = append(connected, p)
		} else {
			other = append(other, p)
		}
	}
	cands = append(connected, other...)
	return cands[:min(len(cands), refreshPeers)]
}

// acceptVouch trusts the nodes that voucher (an admitted node) lists, until this node's
// registry has applied the voucher's index. A voucher that is not ahead of us adds nothing: our
// own registry already holds everything it knew.
func (n *Node) acceptVouch(voucher peer.ID, j joinResponse) {
	until := j.Result.Index
	if until <= n.fsm.AppliedIndex() {
		return
	}
	now := time.Now()
	v := vouch{until: until, expires: now.Add(vouchTTL)}
	learnt := 0
	listed := make(map[peer.ID]joinNode, len(j.Nodes))
	n.fsm.Read(func(reg *identity.Registry) {
		for _, jn := range j.Nodes {
			p, err := peer.Decode(jn.ID)
			if err != nil || p == n.h.ID() {
				continue
			}
			if id, err := identity.IDFromPeer(p); err == nil && isVouchable(reg, id, now) {
				listed[p] = jn // an Ed25519 key this registry does not know (yet)
			}
		}
	})
	n.vouchMu.Lock()
	if n.vouched == nil {
		n.vouched = map[peer.ID]vouch{}
	}
	if len(n.vouched) >= maxVouched {
		n.pruneVouchedLocked(now, n.fsm.AppliedIndex())
	}
	for p, jn := range listed {
		old, ok := n.vouched[p]
		if !ok && len(n.vouched) >= maxVouched {
			continue
		}
		if !ok || old.until < v.until {
			n.vouched[p] = v
		}
		learnt++
		n.h.Peerstore().AddAddrs(p, parseAddrs(jn.Addrs), peerstore.AddressTTL)
	}
	n.vouchMu.Unlock()
	n.log.Info("consensus: admitted nodes vouched for by a trusted peer", "via", voucher.String(),
		"nodes", learnt, "until_index", until)
}

// parseAddrs keeps the well-formed multiaddrs of ss.
func parseAddrs(ss []string) []multiaddr.Multiaddr {
	var out []multiaddr.Multiaddr
	for _, s := range ss {
		if a, err := multiaddr.NewMultiaddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}
