package enforce

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// Agents returns every agent record of the View, in registry order. The slice and the records'
// maps and slices are shared with the View: callers must not modify them.
func (v *View) Agents() []identity.Agent { return v.agents }

// Nodes returns the peer IDs of the admitted nodes in the View, in no particular order.
func (v *View) Nodes() []peer.ID {
	var out []peer.ID
	for p, e := range v.entries {
		if e.Role == identity.RoleNode {
			out = append(out, p)
		}
	}
	return out
}
