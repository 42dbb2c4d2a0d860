// Package agentproto is the minimal agent protocol of a Vigil node (DESIGN.md §4): an agent
// attaches and learns its registration, and the node re-verifies it periodically.
//
// The agent is a libp2p host whose identity is its agent key, so the node knows who it is from
// the secure channel (and the enforcement gater has already admitted it).
//
//   - /vigil/agent/1 (agent → node): one AttachRequest; the node answers with the agent's
//     Registration (name, SPIFFE ID, labels, capabilities, expiry, status, re-verification
//     interval) or a Refusal with a code and a reason.
//   - /vigil/agent/reverify/1 (node → agent), right after the attach and then every
//     ReverifyInterval while the agent is connected: a Challenge (32-byte random nonce, the
//     node's ID, a timestamp); the agent answers a Proof, its Ed25519 signature over
//     ReverifyBytes: "vigil/reverify/v1\x00" || nonce || node ID || agent ID || timestamp. The
//     node verifies it with the key in its registry and keeps the latest as the agent's Presence.
//     A failure, a timeout or an expired (or no longer active) registration cuts the agent off
//     (Config.Disconnect, wired to enforce.Enforcer.Disconnect).
//
// Messaging (docs/agents.md; wire format in msgwire.go, one reusable stream per exchange flow):
//
//   - /vigil/agent/session/1 (agent → node): attach, then the stream stays open while the agent
//     is attached; the node writes a Notice (why) before it cuts the agent off (Router.CutOff,
//     wired to enforce.Config.BeforeCut).
//   - /vigil/agent/send/1, /vigil/agent/report/1 (agent → node), /vigil/agent/deliver/1 (node →
//     agent), /vigil/node/relay/1 and /vigil/node/locate/1 (node → node, admitted nodes only).
//   - A node answers a locate query "attached" only with the agent's Presence, which names that
//     node; the sender's node relays only to a node whose proof verifies under the destination's
//     key and is at most RouterConfig.LocateMaxAge old (CheckPresence), and caches the location
//     no longer than that. Other answers are ignored, counted (Router.Stats) and logged.
//   - Authorize is the capability rule, a pure function; the Router runs it at the sender's node
//     and again at the destination's node, and records every message, refusal and event
//     (RouterConfig.Record, a node/telemetry buffer).
//   - Router.Throttle (the throttle step of the collective response) gives an agent a token
//     bucket at its node; a send beyond it is refused with CodeThrottled before any other check,
//     and the agent stays attached. A throttle ends at its until, on Unthrottle, or when the
//     agent is revoked or quarantined (CutOff); at most RouterConfig.MaxThrottled are held.
//
// Agent side:
//
//	agentproto.ServeReverify(h, agentKey) // before attaching
//	reg, err := agentproto.Attach(ctx, h, nodeAddrInfo)
//	if errors.Is(err, agentproto.ErrRevoked) { … }
//
// Node side:
//
//	srv, _ := agentproto.NewServer(h, views, cfg) // views: the enforce.Views the gater uses
//	defer srv.Close()
//	r, _ := agentproto.NewRouter(srv, agentproto.DefaultRouterConfig())
//	defer r.Close()
//
// Invariants:
//   - Every message is one frame whose length is checked against MaxMessageSize (attach) or
//     MaxEnvelopeSize (messaging) before any allocation; Decode is strict and canonical (FuzzDecode checks Encode(Decode(b)) == b).
//   - The agent signs only challenges that name the node at the other end of the stream and are
//     dated at most MaxChallengeAhead ahead of its clock, and every signature is
//     domain-separated, so a proof cannot be relayed to another node or reused as any other
//     signature, and a node cannot hoard proofs of presence for later.
//   - The server answers from the current enforce.View only; it never admits what the View does
//     not, and each attached agent has at most one re-verification goroutine, which ends with its
//     connection or with Close.
package agentproto
