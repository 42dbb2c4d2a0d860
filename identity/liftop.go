package identity

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"time"
)

// liftOpVersion is the first byte of every encoded LiftOp.
const liftOpVersion = 1

// liftOpDomain separates lift-op signatures from commands, signals and keyring ops: an
// operator's signature over a LiftOp is worthless as anything else, and the other way round.
const liftOpDomain = "vigil/lift/v1\x00"

// MaxLiftOpSize bounds one encoded LiftOp, signature included: version, cluster, the agent's
// name and the reason (each a length varint and the bytes), issued-at, nonce, signer, signature.
const MaxLiftOpSize = 1 + 16 + (1 + MaxNameLen) + (2 + MaxReasonLen) + 8 + 16 + ed25519.PublicKeySize + ed25519.SignatureSize

// LiftOp is an operator-signed lift of an agent's throttle or quarantine on every node. The
// node an operator calls lifts and forwards the same bytes to every other admitted node; each
// verifies the operator's signature itself (Verify, then Registry.CheckLiftOp) before lifting:
// a node that relays a lift cannot forge, alter or replay one.
//
// Replays: IssuedAt bounds the op to the registry's command window; within the window each
// receiver remembers Nonce (lifts do not go through Raft).
type LiftOp struct {
	ClusterID ClusterID
	Agent     string // the agent's name in the registry
	Reason    string // why the lift is safe; recorded with the lift on every node
	IssuedAt  time.Time
	Nonce     [16]byte
	Signer    PublicKey
	Signature []byte // Ed25519 by Signer over SigningBytes, 64 bytes
}

// NewLiftOp builds an unsigned lift with a random nonce from rand, checking every field.
func NewLiftOp(cluster ClusterID, agent, reason string, issuedAt time.Time, rand io.Reader) (*LiftOp, error) {
	o := &LiftOp{ClusterID: cluster, Agent: agent, Reason: reason, IssuedAt: issuedAt.UTC()}
	if _, err := io.ReadFull(rand, o.Nonce[:]); err != nil {
		return nil, fmt.Errorf("identity: lift op nonce: %w", err)
	}
	if err := o.validateFields(false); err != nil {
		return nil, err
	}
	return o, nil
}

// validateFields checks everything but the signature (and the signer when signed is false).
// Errors name the field.
func (o *LiftOp) validateFields(signed bool) error {
	if o.ClusterID.IsZero() {
		return invalidf("lift_op.cluster_id", "zero")
	}
	if err := ValidateName(o.Agent); err != nil {
		return invalidf("lift_op.agent", "%v", err)
	}
	if o.Reason == "" {
		return invalidf("lift_op.reason", "required")
	}
	if err := validateText("lift_op.reason", o.Reason, MaxReasonLen); err != nil {
		return err
	}
	if o.IssuedAt.IsZero() || !timeRepresentable(o.IssuedAt) {
		return invalidf("lift_op.issued_at", "zero or outside the representable range")
	}
	if signed && o.Signer.IsZero() {
		return invalidf("lift_op.signer", "zero key")
	}
	return nil
}

// Sign sets Signer to k's public key and signs.
func (o *LiftOp) Sign(k PrivateKey) (err error) {
	o.Signature, err = signOp(k, "lift_op.signer", &o.Signer, o.validateFields, o.SigningBytes)
	return err
}

func (o *LiftOp) encodeBody(e *encoder) {
	e.u8(liftOpVersion)
	e.raw(o.ClusterID[:])
	e.str(o.Agent)
	e.str(o.Reason)
	e.time(o.IssuedAt)
	e.raw(o.Nonce[:])
	e.key(o.Signer)
}

// SigningBytes returns "vigil/lift/v1\x00" followed by the canonical encoding without the
// signature: what the operator signs.
func (o *LiftOp) SigningBytes() []byte {
	return opSigningBytes(liftOpDomain, MaxLiftOpSize, o.encodeBody)
}

// Encode returns the canonical encoding: body, then the 64-byte signature (raw).
func (o *LiftOp) Encode() []byte { return opEncode(MaxLiftOpSize, o.encodeBody, o.Signature) }

// DecodeLiftOp decodes strictly: at most MaxLiftOpSize bytes, known version, a name of at most
// MaxNameLen and a reason of at most MaxReasonLen bytes of UTF-8, valid fields, no trailing
// bytes. It does not check the signature (see Verify).
func DecodeLiftOp(b []byte) (*LiftOp, error) {
	o := &LiftOp{}
	sig, err := decodeOp(b, "lift op", MaxLiftOpSize, liftOpVersion, func(d *decoder) {
		copy(o.ClusterID[:], d.take(16))
		o.Agent = d.str("agent", MaxNameLen)
		o.Reason = d.str("reason", MaxReasonLen)
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
func (o *LiftOp) Verify() error {
	return verifyOp("lift op", o.Signer, o.Signature, o.validateFields, o.SigningBytes)
}

// CheckLiftOp checks a verified lift against the registry at now (the checking node's own
// clock): the cluster (ErrWrongCluster), the issued-at window (ErrStale, ErrFromFuture) and
// that the signer is a current operator (ErrUnauthorized). It returns the operator's name, the
// lift's "by" on every node. It does not remember the nonce: the caller does (see LiftOp).
func (r *Registry) CheckLiftOp(o *LiftOp, now time.Time) (operator string, err error) {
	return r.checkOperatorOp("lift op", o.ClusterID, o.IssuedAt, o.Signer, now)
}

// ReplayKey is what a receiver remembers to refuse a replay: the nonce, and the issued-at time
// that bounds how long it must be remembered.
func (o *LiftOp) ReplayKey() (nonce [16]byte, issuedAt time.Time) { return o.Nonce, o.IssuedAt }
