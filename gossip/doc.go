// Package gossip joins every node into one hashicorp/memberlist mesh and carries signed, bounded
// payloads on it: anomaly signals and committed revocations, so that a site cut off from the Raft
// leader still learns revocations through any path.
//
// Status: not built yet (see docs/architecture.md, "What exists today").
//
// Invariant: memberlist's shared key only hides traffic; every payload carries its own node
// signature, nonce and validity window, and its size is checked before anything is allocated.
package gossip
