package identity

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"time"
)

// keyringOpVersion is the first byte of every encoded KeyringOp.
const keyringOpVersion = 1

// keyringOpDomain separates keyring-op signatures from command and signal signatures: an
// operator's signature over a KeyringOp can never be replayed as a registry command, nor the
// other way round. A KeyringOp is its own type with its own decoder, not a Command kind, so
// the registry FSM has no path through which it could accept one.
const keyringOpDomain = "vigil/keyring-op/v1\x00"

// Caps on keyring operations.
const (
	// MaxKeyringArg bounds a KeyringOp's argument: an AES key (16, 24 or 32 bytes) or a key
	// fingerprint (16 lowercase hex characters).
	MaxKeyringArg = 32
	// MaxKeyringOpSize bounds one encoded KeyringOp, signature included.
	MaxKeyringOpSize = 1 + 16 + 1 + (1 + MaxKeyringArg) + 8 + 16 + ed25519.PublicKeySize + ed25519.SignatureSize
	// keyringFingerprintLen is the length of a gossip key fingerprint (hex of 8 bytes).
	keyringFingerprintLen = 16
)

// KeyringOpKind is what a KeyringOp does to the gossip keyring.
type KeyringOpKind uint8

// Keyring operations. Listing the keyring is read-only and is never signed.
const (
	KeyringInstall KeyringOpKind = 1 // add Arg (an AES key) as a secondary key
	KeyringUse     KeyringOpKind = 2 // make the key whose fingerprint is Arg the primary
	KeyringRemove  KeyringOpKind = 3 // remove the key whose fingerprint is Arg
)

func (k KeyringOpKind) String() string {
	switch k {
	case KeyringInstall:
		return "install"
	case KeyringUse:
		return "use"
	case KeyringRemove:
		return "remove"
	}
	return fmt.Sprintf("keyring_op(%d)", uint8(k))
}

// ParseKeyringOpKind maps "install", "use" and "remove" to their kind.
func ParseKeyringOpKind(s string) (KeyringOpKind, error) {
	for _, k := range []KeyringOpKind{KeyringInstall, KeyringUse, KeyringRemove} {
		if k.String() == s {
			return k, nil
		}
	}
	return 0, invalidf("keyring_op.op", "%.32q is not one of install, use, remove", s)
}

// KeyringOp is one operator-signed change to the gossip keyring. The node an operator calls
// applies it and forwards the same bytes to every other node, and each node verifies the
// operator's signature itself (Verify, then Registry.CheckKeyringOp) before applying it: a
// node that relays an op cannot forge or alter one.
//
// Replays: IssuedAt bounds the op to the registry's command window; within the window the
// receiver remembers Nonce (the registry's replicated nonce set is not used: keyring ops do
// not go through Raft).
type KeyringOp struct {
	ClusterID ClusterID
	Op        KeyringOpKind
	Arg       []byte // install: the AES key; use, remove: the fingerprint (ASCII)
	IssuedAt  time.Time
	Nonce     [16]byte
	Signer    PublicKey
	Signature []byte // Ed25519 by Signer over SigningBytes, 64 bytes
}

// NewKeyringOp builds an unsigned op with a random nonce from rand, checking every field.
func NewKeyringOp(cluster ClusterID, op KeyringOpKind, arg []byte, issuedAt time.Time, rand io.Reader) (*KeyringOp, error) {
	o := &KeyringOp{ClusterID: cluster, Op: op, Arg: append([]byte(nil), arg...), IssuedAt: issuedAt.UTC()}
	if _, err := io.ReadFull(rand, o.Nonce[:]); err != nil {
		return nil, fmt.Errorf("identity: keyring op nonce: %w", err)
	}
	if err := o.validateFields(false); err != nil {
		return nil, err
	}
	return o, nil
}

