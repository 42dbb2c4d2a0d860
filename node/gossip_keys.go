package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/vigil-mesh/vigil/gossip"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin"
)

// KeyringProtocol carries keyring operations between admitted nodes: an operator's
// ChangeGossipKey (or GossipKeys) on one node is applied (or answered) by every other one.
// Only streams from admitted nodes are served, and a change is applied only when it carries an
// operator's signature that the receiver verifies itself (identity.KeyringOp): the node that
// relays it cannot forge, alter or replay one.
//
// Request: kind (1 byte: 0 list, 1 change), a 2-byte big-endian length, then nothing (list) or
// the operator-signed identity.KeyringOp (change), at most identity.MaxKeyringOpSize bytes.
// Response: status (1 byte: 0 ok, 1 refused), a 2-byte big-endian length, then the keys'
// fingerprints comma-separated (primary first) or the error text, at most maxKeyringResponse
// bytes. Listing is read-only and unsigned.
const KeyringProtocol protocol.ID = "/vigil/node/keyring/2"

const (
	keyringFrameList   byte = 0
	keyringFrameChange byte = 1

	maxKeyringResponse = 4 << 10
)

// keyringProtocol is KeyringProtocol's frame limits for serveOps and askNode.
var keyringProtocol = opProtocol{id: KeyringProtocol, what: "keyring", maxReq: identity.MaxKeyringOpSize, maxReply: maxKeyringResponse, refused: 1}

// Keyring nonces (gossipLayer.keyringNonces, an opNonceCache) are kept in memory and in the
// node's state store, on disk before the op is applied, until the op's window ends: an op is
// applied once per node, restarts included, so an older step cannot be replayed after a newer
// one (use K1 after use K2) to undo it.

// acceptKeyringOp decodes an operator-signed keyring op and checks it here (acceptOp).
func (l *gossipLayer) acceptKeyringOp(b []byte) (*identity.KeyringOp, error) {
	op, _, err := acceptOp(l, &l.keyringNonces, b, identity.DecodeKeyringOp,
		func(r *identity.Registry, op *identity.KeyringOp, now time.Time) (string, error) {
			return "", r.CheckKeyringOp(op, now)
		})
	return op, err
}

// applyKeyring applies one verified operation to this node's keyring (and its file).
func (l *gossipLayer) applyKeyring(op *identity.KeyringOp) error {
	path := l.n.cfg.Gossip.Keyring
	switch op.Op {
	case identity.KeyringInstall:
		return l.mesh.InstallKey(op.Arg, path)
	case identity.KeyringUse:
		return l.mesh.UseKey(string(op.Arg), path)
	case identity.KeyringRemove:
		return l.mesh.RemoveKey(string(op.Arg), path)
	}
	return fmt.Errorf("node: keyring: unknown op %s", op.Op)
}

// listKeyring is this node's answer to a list: its keys, or why it has none.
func (l *gossipLayer) listKeyring() error {
	if l.mesh.Keyring() == nil {
		return gossip.ErrNoKeyring
	}
	return nil
}

// serveKeyring answers KeyringProtocol streams from admitted nodes.
func (l *gossipLayer) serveKeyring() {
	l.serveOps(keyringProtocol, func(from identity.ID, kind byte, body []byte) (byte, []byte) {
		switch {
		case kind != keyringFrameList && kind != keyringFrameChange:
			return keyringReply(fmt.Errorf("node: keyring: unknown request kind %d", kind), nil)
		case kind == keyringFrameList && len(body) != 0:
			return keyringReply(fmt.Errorf("node: keyring: list takes no body, got %d bytes", len(body)), nil)
		case kind == keyringFrameList:
			return keyringReply(l.listKeyring(), l.mesh.KeyFingerprints())
		}
		op, err := l.acceptKeyringOp(body)
		if err != nil {
			l.n.log.Warn("node: gossip keyring change from a peer refused", "from", from.String(), "err", err)
			return keyringReply(err, nil)
		}
		err = l.applyKeyring(op)
		l.n.log.Info("node: gossip keyring change from a peer", "op", op.Op.String(), "signer", op.Signer.ID().String(), "from", from.String(), "err", err)
		return keyringReply(err, l.mesh.KeyFingerprints())
	})
}

