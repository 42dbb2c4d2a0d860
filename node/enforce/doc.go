// Package enforce decides, on every node, who may hold a libp2p session, and cuts off live
// sessions when that changes (DESIGN.md §4).
//
// Three parts:
//
//   - View: an immutable snapshot of the registry (role, stored status, expiry and name of every
//     principal) built at an applied index. Views publishes the current one through an
//     atomic.Pointer; Update rebuilds it and returns what changed.
//   - Gater: a connmgr.ConnectionGater over the current View. It decides at InterceptSecured (and
//     InterceptPeerDial), after the handshake has proved the peer's key: admitted nodes,
//     operators and active, unexpired agents are allowed, everyone else is refused. In Strict
//     mode a view older than MaxStaleness refuses new agent sessions (nodes and operators still
//     pass, so the node can heal); BestEffort keeps the last known state. Decisions are counted
//     by reason (Stats).
//   - Enforcer: follows a Source (a *consensus.Node, or MemSource in tests), rebuilds the View
//     after each applied batch on its own goroutine (bursts coalesce; the apply goroutine is never
//     blocked), closes every connection of each peer that lost admission (libp2p resets its
//     streams), sweeps the connected peers, and arms one timer on the earliest agent expiry.
//
// Usage:
//
//	views := enforce.NewViews()
//	gcfg := enforce.DefaultGaterConfig()
//	gcfg.Mode, gcfg.Staleness = enforce.Strict, node.LastContact
//	gater, _ := enforce.NewGater(views, gcfg)
//	h, _ := libp2p.New(libp2p.Identity(key.Libp2p()), libp2p.ConnectionGater(gater), …)
//	node, _ := consensus.Open(…h…)
//	enf, _ := enforce.NewEnforcer(h, gater, node, enforce.DefaultConfig())
//	defer enf.Close()
//
// The gater exists before the first View (the host needs it at construction): until the
// Enforcer publishes one, everything except GaterConfig.Bootstrap peers is refused.
//
// Invariants:
//   - Deny by default: no View, an unknown key, a key rotated out, a revoked, quarantined or
//     expired agent are all refused.
//   - A decision takes no lock and allocates nothing (BenchmarkGaterDecision).
//   - After Update returns, the Enforcer closes every connection of every peer the new View does
//     not admit before it handles the next update; the gater alone would only block new ones.
//   - The local overlay (overlay.go) applies statuses ahead of the registry to agents only:
//     revoked by a verified gossip revocation until the registry holds the revocation itself,
//     and quarantined locally by collective response until lifted. It only ever takes admission
//     away; it never admits anyone the registry refuses.
//   - Enforcement latency (Enforcement.Latency) is measured from the time the Raft leader appended
//     the changing command (the registry's audit time, identical on every replica) to the close,
//     or from ExpiresAt for an expiry. Across hosts it includes clock skew.
package enforce
