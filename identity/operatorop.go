package identity

import (
	"crypto/ed25519"
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
