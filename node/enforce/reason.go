package enforce

// Reason is why the gater admitted or refused a peer.
type Reason uint8

// Allowed reasons first, then refusals. NumReasons bounds the counters.
const (
	ReasonNode        Reason = iota + 1 // allowed: an admitted node
	ReasonOperator                      // allowed: an operator
	ReasonAgent                         // allowed: an active, unexpired agent
	ReasonBootstrap                     // allowed: a configured bootstrap peer, before genesis is known
	ReasonUnknown                       // refused: the key is not in the registry (or was rotated out)
	ReasonRevoked                       // refused: a revoked agent
	ReasonQuarantined                   // refused: a quarantined agent
	ReasonExpired                       // refused: an agent whose registration has expired
	ReasonStale                         // refused: strict mode, the view is older than max_staleness
	ReasonNoView                        // refused: no registry view yet
	NumReasons                          // number of reasons + 1 (index 0 is unused)
)

var reasonNames = [NumReasons]string{"", "node", "operator", "agent", "bootstrap", "unknown", "revoked",
	"quarantined", "expired", "stale", "no_view"}

// String returns a stable label value: "node", "revoked", "no_view", …
func (r Reason) String() string {
	if r == 0 || r >= NumReasons {
		return "invalid"
	}
	return reasonNames[r]
}

// Allowed reports whether the reason admits the peer.
func (r Reason) Allowed() bool { return r >= ReasonNode && r <= ReasonBootstrap }
