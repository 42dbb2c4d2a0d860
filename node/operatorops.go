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
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/alerts"
)

// Operator ops (identity.KeyringOp, identity.LiftOp) are operator-signed instructions that an
// operator gives one node, which applies each and sends the same signed bytes to every other
// admitted node over the op's own protocol (KeyringProtocol, LiftProtocol). Every node checks
// the operator's signature, the signer, the cluster, the issued-at window and the nonce itself
// (acceptOp): a node that relays an op cannot forge, alter or replay one. This file holds what
// the protocols share: the nonce cache, the frames, the server loop and the fan-out.
//
// Frames: a request is kind (1 byte), a 2-byte big-endian length, then that many bytes; an
// answer is a status (1 byte) in the same framing. Each protocol caps both lengths.

// opTimeout bounds one operator-op stream, request and answer.
const opTimeout = 10 * time.Second

// maxOpNonces bounds the nonces remembered within the command window (10 minutes by default)
// per kind of op. Only operator-signed ops that verified are remembered, so a relaying node
// cannot fill it; an operator would need more than this many ops of one kind in one window.
const maxOpNonces = 1024

// opNonceCache remembers the nonce of every op of one kind accepted here until it would be
// stale anyway (issued-at + MaxCommandAge), in memory and, when store is set, in the node's
// state store, written to disk before the op is applied: a node restarted inside an op's window
// still refuses its replay.
type opNonceCache struct {
	what  string // "keyring", "lift": names the op in errors, and its kind in the store
	store *alerts.Store
	mu    sync.Mutex
	seen  map[[16]byte]time.Time // nonce → when it expires
}

// remember records nonce until exp, or refuses it as a replay (identity.ErrReplay). When the
// cache is full of unexpired nonces it refuses rather than forget one.
func (c *opNonceCache) remember(nonce [16]byte, exp, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.seen[nonce]; ok && !e.Before(now) {
		return fmt.Errorf("node: %s: op with nonce %x already applied here: %w", c.what, nonce, identity.ErrReplay)
	}
	if c.seen == nil {
		c.seen = map[[16]byte]time.Time{}
	}
	if len(c.seen) >= maxOpNonces {
		for n, e := range c.seen {
			if e.Before(now) {
				delete(c.seen, n)
			}
		}
		if len(c.seen) >= maxOpNonces {
			return fmt.Errorf("node: %s: %d ops already applied within the command window; wait for the window to pass", c.what, len(c.seen))
		}
	}
	if c.store != nil {
		if err := c.store.RememberNonce(c.what, nonce, exp, now); errors.Is(err, alerts.ErrNonceSeen) {
			c.seen[nonce] = exp
			return fmt.Errorf("node: %s: op with nonce %x already applied here (before a restart): %w", c.what, nonce, identity.ErrReplay)
		} else if err != nil {
			return fmt.Errorf("node: %s: cannot record the op's nonce, so it is not applied: %w", c.what, err)
		}
	}
	c.seen[nonce] = exp
	return nil
}

// operatorOp is what acceptOp needs from a decoded op.
type operatorOp interface {
	Verify() error
	ReplayKey() (nonce [16]byte, issuedAt time.Time)
}

// acceptOp decodes an operator-signed op and checks it here: the signature, then check (the
// signer an active operator in this node's registry, the cluster, the issued-at window on this
// node's clock), then the nonce (not applied here before). Only then is the nonce remembered.
// It returns the op and what check returns (the operator's name, for a lift).
func acceptOp[T operatorOp](l *gossipLayer, nonces *opNonceCache, b []byte, decode func([]byte) (T, error),
	check func(*identity.Registry, T, time.Time) (string, error)) (T, string, error) {
	var zero T
	if len(b) == 0 {
		return zero, "", fmt.Errorf("node: %s: %w: the op carries no operator signature (sign it with an operator key)", nonces.what, identity.ErrUnsigned)
	}
	op, err := decode(b)
	if err != nil {
		return zero, "", err
	}
	if err := op.Verify(); err != nil {
		return zero, "", err
	}
	now := time.Now()
	var (
		limits identity.Limits
		name   string
	)
	l.n.consensusNode().Read(func(r *identity.Registry) {
		name, err = check(r, op, now)
		limits = r.Limits()
	})
	if err != nil {
		return zero, "", err
	}
	nonce, issued := op.ReplayKey()
	if err := nonces.remember(nonce, issued.Add(limits.MaxCommandAge), now); err != nil {
		return zero, "", err
	}
	return op, name, nil
}

