package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

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
	keyringTimeout     = 10 * time.Second
	// maxKeyringNonces bounds the nonces remembered within the command window (10 minutes by
	// default). Only operator-signed ops that verified are remembered, so a relaying node
	// cannot fill it; an operator would need more than this many changes in one window.
	maxKeyringNonces = 1024
)

// keyringNonceCache remembers the nonce of every keyring op accepted here until it would be
// stale anyway (issued-at + MaxCommandAge). In memory only: after a restart an op still inside
// its window could be applied once more. That is acceptable because keyring ops are
// idempotent-ish: installing a key twice, or making the primary key primary again, changes
// nothing; only an older op replayed after a later one (use K1 after use K2) could undo a
// step, and only within the window and on a node that restarted since.
type keyringNonceCache struct {
	mu   sync.Mutex
	seen map[[16]byte]time.Time // nonce → when it expires
}

// remember records nonce until exp, or refuses it as a replay (identity.ErrReplay). When the
// cache is full of unexpired nonces it refuses rather than forget one.
func (c *keyringNonceCache) remember(nonce [16]byte, exp, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.seen[nonce]; ok && !e.Before(now) {
		return fmt.Errorf("node: keyring: op with nonce %x already applied here: %w", nonce, identity.ErrReplay)
	}
	if c.seen == nil {
		c.seen = map[[16]byte]time.Time{}
	}
	if len(c.seen) >= maxKeyringNonces {
		for n, e := range c.seen {
			if e.Before(now) {
				delete(c.seen, n)
			}
		}
		if len(c.seen) >= maxKeyringNonces {
			return fmt.Errorf("node: keyring: %d ops already applied within the command window; wait for the window to pass", len(c.seen))
		}
	}
	c.seen[nonce] = exp
	return nil
}

// acceptKeyringOp decodes an operator-signed keyring op and checks it here: the signature, the
// signer an active operator in this node's registry, the cluster, the issued-at window (this
// node's clock) and the nonce (not applied here before). Only then is the nonce remembered.
func (l *gossipLayer) acceptKeyringOp(b []byte) (*identity.KeyringOp, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("node: keyring: %w: the change carries no operator signature (sign it with an operator key)", identity.ErrUnsigned)
	}
	op, err := identity.DecodeKeyringOp(b)
	if err != nil {
		return nil, err
	}
	if err := op.Verify(); err != nil {
		return nil, err
	}
	now := time.Now()
	var limits identity.Limits
	l.n.consensusNode().Read(func(r *identity.Registry) {
		err = r.CheckKeyringOp(op, now)
		limits = r.Limits()
	})
	if err != nil {
		return nil, err
	}
	if err := l.keyringNonces.remember(op.Nonce, op.IssuedAt.Add(limits.MaxCommandAge), now); err != nil {
		return nil, err
	}
	return op, nil
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
	l.n.host.SetStreamHandler(KeyringProtocol, func(s network.Stream) {
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(keyringTimeout))
		id, err := identity.IDFromPeer(s.Conn().RemotePeer())
		if err != nil || !l.n.admittedNode(id) {
			l.n.log.Warn("node: keyring stream refused: not an admitted node", "peer", s.Conn().RemotePeer().String())
			_ = s.Reset()
			return
		}
		var hdr [3]byte
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			_ = s.Reset()
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[1:]))
		switch {
		case hdr[0] != keyringFrameList && hdr[0] != keyringFrameChange:
			writeKeyringReply(s, fmt.Errorf("node: keyring: unknown request kind %d", hdr[0]), nil)
			return
		case hdr[0] == keyringFrameList && n != 0:
			writeKeyringReply(s, fmt.Errorf("node: keyring: list takes no body, got %d bytes", n), nil)
			return
		case n > identity.MaxKeyringOpSize:
			writeKeyringReply(s, fmt.Errorf("node: keyring: signed op of %d bytes, max %d", n, identity.MaxKeyringOpSize), nil)
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(s, body); err != nil {
			_ = s.Reset()
			return
		}
		if hdr[0] == keyringFrameList {
			writeKeyringReply(s, l.listKeyring(), l.mesh.KeyFingerprints())
			return
		}
		op, err := l.acceptKeyringOp(body)
		if err != nil {
			l.n.log.Warn("node: gossip keyring change from a peer refused", "from", id.String(), "err", err)
			writeKeyringReply(s, err, nil)
			return
		}
		err = l.applyKeyring(op)
		l.n.log.Info("node: gossip keyring change from a peer", "op", op.Op.String(), "signer", op.Signer.ID().String(), "from", id.String(), "err", err)
		writeKeyringReply(s, err, l.mesh.KeyFingerprints())
	})
}

