package identity

import (
	"crypto/ed25519"
	"fmt"
	"time"
)

// Operator ops (KeyringOp, LiftOp) are operator-signed instructions that do not go through Raft:
// the node an operator calls applies one and forwards the same bytes to every other node, and
// each node checks it here against its own registry and clock. They share the signature check
// and the registry check; each has its own signing domain, type and strict decoder.

// verifyOpSignature checks an operator op's signature over msg: a missing one is ErrUnsigned,
// a wrong one ErrBadSignature. what names the op in errors ("keyring op").
func verifyOpSignature(what string, signer PublicKey, sig, msg []byte) error {
	if len(sig) != ed25519.SignatureSize {
		return errf(ErrBadSignature, "%s: signature by %s is %d bytes, not %d", what, signer.ID(), len(sig), ed25519.SignatureSize)
	}
	if !signer.Verify(msg, sig) {
		return errf(ErrBadSignature, "%s: signature by %s does not verify", what, signer.ID())
	}
	return nil
}

// checkOperatorOp checks a verified operator op against the registry at now: the cluster
// (ErrWrongCluster), the issued-at window of the registry's Limits (ErrStale, ErrFromFuture)
// and that the signer is a current operator (ErrUnauthorized). It returns the operator's name.
func (r *Registry) checkOperatorOp(what string, cluster ClusterID, issuedAt time.Time, signer PublicKey, now time.Time) (string, error) {
	if !r.initialised {
		return "", errf(ErrNoGenesis, "%s before genesis", what)
	}
	if cluster != r.cluster {
		return "", errf(ErrWrongCluster, "%s for cluster %s, this is %s", what, cluster, r.cluster)
	}
	if issuedAt.Before(now.Add(-r.limits.MaxCommandAge)) {
		return "", errf(ErrStale, "%s issued at %s, older than %s before %s", what, issuedAt.UTC().Format(time.RFC3339Nano), r.limits.MaxCommandAge, now.UTC().Format(time.RFC3339Nano))
	}
	if issuedAt.After(now.Add(r.limits.MaxClockSkew)) {
		return "", errf(ErrFromFuture, "%s issued at %s, more than %s after %s", what, issuedAt.UTC().Format(time.RFC3339Nano), r.limits.MaxClockSkew, now.UTC().Format(time.RFC3339Nano))
	}
	if role, st, ok := r.Principal(signer.ID(), now); !ok || role != RoleOperator || st != StatusActive {
		return "", errf(ErrUnauthorized, "%s signed by %s, not an operator of this cluster", what, signer.ID())
	}
	return r.keys[signer].name, nil
}

// An operator op's wire form is its body (starting with a version byte and ending with the
// signer's key), then the raw 64-byte signature; what is signed is the op's domain followed by
// the body. The helpers below are that envelope; each op supplies its body and field checks.

// signOp validates the op (fields and signer, after *signer is set to k's public key) and
// signs msg(). field names the op's signer field in errors ("lift_op.signer").
func signOp(k PrivateKey, field string, signer *PublicKey, validate func(signed bool) error, msg func() []byte) ([]byte, error) {
	if k.IsZero() {
		return nil, invalidf(field, "no key")
	}
	*signer = k.Public()
	if err := validate(true); err != nil {
		return nil, err
	}
	return k.Sign(msg()), nil
}

// opSigningBytes is domain followed by the body.
func opSigningBytes(domain string, max int, body func(*encoder)) []byte {
	e := encoder{b: make([]byte, 0, len(domain)+max)}
	e.raw([]byte(domain))
	body(&e)
	return e.b
}

// opEncode is the body followed by the raw signature (zeros when unsigned).
func opEncode(max int, body func(*encoder), sig []byte) []byte {
	e := encoder{b: make([]byte, 0, max)}
	body(&e)
	var raw [ed25519.SignatureSize]byte
	copy(raw[:], sig)
	e.raw(raw[:])
	return e.b
}

// decodeOp decodes b strictly: at most max bytes, the version byte, fields (which reads the
// body up to and including the signer), the signature, no trailing bytes, then validate(true);
// every failure is ErrMalformed. It returns the signature.
func decodeOp(b []byte, what string, max int, version uint8, fields func(*decoder), validate func(signed bool) error) ([]byte, error) {
	if len(b) > max {
		return nil, tooLargef("%s: %d bytes, max %d", what, len(b), max)
	}
	d := decoder{b: b, ctx: what}
	if v := d.u8(); d.err == nil && v != version {
		return nil, errf(ErrMalformed, "%s: unknown version %d", what, v)
	}
	fields(&d)
	sig := append([]byte(nil), d.take(ed25519.SignatureSize)...)
	if err := d.finish(); err != nil {
		return nil, err
	}
	if err := validate(true); err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrMalformed)
	}
	return sig, nil
}

// verifyOp checks an op's fields and signature independently of any registry state: a missing
// signature is ErrUnsigned, a wrong one ErrBadSignature.
func verifyOp(what string, signer PublicKey, sig []byte, validate func(signed bool) error, msg func() []byte) error {
	if len(sig) == 0 || signer.IsZero() {
		return errf(ErrUnsigned, "%s has no signature", what)
	}
	if err := validate(true); err != nil {
		return err
	}
	return verifyOpSignature(what, signer, sig, msg())
}