// opFrame is one request (kind, body) or answer (status, body).
func opFrame(kind byte, body []byte) []byte {
	b := make([]byte, 3, 3+len(body))
	b[0] = kind
	binary.BigEndian.PutUint16(b[1:], uint16(len(body)))
	return append(b, body...)
}

// errFrameTooLarge is readFrame's answer to a length over its cap; the body is not read.
type errFrameTooLarge struct{ n, max int }

func (e errFrameTooLarge) Error() string { return fmt.Sprintf("%d bytes, max %d", e.n, e.max) }

// readFrame reads one frame of at most max body bytes.
func readFrame(r io.Reader, max int) (byte, []byte, error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[1:]))
	if n > max {
		return hdr[0], nil, errFrameTooLarge{n, max}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// writeAnswer writes one answer, its body cut at max bytes.
func writeAnswer(s network.Stream, status byte, body []byte, max int) {
	_, _ = s.Write(opFrame(status, body[:min(len(body), max)]))
}

// opProtocol describes one operator-op protocol to serveOps and askNode.
type opProtocol struct {
	id       protocol.ID
	what     string // "keyring", "lift": names the protocol in logs and errors
	maxReq   int    // bytes of a request body
	maxReply int    // bytes of an answer body
	refused  byte   // the answer status of a refusal (an oversized request)
}

// serveOps answers p's streams from admitted nodes with handle(from, kind, body); a stream from
// anyone else is reset before a byte is read, and an oversized request is refused unread.
func (l *gossipLayer) serveOps(p opProtocol, handle func(from identity.ID, kind byte, body []byte) (byte, []byte)) {
	l.n.host.SetStreamHandler(p.id, func(s network.Stream) {
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(opTimeout))
		id, err := identity.IDFromPeer(s.Conn().RemotePeer())
		if err != nil || !l.n.admittedNode(id) {
			l.n.log.Warn("node: operator-op stream refused: not an admitted node", "protocol", string(p.id), "peer", s.Conn().RemotePeer().String())
			_ = s.Reset()
			return
		}
		kind, body, err := readFrame(s, p.maxReq)
		if tl, ok := err.(errFrameTooLarge); ok {
			writeAnswer(s, p.refused, fmt.Appendf(nil, "node: %s: signed op of %s", p.what, tl), p.maxReply)
			return
		}
		if err != nil {
			_ = s.Reset()
			return
		}
		status, reply := handle(id, kind, body)
		writeAnswer(s, status, reply, p.maxReply)
	})
}

// askNode sends one request to the node nd over p and returns its answer.
func (l *gossipLayer) askNode(ctx context.Context, p opProtocol, nd identity.Node, request []byte) (byte, []byte, error) {
	var mas []ma.Multiaddr
	for _, a := range nd.Addrs {
		if m, err := ma.NewMultiaddr(a); err == nil {
			mas = append(mas, m)
		}
	}
	pid := nd.ID.Peer()
	l.n.host.Peerstore().AddAddrs(pid, mas, peerstore.TempAddrTTL)
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	s, err := l.n.host.NewStream(ctx, pid, p.id)
	if err != nil {
		return 0, nil, fmt.Errorf("node: %s: open stream: %w", p.what, err)
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if _, err := s.Write(request); err != nil {
		_ = s.Reset()
		return 0, nil, fmt.Errorf("node: %s: send: %w", p.what, err)
	}
	status, answer, err := readFrame(s, p.maxReply)
	if err != nil {
		_ = s.Reset()
		return 0, nil, fmt.Errorf("node: %s: answer: %w", p.what, err)
	}
	return status, answer, nil
}

// askOthers calls ask for every admitted node but this one, in parallel, and returns the
// results in node-ID order.
func askOthers[R any](ctx context.Context, l *gossipLayer, ask func(context.Context, identity.Node) R) []R {
	var nodes []identity.Node
	l.n.consensusNode().Read(func(r *identity.Registry) { nodes = r.Nodes() })
	nodes = slices.DeleteFunc(nodes, func(nd identity.Node) bool { return nd.ID == l.n.key.ID() })
	slices.SortFunc(nodes, func(a, b identity.Node) int { return strings.Compare(a.ID.String(), b.ID.String()) })
	out := make([]R, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Go(func() { out[i] = ask(ctx, nd) })
	}
	wg.Wait()
	return out
}
