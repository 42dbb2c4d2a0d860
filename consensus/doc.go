// Package consensus replicates the identity registry with Raft (DESIGN.md §3, §8): an FSM over
// identity.Registry, a Node that wires hashicorp/raft to a Badger log store (consensus/store),
// raft's file snapshot store and a raft transport over libp2p streams (consensus/transport), and
// the node-to-node protocols around it: /vigil/join/1, /vigil/propose/1, /vigil/readindex/1 and
// /vigil/removed/1.
//
// Usage:
//
//	cfg := consensus.DefaultConfig()
//	cfg.DataDir, cfg.Key, cfg.Host, cfg.Genesis = dir, nodeKey, host, genesisCmd
//	cfg.Bootstrap = true // first node only; others set cfg.Join
//	n, err := consensus.Open(cfg)
//	if err != nil { … }
//	defer n.Close()
//	res, err := n.Propose(ctx, signedCmd)          // from any node; forwarded to the leader
//	n.Read(func(r *identity.Registry) { … })       // local, for enforcement
//	err = n.ConsistentRead(ctx, func(r *identity.Registry) { … }) // linearizable, for admin
//
// Membership: a node joins by an operator-signed AdmitNode command. The new node asks a join peer
// for the admitted nodes; the leader's reconciler makes the raft configuration follow the registry
// (non-voter first, promoted to voter once connected; removed nodes are removed from raft and
// their raft streams dropped on every node). Before it removes a node from raft, the leader sends
// it the operator-signed remove-node command (/vigil/removed/1); the removed node, or one that
// applies its own removal, stops raft, records the removal in its data dir and never starts raft
// there again (RemovedError, ErrRemoved). A join that fails says why: ErrNotAdmitted (the peer
// refused this node's key) or ErrUnreachable (nothing answers at the join address); see
// JoinProblem.
//
// Invariants:
//   - Every replica applies the same entries with the same time (the leader's AppendedAt, made
//     monotonic), so every replica has the same registry Hash at the same index. A command with a
//     bad or missing signature, a replayed nonce, a stale issued-at or another cluster's id is
//     rejected identically everywhere and changes nothing, even if a voter appends it directly.
//   - Nothing is acknowledged before it is on disk on a quorum (Badger with SyncWrites).
//   - Only admitted nodes (the registry; the servers of raft's persisted configuration, which the
//     leader keeps equal to the registry and which lets a restarted cluster elect before any
//     registry is re-applied; the genesis before it is applied; the join bootstrap set while this
//     node is not yet listed; nodes vouched for by an admitted node, until the local registry has
//     applied the voucher's index or a TTL passes) may speak raft, propose or ask for a read
//     index. Deny by default; a refused unknown peer triggers an asynchronous, rate-limited
//     refresh of the vouches, never a blocking one.
//   - The leader reconciles raft membership (and proposes the genesis) only after a barrier in its
//     term, so it never acts on a registry that is still being re-applied after a restart.
//   - A data directory is bound to one cluster id and one node key on first start and is never
//     reset: another genesis or another key is refused with ErrDataDir.
//   - Every length read from the network or the disk is checked against a cap before allocation.
package consensus