func writeKeyringReply(s network.Stream, err error, fps []string) {
	status, body := byte(0), strings.Join(fps, ",")
	if err != nil {
		status, body = 1, err.Error()
	}
	if len(body) > maxKeyringResponse {
		body = body[:maxKeyringResponse]
	}
	buf := make([]byte, 3, 3+len(body))
	buf[0] = status
	binary.BigEndian.PutUint16(buf[1:], uint16(len(body)))
	_, _ = s.Write(append(buf, body...))
}

// askKeyring sends one operation to node p and returns its keys after it.
func (l *gossipLayer) askKeyring(ctx context.Context, p peer.ID, addrs []string, kind byte, body []byte) ([]string, error) {
	var mas []ma.Multiaddr
	for _, a := range addrs {
		if m, err := ma.NewMultiaddr(a); err == nil {
			mas = append(mas, m)
		}
	}
	l.n.host.Peerstore().AddAddrs(p, mas, peerstore.TempAddrTTL)
	ctx, cancel := context.WithTimeout(ctx, keyringTimeout)
	defer cancel()
	s, err := l.n.host.NewStream(ctx, p, KeyringProtocol)
	if err != nil {
		return nil, fmt.Errorf("node: keyring: open stream: %w", err)
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if _, err := s.Write(keyringFrame(kind, body)); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("node: keyring: send: %w", err)
	}
	var hdr [3]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("node: keyring: no answer: %w", err)
	}
	n := binary.BigEndian.Uint16(hdr[1:])
	if n > maxKeyringResponse {
		_ = s.Reset()
		return nil, fmt.Errorf("node: keyring: answer of %d bytes, max %d", n, maxKeyringResponse)
	}
	answer := make([]byte, n)
	if _, err := io.ReadFull(s, answer); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("node: keyring: answer: %w", err)
	}
	if hdr[0] != 0 {
		return nil, errors.New(string(answer))
	}
	if len(answer) == 0 {
		return nil, nil
	}
	return strings.Split(string(answer), ","), nil
}

// keyringFrame is one KeyringProtocol request.
func keyringFrame(kind byte, body []byte) []byte {
	b := make([]byte, 3, 3+len(body))
	b[0] = kind
	binary.BigEndian.PutUint16(b[1:], uint16(len(body)))
	return append(b, body...)
}

// fanOut returns self (this node's result) followed by the answers of every other admitted node
// (asked in parallel), sorted by node ID. An installed key travels only inside libp2p's
// encrypted, mutually authenticated connection to a node the registry admits.
func (l *gossipLayer) fanOut(ctx context.Context, self admin.KeyringResult, kind byte, body []byte) []admin.KeyringResult {
	var nodes []identity.Node
	l.n.consensusNode().Read(func(r *identity.Registry) { nodes = r.Nodes() })
	out := []admin.KeyringResult{self}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, nd := range nodes {
		if nd.ID == l.n.key.ID() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fps, err := l.askKeyring(ctx, nd.ID.Peer(), nd.Addrs, kind, body)
			mu.Lock()
			out = append(out, admin.KeyringResult{Node: nd.ID, Err: err, Fingerprints: fps})
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.SortFunc(out[1:], func(a, b admin.KeyringResult) int { return strings.Compare(a.Node.String(), b.Node.String()) })
	return out
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
