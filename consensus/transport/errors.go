package transport

import (
	"errors"
	"net"
)

// Sentinel errors. Callers match them with errors.Is; every error returned by this package wraps
// one of them (or an error from libp2p) under the "transport:" prefix.
var (
	// ErrUnauthorized: the Authorizer refused the peer (or there is no Authorizer). Returned by
	// Dial before any stream is opened; inbound streams refused this way are reset instead.
	ErrUnauthorized = errors.New("transport: peer not authorized")
	// ErrBadAddress: a raft.ServerAddress is neither a multiaddr ending in /p2p/<id> nor a peer ID.
	ErrBadAddress = errors.New("transport: bad server address")
	// ErrInvalidConfig: Config.Validate refused a field; the message names it.
	ErrInvalidConfig = errors.New("transport: invalid config")
	// ErrDropped: the peer was dropped (DropPeer) while a stream to or from it was being set up.
	ErrDropped = errors.New("transport: peer dropped")
	// ErrClosed is net.ErrClosed, so generic accept loops (raft's among them) recognise a closed
	// listener. Accept and Dial return it, wrapped, once the StreamLayer is closed.
	ErrClosed = net.ErrClosed
)
