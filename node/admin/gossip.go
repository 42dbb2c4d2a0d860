package admin

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
)

// GossipBackend is what the admin server needs from the node's gossip mesh (Config.Gossip).
type GossipBackend interface {
	// MemberStates is this node's memberlist view by node ID ("alive", "dead", ...).
	MemberStates() map[identity.ID]string
	// KeyringList asks this node and every other admitted node for its keyring.
	KeyringList(ctx context.Context) []KeyringResult
	// KeyringChange applies ch on this node (persisting the keyring file), then on every other
	// admitted node. An error means this node refused or failed it, and nothing was fanned out.
	KeyringChange(ctx context.Context, ch KeyringChange) ([]KeyringResult, error)
	// LiftAll verifies the operator-signed identity.LiftOp signed, lifts the agent's throttle
	// or quarantine on this node (as the signing operator), then sends the same bytes to every
	// other admitted node, which verifies and lifts itself. It returns one result per node, this
	// node first. An error means this node refused the op, and nothing was fanned out.
	LiftAll(ctx context.Context, signed []byte) ([]LiftResult, error)
}

// Keyring operations (KeyringChange.Op).
const (
	KeyringInstall = "install"
	KeyringUse     = "use"
	KeyringRemove  = "remove"
)

// KeyringChange is one keyring operation: install Key, or use / remove the key whose
// fingerprint (gossip.KeyFingerprint) is Fingerprint.
//
// Signed is the same operation encoded and signed by an operator (identity.KeyringOp.Encode):
// the backend verifies it and forwards exactly these bytes, so every node checks the
// operator's signature itself.
type KeyringChange struct {
	Op          string
	Key         []byte
	Fingerprint string
	Signed      []byte
}

// Matches reports whether the signed op says what Op, Key and Fingerprint say (an error naming
// the field that differs otherwise).
func (ch KeyringChange) Matches(op *identity.KeyringOp) error {
	if op.Op.String() != ch.Op {
		return errf(identity.ErrInvalid, "signed_op: op %s, the request says %.32q", op.Op, ch.Op)
	}
	arg := ch.Key
	if op.Op != identity.KeyringInstall {
		arg = []byte(ch.Fingerprint)
	}
	if !bytes.Equal(arg, op.Arg) {
		return errf(identity.ErrInvalid, "signed_op: its key or fingerprint is not the request's")
	}
	return nil
}

// KeyringResult is one node's answer: its keys after the operation (fingerprints, primary
// first), or why it failed.
type KeyringResult struct {
	Node         identity.ID
	Err          error
	Fingerprints []string
}

// fingerprintLen is the length of gossip.KeyFingerprint's hex output.
const fingerprintLen = 16

var errNoGossip = errors.New("gossip is not enabled on this node (gossip.enabled)")

func (v *service) nodeNames() map[identity.ID]string {
	names := map[identity.ID]string{}
	v.s.b.Read(func(r *identity.Registry) {
		for _, n := range r.Nodes() {
			names[n.ID] = n.Name
		}
	})
	return names
}

func nodeResults(rs []KeyringResult, names map[identity.ID]string) []*adminv1.GossipNodeResult {
	out := make([]*adminv1.GossipNodeResult, 0, len(rs))
	for _, r := range rs {
		pr := &adminv1.GossipNodeResult{NodeId: r.Node.String(), NodeName: names[r.Node], Ok: r.Err == nil, Fingerprints: r.Fingerprints}
		if r.Err != nil {
			pr.Error = r.Err.Error()
		}
		out = append(out, pr)
	}
	return out
}

func (v *service) GossipKeys(ctx context.Context, _ *connect.Request[adminv1.GossipKeysRequest]) (*connect.Response[adminv1.GossipKeysResponse], error) {
	g := v.s.cfg.Gossip
	if g == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errNoGossip)
	}
	rs := g.KeyringList(ctx)
	out := &adminv1.GossipKeysResponse{Nodes: nodeResults(rs, v.nodeNames()), TotalNodes: uint32(len(rs))}
	byFP := map[string]*adminv1.GossipKey{}
	for _, r := range rs {
		for i, fp := range r.Fingerprints {
			k := byFP[fp]
			if k == nil {
				k = &adminv1.GossipKey{Fingerprint: fp}
				byFP[fp] = k
				out.Keys = append(out.Keys, k)
			}
			k.Nodes++
			if i == 0 {
				k.PrimaryOn++
			}
		}
	}
	slices.SortFunc(out.Keys, func(a, b *adminv1.GossipKey) int { return strings.Compare(a.Fingerprint, b.Fingerprint) })
	return connect.NewResponse(out), nil
}

func (v *service) ChangeGossipKey(ctx context.Context, req *connect.Request[adminv1.ChangeGossipKeyRequest]) (*connect.Response[adminv1.ChangeGossipKeyResponse], error) {
	m := req.Msg
	ch := KeyringChange{Op: m.Op}
	switch m.Op {
	case KeyringInstall:
		if l := len(m.Key); l != 16 && l != 24 && l != 32 {
			return nil, invalidArg(identity.ErrInvalid, "key", "%d bytes, want 16, 24 or 32 (an AES key)", l)
		}
		if m.Fingerprint != "" {
			return nil, invalidArg(identity.ErrInvalid, "fingerprint", "install takes key, not fingerprint")
		}
		ch.Key = m.Key
	case KeyringUse, KeyringRemove:
		if len(m.Key) != 0 {
			return nil, invalidArg(identity.ErrInvalid, "key", "%s takes fingerprint, not key", m.Op)
		}
		if len(m.Fingerprint) != fingerprintLen || !isLowerHex(m.Fingerprint) {
			return nil, invalidArg(identity.ErrInvalid, "fingerprint", "%.40q is not %d lowercase hex characters", m.Fingerprint, fingerprintLen)
		}
		ch.Fingerprint = m.Fingerprint
	default:
		return nil, invalidArg(identity.ErrInvalid, "op", "%.32q is not one of install, use, remove", m.Op)
	}
	if len(m.SignedOp) == 0 {
		return nil, invalidArg(identity.ErrUnsigned, "signed_op", "missing: a keyring change must be signed with an operator key (vigil gossip keys … --key)")
	}
	if len(m.SignedOp) > identity.MaxKeyringOpSize {
		return nil, invalidArg(identity.ErrTooLarge, "signed_op", "%d bytes, max %d", len(m.SignedOp), identity.MaxKeyringOpSize)
	}
	op, err := identity.DecodeKeyringOp(m.SignedOp)
	if err != nil {
		return nil, toConnect(err)
	}
	ch.Signed = m.SignedOp
	if err := ch.Matches(op); err != nil {
		return nil, toConnect(err)
	}
	g := v.s.cfg.Gossip
	if g == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errNoGossip)
	}
	rs, err := g.KeyringChange(ctx, ch)
	if err != nil {
		if identity.CodeOf(err) != "unknown" { // refused: signature, signer, window, replay
			return nil, toConnect(err)
		}
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	out := &adminv1.ChangeGossipKeyResponse{Nodes: nodeResults(rs, v.nodeNames())}
	for _, r := range rs {
		if r.Err != nil {
			out.Failed++
		}
	}
	return connect.NewResponse(out), nil
}

func isLowerHex(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// gossipState is the GOSSIP column of ListMembers for node id.
func gossipState(states map[identity.ID]string, off bool, id identity.ID) string {
	if off {
		return "off"
	}
	return states[id]
}
