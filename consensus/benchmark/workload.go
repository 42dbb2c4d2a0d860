package benchmark

import "math/rand/v2"

// ValueSize is the payload of every write, in bytes, on both sides of the comparison. It is the size
// of an encoded, operator-signed RegisterAgent command (identity.Command.Encode()): cluster id 16,
// kind, nonce 16, issued-at, a payload of name, 32-byte key, a few labels and capabilities and the
// expiry (≈ 150), and one signature (32-byte signer + 64-byte Ed25519 signature), with framing.
// The identity package did not exist yet when this was written, so 300 is that estimate, not a
// measurement; replace it with len(cmd.Encode()) of a typical registration once it does.
const ValueSize = 300

// Value returns ValueSize deterministic pseudo-random bytes for seed (incompressible, like a
// signature-bearing command).
func Value(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x766967696c)) // "vigil"
	b := make([]byte, ValueSize)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
