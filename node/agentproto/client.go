package agentproto

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// defaultIOTimeout bounds one exchange when ctx has no deadline.
const defaultIOTimeout = 10 * time.Second

// Attach connects h (whose identity is the agent key) to node, asks for its registration and
// returns it. A refusal returns an error wrapping ErrRefused and the reason's sentinel
// (ErrRevoked, ErrExpired, …); a node whose gater refused the session returns ErrUnreachable.
// Serve re-verification (ServeReverify) before attaching, or the node will cut the agent off at
// its first challenge.
func Attach(ctx context.Context, h host.Host, node peer.AddrInfo) (Registration, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultIOTimeout)
		defer cancel()
	}
	if err := h.Connect(ctx, node); err != nil {
		return Registration{}, fmt.Errorf("agentproto: attach: connect to %s: %w: %v", node.ID, ErrUnreachable, err)
	}
	s, err := h.NewStream(ctx, node.ID, AttachProtocol)
	if err != nil {
		return Registration{}, fmt.Errorf("agentproto: attach: open stream to %s: %w: %v", node.ID, ErrUnreachable, err)
	}
	defer s.Reset() // no-op after a clean Close
	if d, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(d)
	}
	if err := WriteMessage(s, &AttachRequest{Version: attachVersion}); err != nil {
		return Registration{}, fmt.Errorf("agentproto: attach: %w: %v", ErrUnreachable, err)
	}
	_ = s.CloseWrite()
	m, err := ReadMessage(s)
	if err != nil {
		return Registration{}, fmt.Errorf("agentproto: attach: %w: %w", ErrUnreachable, err)
	}
	_ = s.Close()
	switch m := m.(type) {
	case *Registration:
		return *m, nil
	case *Refusal:
		return Registration{}, fmt.Errorf("agentproto: attach: %w: %w: %s", ErrRefused, m.Code.Err(), m.Reason)
	}
	return Registration{}, fmt.Errorf("agentproto: attach: unexpected message type %d: %w", m.msgType(), ErrMalformed)
}

// MaxChallengeAhead is how far ahead of the agent's clock a challenge's timestamp may be for the
// agent to sign it. The signature is also the node's proof to other nodes that the agent is
// attached there (Presence), believed until it is RouterConfig.LocateMaxAge old: without this
// bound, a node the agent once attached to could collect proofs dated in the future and claim
// the agent long after it left.
const MaxChallengeAhead = 5 * time.Minute

// ServeReverify makes h answer the nodes' re-verification challenges by signing them with key
// (which must be the key of h's identity, or every challenge fails). A challenge that names a
// node other than the peer of the stream is refused (it could be relayed from elsewhere), and so
// is one dated more than MaxChallengeAhead ahead of the agent's clock.
func ServeReverify(h host.Host, key identity.PrivateKey) {
	self := h.ID()
	h.SetStreamHandler(ReverifyProtocol, func(s network.Stream) {
		_ = s.SetDeadline(time.Now().Add(defaultIOTimeout))
		m, err := ReadMessage(s)
		ch, ok := m.(*Challenge)
		if err != nil || !ok || ch.Node != s.Conn().RemotePeer() || ch.Timestamp.After(time.Now().Add(MaxChallengeAhead)) {
			_ = s.Reset()
			return
		}
		p := &Proof{}
		copy(p.Signature[:], key.Sign(ReverifyBytes(ch.Nonce, ch.Node, self, ch.Timestamp)))
		if err := WriteMessage(s, p); err != nil {
			_ = s.Reset()
			return
		}
		_ = s.Close()
	})
}
