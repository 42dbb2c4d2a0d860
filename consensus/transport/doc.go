// Package transport carries hashicorp/raft traffic over libp2p streams (protocol /vigil/raft/1), so
// raft is mutually authenticated by node keys and spoken only with peers the node admits.
//
// A StreamLayer is a raft.StreamLayer: Dial opens a libp2p stream and wraps it as a net.Conn; the
// stream handler hands inbound streams to Accept. NewTransport wraps it in raft's NetworkTransport.
// Raft server addresses are multiaddrs ending in /p2p/<peer id> (see ServerAddress), or a bare peer
// ID when the peerstore already knows the peer's addresses.
//
//	auth := func(p peer.ID) error { // consult the local registry
//		if !admitted(p) {
//			return errNotAdmitted
//		}
//		return nil
//	}
//	trans, layer, err := transport.NewTransport(h, auth, transport.DefaultConfig())
//	cfg := raft.DefaultConfig()
//	cfg.Logger = transport.NewHCLogger(logger, "raft")
//	r, err := raft.NewRaft(cfg, fsm, logs, stable, snaps, trans)
//	…
//	// On revocation or removal of node p: refuse it first, then cut its streams.
//	markRefused(p)
//	layer.DropPeer(p)
//
// Invariants:
//   - Deny by default: a nil Authorizer refuses every peer.
//   - The Authorizer is consulted for every new stream: in Dial before any connection or stream is
//     attempted (refusal → error wrapping ErrUnauthorized naming the peer), and for every inbound
//     stream before Accept sees it (refusal → the stream is reset, counted in Stats, logged at
//     debug). No raft byte flows to or from a refused peer.
//   - DropPeer resets every open stream of the peer; a stream to or from it that is being set up at
//     the same time fails too. With the Authorizer flipped first, no stream of that peer survives.
//   - Close is idempotent, removes the handler, unblocks Accept with ErrClosed (net.ErrClosed),
//     resets every open stream and leaves no goroutine behind. It does not close the host.
//   - Address strings are capped at 1024 bytes before parsing.
package transport
