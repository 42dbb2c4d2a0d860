package identity

// Strong-key check for keys that enter the registry (agents, nodes, operators).
//
// Why: crypto/ed25519 (and libp2p, which uses it) accepts any encoding of any curve point as a
// public key, including the 8 points of small order and their non-canonical encodings (y >= p).
// For a small-order key A, [k]A is a torsion point for every k, so anyone can forge a signature
// (for the identity point: R = identity, S = 0 verifies for every message). One operator could
// thus admit "nodes" whose signatures anyone can forge, or one point under two encodings would
// count as two distinct signers. The registry therefore only accepts canonical encodings (y < p)
// whose y is not that of a small-order point. A 32-byte string that is not a curve point at all
// is not refused here: no signature ever verifies under it, so it only makes a dead principal.
// review_test.go checks this table against a full big.Int computation of [8]P.

// smallOrderY are the little-endian y coordinates of the 8 points of small order:
// y = 1 (order 1), p−1 (order 2), 0 (order 4) and ±y8 (order 8).
var smallOrderY = [...][32]byte{
	{1},
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	{},
	{0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
		0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05},
	{0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
		0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a},
}

// strongKey reports whether k is a canonical encoding whose y is not that of a small-order point
// (x = 0 with the sign bit set only occurs for y = ±1, which are in the table).
func strongKey(k PublicKey) bool {
	y := k.b
	y[31] &= 0x7f
	high := y[31] == 0x7f && y[0] >= 0xed // y >= p = 2^255 − 19 iff bytes 1..30 are 0xff too
	for i := 1; high && i < 31; i++ {
		high = y[i] == 0xff
	}
	if high {
		return false
	}
	for _, s := range smallOrderY {
		if y == s {
			return false
		}
	}
	return true
}
