// Package gossip joins every node into one hashicorp/memberlist mesh and carries signed, bounded
// payloads on it: anomaly signals and committed revocations, so that a site cut off from the Raft
// leader still learns revocations through any path. Package gossip/response is the pure core
// that turns signals into response decisions.
//
// Usage:
//
//	cfg := gossip.DefaultConfig()
//	cfg.ClusterID, cfg.Key = cluster, nodeKey
//	cfg.Admission = gossip.AdmissionFunc(func(id identity.ID) bool { return isAdmittedNode(id) })
//	cfg.Keyring, _ = gossip.LoadKeyring("/var/lib/vigil/keys/gossip.keyring")
//	cfg.OnSignal = func(s identity.Signal) { /* aggregate */ }
//	cfg.OnRevocation = func(cmd []byte, from identity.ID) { /* check against the registry, enforce */ }
//	m, err := gossip.Start(cfg)
//	m.Join([]string{"10.0.0.5:7946"})
//	m.PublishSignal(sig)        // sig signed by nodeKey (identity.Signal.Sign)
//	m.PublishRevocation(raw)    // a committed RevokeAgent / AutoRevokeAgent, canonical bytes
//	m.InstallKey(newKey, keyringPath) // rotation: InstallKey, UseKey, RemoveKey (by fingerprint)
//	m.MemberStates()                  // node ID → "alive" / "dead"
//	defer m.Close()
//
// Invariants:
//   - memberlist's shared key only hides traffic. Every node's metadata is signed by its node
//     key for this cluster, and memberlist's node name is the node's peer ID; a node the
//     Admission does not admit, or whose metadata does not verify, is refused in the alive and
//     merge delegates.
//   - Every payload is an Envelope signed by its reporter for this cluster, with a nonce and a
//     validity window (at most MaxMessageTTL). The receive path checks, in order: total size
//     (before decoding), strict decoding with per-type body caps (before allocating), admitted
//     reporter, window, signature, inner payload, replay, per-reporter token bucket. Only then is
//     a payload relayed and delivered, once. Every outcome is counted (Stats).
//   - Memory is bounded under any input: the replay cache (DedupeCapacity), the broadcast queue
//     (4,096), the delivery queue (DeliveryQueue), the anti-entropy set (64 revocations,
//     256 KiB), one token bucket per admitted reporter.
//   - OnSignal and OnRevocation run on one goroutine, in arrival order; Close stops it and every
//     other goroutine of the mesh, and is idempotent.
//   - Keyring changes (InstallKey, UseKey, RemoveKey) write the keyring file atomically before
//     memberlist's keyring changes, and put the file back if memberlist refuses; the primary key
//     is never removed. Keys are named outside the process only by KeyFingerprint.
//   - MemNetwork (memnet.go) is the in-memory twin of the network for tests and sim/: it never
//     blocks a sender, so failure detection works on it.
package gossip