// validateFields checks everything but the signature (and the signer when signed is false).
// Errors name the field.
func (o *KeyringOp) validateFields(signed bool) error {
	if o.ClusterID.IsZero() {
		return invalidf("keyring_op.cluster_id", "zero")
	}
	switch o.Op {
	case KeyringInstall:
		if l := len(o.Arg); l != 16 && l != 24 && l != 32 {
			return invalidf("keyring_op.key", "%d bytes, want 16, 24 or 32 (an AES key)", l)
		}
	case KeyringUse, KeyringRemove:
		if !isFingerprint(o.Arg) {
			return invalidf("keyring_op.fingerprint", "%.40q is not %d lowercase hex characters", o.Arg, keyringFingerprintLen)
		}
	default:
		return invalidf("keyring_op.op", "unknown op %d", uint8(o.Op))
	}
	if o.IssuedAt.IsZero() || !timeRepresentable(o.IssuedAt) {
		return invalidf("keyring_op.issued_at", "zero or outside the representable range")
	}
	if signed && o.Signer.IsZero() {
		return invalidf("keyring_op.signer", "zero key")
	}
	return nil
}

func isFingerprint(b []byte) bool {
	if len(b) != keyringFingerprintLen {
		return false
	}
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Sign sets Signer to k's public key and signs.
func (o *KeyringOp) Sign(k PrivateKey) (err error) {
	o.Signature, err = signOp(k, "keyring_op.signer", &o.Signer, o.validateFields, o.SigningBytes)
	return err
}

func (o *KeyringOp) encodeBody(e *encoder) {
	e.u8(keyringOpVersion)
	e.raw(o.ClusterID[:])
	e.u8(uint8(o.Op))
	e.bytes(o.Arg)
	e.time(o.IssuedAt)
	e.raw(o.Nonce[:])
	e.key(o.Signer)
}

// SigningBytes returns "vigil/keyring-op/v1\x00" followed by the canonical encoding without
// the signature: what the operator signs.
func (o *KeyringOp) SigningBytes() []byte {
	return opSigningBytes(keyringOpDomain, MaxKeyringOpSize, o.encodeBody)
}

// Encode returns the canonical encoding: body, then the 64-byte signature (raw).
func (o *KeyringOp) Encode() []byte { return opEncode(MaxKeyringOpSize, o.encodeBody, o.Signature) }

// DecodeKeyringOp decodes strictly: at most MaxKeyringOpSize bytes, known version and op, an
// argument of at most MaxKeyringArg bytes, valid fields, no trailing bytes. It does not check
// the signature (see Verify).
func DecodeKeyringOp(b []byte) (*KeyringOp, error) {
	o := &KeyringOp{}
	sig, err := decodeOp(b, "keyring op", MaxKeyringOpSize, keyringOpVersion, func(d *decoder) {
		copy(o.ClusterID[:], d.take(16))
		o.Op = KeyringOpKind(d.u8())
		o.Arg = d.bytes("arg", MaxKeyringArg)
		o.IssuedAt = d.time()
		copy(o.Nonce[:], d.take(16))
		o.Signer = d.key()
	}, o.validateFields)
	if err != nil {
		return nil, err
	}
	o.Signature = sig
	return o, nil
}

// Verify checks the fields and the signature, independently of any registry state: a missing
// signature is ErrUnsigned, a wrong one ErrBadSignature. Pure; safe from many goroutines.
func (o *KeyringOp) Verify() error {
	return verifyOp("keyring op", o.Signer, o.Signature, o.validateFields, o.SigningBytes)
}

// CheckKeyringOp checks a verified op against the registry at now (the checking node's own
// clock: keyring ops are not replicated): the cluster (ErrWrongCluster), the issued-at window
// of the registry's Limits (ErrStale, ErrFromFuture) and that the signer is a current operator
// (ErrUnauthorized). It does not remember the nonce: the caller does (see KeyringOp).
func (r *Registry) CheckKeyringOp(o *KeyringOp, now time.Time) error {
	_, err := r.checkOperatorOp("keyring op", o.ClusterID, o.IssuedAt, o.Signer, now)
	return err
}

// ReplayKey is what a receiver remembers to refuse a replay: the nonce, and the issued-at time
// that bounds how long it must be remembered.
func (o *KeyringOp) ReplayKey() (nonce [16]byte, issuedAt time.Time) { return o.Nonce, o.IssuedAt }
