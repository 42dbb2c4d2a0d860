package agentproto

import (
	"fmt"
	"strings"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

// Refusal codes of the messaging protocols (stable, machine-readable; docs/agents.md).
const (
	CodeNoCapability           = "no_capability"           // the sender holds no capability that allows it
	CodeUnknownDestination     = "unknown_destination"     // no registered agent by that name or ID
	CodeDestinationInactive    = "destination_inactive"    // revoked, quarantined or expired
	CodeSenderInactive         = "sender_inactive"         // the sender is not active (or unknown)
	CodeDestinationUnreachable = "destination_unreachable" // not attached to any reachable node
	CodeBadMessage             = "bad_message"             // malformed request, bad capability name
	CodeNotNode                = "not_node"                // a relay from a peer that is not an admitted node
	CodeNoHandler              = "no_handler"              // the destination has no handler for the capability
	CodeHandlerError           = "handler_error"           // the destination's handler returned an error
	CodeMsgUnavailable         = "unavailable"             // the node has no registry view yet
	CodeThrottled              = "throttled"               // the sender is throttled (Router.Throttle) and beyond its rate
)

// ValidateAction checks a capability named in a message: 1..MaxCapabilityLen bytes, no ':'
// (the target is the destination, not part of the name), no control characters or spaces.
func ValidateAction(c string) error {
	if c == "" || len(c) > identity.MaxCapabilityLen {
		return fmt.Errorf("capability %q must be 1..%d bytes", c, identity.MaxCapabilityLen)
	}
	for i := 0; i < len(c); i++ {
		if c[i] <= ' ' || c[i] == ':' || c[i] == 0x7f {
			return fmt.Errorf("capability %q: character %q not allowed (an action has no ':' target)", c, c[i])
		}
	}
	return nil
}

// Authorize is THE messaging rule (docs/agents.md), a pure function of two registry records,
// the capability named and now. Sending a message naming capability C to agent D is allowed only
// if the sender is active, D is active, and the sender holds "C:D", "C:*" or "C:k=v" where D
// carries label k=v. Anything else is refused (deny by default); the refusal names the rule.
// hop is recorded in the refusal.
func Authorize(sender, dest identity.Agent, capability string, now time.Time, hop Hop) *MsgRefusal {
	refuse := func(code, rule, reason string) *MsgRefusal {
		return &MsgRefusal{Code: code, Rule: rule, Hop: hop, Reason: reason}
	}
	if err := ValidateAction(capability); err != nil {
		return refuse(CodeBadMessage, "capability names an action", err.Error())
	}
	if st := sender.StatusAt(now); st != identity.StatusActive {
		return refuse(CodeSenderInactive, "sender must be active", fmt.Sprintf("sender %s is %s", sender.Name, st))
	}
	if st := dest.StatusAt(now); st != identity.StatusActive {
		return refuse(CodeDestinationInactive, "destination must be active", fmt.Sprintf("destination %s is %s", dest.Name, st))
	}
	if g := Grant(sender.Capabilities, capability, dest); g != "" {
		return nil
	}
	return refuse(CodeNoCapability,
		fmt.Sprintf("capability %s:%s not held by %s", capability, dest.Name, sender.Name),
		fmt.Sprintf("%s holds none of %s:%s, %s:*, %s:<label> matching %s", sender.Name, capability, dest.Name, capability, capability, dest.Name))
}

// Grant returns the capability in caps that allows sending capability to dest ("" if none).
// caps is sorted; each entry is ACTION or ACTION:TARGET, TARGET an agent name, "*", or "k=v".
func Grant(caps []string, capability string, dest identity.Agent) string {
	for _, c := range caps {
		action, target, ok := strings.Cut(c, ":")
		if !ok || action != capability {
			continue
		}
		if target == "*" || target == dest.Name {
			return c
		}
		if k, v, ok := strings.Cut(target, "="); ok {
			if dv, has := dest.Labels[k]; has && dv == v {
				return c
			}
		}
	}
	return ""
}
