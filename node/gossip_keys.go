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
// Only streams from admitted nodes are served.
//
// Request: op (1 byte: 0 list, 1 install, 2 use, 3 remove), a 1-byte length, then the key
// (install) or the fingerprint (use, remove), at most 64 bytes. Response: status (1 byte: 0 ok,
// 1 refused), a 2-byte big-endian length, then the keys' fingerprints comma-separated (primary
// first) or the error text, at most maxKeyringResponse bytes.
const KeyringProtocol protocol.ID = "/vigil/node/keyring/1"

const (
	keyringOpList byte = iota
	keyringOpInstall
	keyringOpUse
	keyringOpRemove

	maxKeyringArg      = 64
	maxKeyringResponse = 4 << 10
	keyringTimeout     = 10 * time.Second
)

func keyringOpName(op byte) string {
	for name, o := range keyringOps {
		if o == op {
			return name
		}
	}
	if op == keyringOpList {
		return "list"
	}
	return fmt.Sprintf("unknown(%d)", op)
}

var keyringOps = map[string]byte{admin.KeyringInstall: keyringOpInstall, admin.KeyringUse: keyringOpUse, admin.KeyringRemove: keyringOpRemove}

// applyKeyring applies one operation to this node's keyring (and its file).
func (l *gossipLayer) applyKeyring(op byte, arg []byte) error {
	path := l.n.cfg.Gossip.Keyring
	switch op {
	case keyringOpList:
		if l.mesh.Keyring() == nil {
			return gossip.ErrNoKeyring
		}
		return nil
	case keyringOpInstall:
		return l.mesh.InstallKey(arg, path)
	case keyringOpUse:
		return l.mesh.UseKey(string(arg), path)
	case keyringOpRemove:
		return l.mesh.RemoveKey(string(arg), path)
	}
	return fmt.Errorf("node: keyring: unknown op %d", op)
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
		var hdr [2]byte
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			_ = s.Reset()
			return
		}
		if hdr[1] > maxKeyringArg {
			writeKeyringReply(s, fmt.Errorf("node: keyring: argument of %d bytes, max %d", hdr[1], maxKeyringArg), nil)
			return
		}
		arg := make([]byte, hdr[1])
		if _, err := io.ReadFull(s, arg); err != nil {
			_ = s.Reset()
			return
		}
		err = l.applyKeyring(hdr[0], arg)
		if hdr[0] != keyringOpList {
			l.n.log.Info("node: gossip keyring change from a peer", "op", keyringOpName(hdr[0]), "from", id.String(), "err", err)
		}
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
func (l *gossipLayer) askKeyring(ctx context.Context, p peer.ID, addrs []string, op byte, arg []byte) ([]string, error) {
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
	if _, err := s.Write(append([]byte{op, byte(len(arg))}, arg...)); err != nil {
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
	body := make([]byte, n)
	if _, err := io.ReadFull(s, body); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("node: keyring: answer: %w", err)
	}
	if hdr[0] != 0 {
		return nil, errors.New(string(body))
	}
	if len(body) == 0 {
		return nil, nil
	}
	return strings.Split(string(body), ","), nil
}

// fanOut returns self (this node's result) followed by the answers of every other admitted node
// (asked in parallel), sorted by node ID. An installed key travels only inside libp2p's
// encrypted, mutually authenticated connection to a node the registry admits.
func (l *gossipLayer) fanOut(ctx context.Context, self admin.KeyringResult, op byte, arg []byte) []admin.KeyringResult {
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
			fps, err := l.askKeyring(ctx, nd.ID.Peer(), nd.Addrs, op, arg)
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
	self := admin.KeyringResult{Node: l.n.key.ID(), Err: l.applyKeyring(keyringOpList, nil), Fingerprints: l.mesh.KeyFingerprints()}
	return l.fanOut(ctx, self, keyringOpList, nil)
}

// KeyringChange applies ch here (file included), then on every other admitted node
// (admin.GossipBackend). A local refusal is returned and nothing is fanned out.
func (l *gossipLayer) KeyringChange(ctx context.Context, ch admin.KeyringChange) ([]admin.KeyringResult, error) {
	op, ok := keyringOps[ch.Op]
	if !ok {
		return nil, fmt.Errorf("node: keyring: op %q is not one of install, use, remove", ch.Op)
	}
	arg := ch.Key
	if op != keyringOpInstall {
		arg = []byte(ch.Fingerprint)
	}
	if len(arg) > maxKeyringArg {
		return nil, fmt.Errorf("node: keyring: argument of %d bytes, max %d", len(arg), maxKeyringArg)
	}
	if err := l.applyKeyring(op, arg); err != nil {
		return nil, err
	}
	l.n.log.Info("node: gossip keyring changed by an operator", "op", ch.Op)
	return l.fanOut(ctx, admin.KeyringResult{Node: l.n.key.ID(), Fingerprints: l.mesh.KeyFingerprints()}, op, arg), nil
}

var _ admin.GossipBackend = (*gossipLayer)(nil)
