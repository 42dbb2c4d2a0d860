// Package node is the Vigil daemon: it composes identity, consensus, gossip and detection into one
// process, enforces the registry at the libp2p connection gater, serves the admin API and the agent
// protocols, and exposes metrics, health and the dashboard over HTTP.
//
// Status: the daemon is the subject of the next stage of work (see docs/architecture.md, "What
// exists today"). The replicated registry it stands on lives in package consensus.
//
// Invariant (DESIGN.md §12): node imports consensus, gossip, detector and identity; none of them
// imports node.
package node
