package node

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/vigil-mesh/vigil/node/enforce"
)

// linkGate is the connection gater the host runs: the registry-backed enforce.Gater, plus a set
// of peers this node refuses to talk to over libp2p whatever the registry says. The set is a
// fault-injection seam for tests and sim/ (cutting a node off from the Raft leader while gossip
// still reaches it); it is empty in production.
type linkGate struct {
	*enforce.Gater
	blocked sync.Map // peer.ID → struct{}
}

var _ connmgr.ConnectionGater = (*linkGate)(nil)

func (g *linkGate) isBlocked(p peer.ID) bool { _, ok := g.blocked.Load(p); return ok }

func (g *linkGate) InterceptPeerDial(p peer.ID) bool {
	return !g.isBlocked(p) && g.Gater.InterceptPeerDial(p)
}

func (g *linkGate) InterceptAddrDial(p peer.ID, a ma.Multiaddr) bool {
	return !g.isBlocked(p) && g.Gater.InterceptAddrDial(p, a)
}

func (g *linkGate) InterceptSecured(d network.Direction, p peer.ID, a network.ConnMultiaddrs) bool {
	return !g.isBlocked(p) && g.Gater.InterceptSecured(d, p, a)
}

// BlockPeer cuts this node's libp2p links to p (Raft, agent protocol, everything) and refuses
// new ones until UnblockPeer. Gossip is not affected. For fault injection in tests and sim/.
func (n *Node) BlockPeer(p peer.ID) {
	n.links.blocked.Store(p, struct{}{})
	_ = n.host.Network().ClosePeer(p)
}

// UnblockPeer undoes BlockPeer.
func (n *Node) UnblockPeer(p peer.ID) { n.links.blocked.Delete(p) }
