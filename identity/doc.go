// Package identity holds Vigil's principals (agents, nodes, operators), their Ed25519 keys and
// libp2p peer IDs, SPIFFE IDs, signed registry commands with their canonical binary encoding,
// and the registry: a pure, deterministic state machine that Raft replicates.
//
// Usage:
//
//	op, _ := identity.GenerateKey(crand.Reader)
//	cmd, _ := identity.NewCommand(cluster, &identity.RegisterAgent{
//		Name: "planner", Key: agentKey.Public(), ExpiresAt: now.Add(24 * time.Hour),
//	}, now, crand.Reader)
//	cmd.Sign(op)
//	wire := cmd.Encode()                        // what goes into the Raft log
//
//	// on every replica:
//	c, err := identity.DecodeCommand(wire)      // strict, capped
//	v, err := c.Verify()                        // signatures; pure, run it in parallel
//	err = reg.Apply(v, entryTime)               // authority and rules; all or nothing
//	role, st, ok := reg.Principal(peerID, time.Now())
//
// Invariants:
//   - Encoding is canonical: DecodeCommand(b) succeeds only if Encode() gives back b exactly, and
//     SigningBytes is "vigil/command/v1\x00" followed by that encoding without signatures.
//     Capabilities are a set: encoding sorts and de-duplicates them. Every count and length
//     read from bytes is checked against limits.go before anything is allocated.
//   - Apply is deterministic: it depends only on the registry, the command and `now`, and the
//     effective now is max(previous now, now), so it never goes back. Callers must pass the same
//     `now` on every replica (the leader's timestamp in the log entry), never the local clock
//     at apply time; Hash() then agrees across replicas.
//   - A rejected command changes nothing: not the state, the nonces, the audit, nor Hash().
//   - Authority: every signer must be a current operator (ErrUnauthorized). One operator is
//     enough for register, revoke, quarantine, release, renew, rotate, admit and remove node,
//     set policy and enabling automated response; add/remove operator, set threshold,
//     reinstate and disabling automated response need Threshold distinct operators.
//   - Genesis is applied once, first, and is exempt from the issued-at window: it is bound to its
//     own cluster ID, signed by Threshold of its own operators, and may be distributed as
//     genesis.bin long after `vigil init`.
//   - Nonces are remembered while a command carrying them could still be inside the window
//     (IssuedAt + MaxCommandAge >= now), so memory is bounded by the command rate × window.
//   - Names share one namespace across agents, nodes and operators. A revoked agent keeps its
//     name (ErrRevokedName) until reinstated by M-of-N. A key that was ever revoked, rotated out
//     or held by a removed node or operator is retired forever (ErrRevokedKey); reinstatement
//     therefore always needs a fresh key.
//   - Every key entering the registry (genesis, register, rotate, reinstate, admit node, add
//     operator) must be a canonical encoding of an Ed25519 point of large order (keycheck.go):
//     small-order keys are forgeable by anyone, and non-canonical encodings would let one point
//     count as two distinct signers.
//   - Verify works on the wire form (DecodeCommand(c.Encode())) and refuses an IssuedAt that does
//     not survive the encoding; VerifiedCommand.Payload returns a fresh copy, so nothing a caller
//     changes after Verify reaches Apply.
//   - Verify runs the cheap checks first (unsigned, too many signatures, duplicate signer, payload
//     decoding) and the Ed25519 work last, so junk costs little.
//   - Additions to the contract: KindAutoRevokeAgent (signed only by admitted nodes, only while
//     automated response is enabled; it carries as evidence signed anomaly Signals from at least
//     RevokeQuorum distinct admitted nodes, each naming the agent's current name and key and
//     observed inside [now − MaxCommandAge, now + MaxClockSkew]; Verify checks the signals'
//     signatures, Apply the rest; DESIGN §6) and
//     KindSetRevokeQuorum (M-of-N; DefaultRevokeQuorum at genesis). NewRegistryWithLimits sets
//     the window; Limits are part of the snapshot so every replica uses the same one.
//   - A set-policy document must parse with identity/policy (pure and deterministic, so every
//     replica accepts or refuses it alike); an invalid one is ErrInvalid naming its line and key.
//     NeedsThreshold tells clients which payloads need Threshold signatures.
//   - Audit entries are part of the state (snapshot and Hash); they are indexed by subject name
//     and by subject and signer key.
package identity
