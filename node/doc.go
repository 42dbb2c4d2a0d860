// Package node is the Vigil daemon: it composes identity, consensus, gossip and detection into one
// process, enforces the registry at the libp2p connection gater, serves the admin API and the agent
// protocols, and exposes metrics, health and readiness over HTTP.
//
// Status: the daemon is the subject of the next stage of work (see docs/architecture.md, "What
// exists today"). The replicated registry it stands on lives in package consensus.
//
// Gossip (gossip.go, off unless gossip.enabled): the node joins the memberlist mesh of
// admitted nodes, gossips every revocation committed through it, enforces verified revocations
// received by gossip at once through the enforce overlay, and feeds anomaly signals
// (ReportAnomaly, forged re-verifications) to the response ladder, proposing an AutoRevokeAgent
// with the evidence when revoke_quorum nodes agree. BlockPeer (faults.go) is a fault-injection
// seam for tests and sim/.
//
// Detection (detect.go, always on): the node's telemetry feeds one detector/engine built from
// the cluster policy (rebuilt when its version changes); alerts go to a bounded Badger store
// under the data directory's state/ (package node/alerts), strong ones become signed anomaly
// signals (ReportAnomaly), and the engine's per-agent state is checkpointed there and restored
// at start. The admin API lists, acknowledges and resolves alerts (AckAlert, ResolveAlert).
//
// Invariant (DESIGN.md §12): node imports consensus, gossip, detector and identity; none of them
// imports node.
package node
