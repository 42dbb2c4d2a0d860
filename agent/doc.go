// Package agent is the Go SDK for programs that run as agents on a Vigil mesh: load or create a
// key, connect to a node (reconnecting with backoff), answer the node's re-verification
// challenges, send messages to other agents naming a capability, receive them with a handler per
// capability, report events (tool calls, metrics), and request a key rotation.
//
// Status: the shared types (types.go) exist; the client is being built.
//
// Invariant: the agent's private key never leaves the process; every operation is authorised by
// the agent's node and again by the destination's node, deny by default.
package agent
