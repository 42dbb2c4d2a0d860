package transport

import (
	"fmt"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
)

// NewTransport returns a raft.NetworkTransport over a StreamLayer on RaftProtocol. Closing the
// transport closes the StreamLayer too; the caller keeps the StreamLayer for DropPeer and Stats.
func NewTransport(h host.Host, auth Authorizer, cfg Config) (*raft.NetworkTransport, *StreamLayer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	if h == nil {
		return nil, nil, fmt.Errorf("transport: nil host: %w", ErrInvalidConfig)
	}
	sl := NewStreamLayer(h, RaftProtocol, auth, cfg.Logger)
	t := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  sl,
		MaxPool: cfg.MaxPool,
		Timeout: cfg.Timeout,
		Logger:  NewHCLogger(cfg.Logger, "raft-net"),
	})
	return t, sl, nil
}
