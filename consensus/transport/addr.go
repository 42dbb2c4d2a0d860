package transport

import (
	"fmt"
	"strings"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// maxAddressLen caps a ServerAddress before it is parsed (addresses come from the replicated raft
// configuration). A multiaddr with a DNS name and a peer ID fits easily.
const maxAddressLen = 1024

// ServerAddress returns the raft address of a peer: addrs[0] with /p2p/<id> appended (any /p2p
// suffix already on it is replaced), or the bare peer ID when addrs is empty. Callers put the
// preferred address first.
func ServerAddress(id peer.ID, addrs []multiaddr.Multiaddr) raft.ServerAddress {
	for _, a := range addrs {
		if len(a) == 0 {
			continue
		}
		if transport, _ := peer.SplitAddr(a); len(transport) > 0 {
			return raft.ServerAddress(transport.String() + "/p2p/" + id.String())
		}
	}
	return raft.ServerAddress(id.String())
}

// ParseServerAddress parses a raft address: a multiaddr ending in /p2p/<id>, or a bare peer ID (then
// the returned AddrInfo has no addresses and the peerstore must know some). Errors wrap
// ErrBadAddress.
func ParseServerAddress(a raft.ServerAddress) (peer.AddrInfo, error) {
	s := string(a)
	if len(s) > maxAddressLen {
		return peer.AddrInfo{}, fmt.Errorf("transport: address of %d bytes exceeds %d: %w", len(s), maxAddressLen, ErrBadAddress)
	}
	if s == "" {
		return peer.AddrInfo{}, fmt.Errorf("transport: empty address: %w", ErrBadAddress)
	}
	if !strings.HasPrefix(s, "/") {
		id, err := peer.Decode(s)
		if err != nil {
			return peer.AddrInfo{}, fmt.Errorf("transport: address %q: %w: %v", s, ErrBadAddress, err)
		}
		return peer.AddrInfo{ID: id}, nil
	}
	ma, err := multiaddr.NewMultiaddr(s)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("transport: address %q: %w: %v", s, ErrBadAddress, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(ma)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("transport: address %q: must end in /p2p/<peer id>: %w: %v", s, ErrBadAddress, err)
	}
	return *info, nil
}