// keyringReply is a KeyringProtocol answer: 0 and the fingerprints, or 1 and the error text.
func keyringReply(err error, fps []string) (byte, []byte) {
	if err != nil {
		return 1, []byte(err.Error())
	}
	return 0, []byte(strings.Join(fps, ","))
}

// askKeyring sends one operation to node nd and returns its keys after it.
func (l *gossipLayer) askKeyring(ctx context.Context, nd identity.Node, kind byte, body []byte) ([]string, error) {
	status, answer, err := l.askNode(ctx, keyringProtocol, nd, opFrame(kind, body))
	switch {
	case err != nil:
		return nil, err
	case status != 0:
		return nil, errors.New(string(answer))
	case len(answer) == 0:
		return nil, nil
	}
	return strings.Split(string(answer), ","), nil
}

// fanOut returns self (this node's result) followed by the answers of every other admitted node
// (asked in parallel), sorted by node ID. An installed key travels only inside libp2p's
// encrypted, mutually authenticated connection to a node the registry admits.
func (l *gossipLayer) fanOut(ctx context.Context, self admin.KeyringResult, kind byte, body []byte) []admin.KeyringResult {
	return append([]admin.KeyringResult{self}, askOthers(ctx, l, func(ctx context.Context, nd identity.Node) admin.KeyringResult {
		fps, err := l.askKeyring(ctx, nd, kind, body)
		return admin.KeyringResult{Node: nd.ID, Err: err, Fingerprints: fps}
	})...)
}

// MemberStates is the mesh's view of every member (admin.GossipBackend).
func (l *gossipLayer) MemberStates() map[identity.ID]string { return l.mesh.MemberStates() }

// KeyringList asks every admitted node for its keys (admin.GossipBackend).
func (l *gossipLayer) KeyringList(ctx context.Context) []admin.KeyringResult {
	self := admin.KeyringResult{Node: l.n.key.ID(), Err: l.listKeyring(), Fingerprints: l.mesh.KeyFingerprints()}
	return l.fanOut(ctx, self, keyringFrameList, nil)
}

// KeyringChange verifies the operator-signed op ch.Signed (see acceptKeyringOp), applies it
// here (file included), then sends the same signed bytes to every other admitted node, which
// verifies them itself (admin.GossipBackend). A local refusal is returned and nothing is fanned
// out. ch.Op, ch.Key and ch.Fingerprint must say what the signed op says.
func (l *gossipLayer) KeyringChange(ctx context.Context, ch admin.KeyringChange) ([]admin.KeyringResult, error) {
	if len(ch.Signed) > identity.MaxKeyringOpSize {
		return nil, fmt.Errorf("node: keyring: signed op of %d bytes, max %d", len(ch.Signed), identity.MaxKeyringOpSize)
	}
	if dec, err := identity.DecodeKeyringOp(ch.Signed); err == nil { // before its nonce is spent
		if err := ch.Matches(dec); err != nil {
			return nil, err
		}
	}
	op, err := l.acceptKeyringOp(ch.Signed)
	if err != nil {
		return nil, err
	}
	if err := l.applyKeyring(op); err != nil {
		return nil, err
	}
	l.n.log.Info("node: gossip keyring changed by an operator", "op", op.Op.String(), "signer", op.Signer.ID().String())
	return l.fanOut(ctx, admin.KeyringResult{Node: l.n.key.ID(), Fingerprints: l.mesh.KeyFingerprints()}, keyringFrameChange, ch.Signed), nil
}

var _ admin.GossipBackend = (*gossipLayer)(nil)
