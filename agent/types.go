package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
)

// The types an agent program sees. The Client (client.go) connects to a node over libp2p; the
// `vigil monitor` sidecar (agent/monitor) serves the same operations over local HTTP for agents
// written in any language.

// Registration is what the registry holds about this agent, as its node reported it at attach
// (and again whenever it changes).
type Registration struct {
	Name         string
	SpiffeID     string
	Status       string // active, quarantined, revoked, expired
	Labels       map[string]string
	Capabilities []string
	ExpiresAt    time.Time
	Node         identity.ID // the node the agent is attached to
}

// Message is one message delivered to an agent. Body is owned by the receiver.
type Message struct {
	ID         string      // unique per message, set by the sender's node
	From       string      // sender agent's name
	FromID     identity.ID // sender agent's peer ID
	To         string      // destination agent's name
	Capability string      // the capability the sender named; authorised at both nodes
	Body       []byte
	SentAt     time.Time // when the sender's node accepted it
}

// Receipt acknowledges a delivered message: the destination agent's node handed it to the agent.
type Receipt struct {
	ID      string
	Latency time.Duration // from Send to the receipt
}

// Handler handles one received message. Returning an error reports a failed delivery to the sender.
type Handler func(ctx context.Context, m Message) error

// Event is something the agent reports about itself: a tool call, a metric sample (cpu_usage,
// memory_bytes, … the names the policy uses), an error or anything else.
type Event struct {
	Kind  string            // tool_call, metric, error, custom
	Name  string            // the tool, metric or event name
	Value float64           // the metric value; for other kinds optional (e.g. a duration in seconds)
	Attrs map[string]string // small free-form attributes
	At    time.Time         // when it happened; zero means now
}

// RefusedError is returned when a node refuses an operation. Rule names the rule that refused it
// (for example "capability send:planner-2 not held by planner-1", "destination revoked"), Hop says
// where: "sender-node" or "receiver-node" or "receiver".
type RefusedError struct {
	Code   string // a stable machine-readable code: no_capability, unknown_destination, destination_inactive, sender_inactive, throttled, …
	Rule   string
	Hop    string
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused at %s: %s (%s): %s", e.Hop, e.Code, e.Rule, e.Reason)
}

// Is makes errors.Is(err, ErrThrottled) hold for a throttled refusal.
func (e *RefusedError) Is(target error) bool {
	return target == ErrThrottled && e.Code == agentproto.CodeThrottled
}

// ConnState is the client's connection state, reported on Notify.
type ConnState int

const (
	StateConnecting ConnState = iota // dialing or waiting to retry
	StateConnected                   // attached to a node, registration known
	StateCutOff                      // the node refused or closed the session: revoked, quarantined, expired, …
	StateClosed                      // Close was called
)

func (s ConnState) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateCutOff:
		return "cut_off"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("ConnState(%d)", int(s))
}

// ConnEvent is a change of connection state, with the reason the node gave when it cut the agent off.
type ConnEvent struct {
	State  ConnState
	Node   identity.ID
	Reason string
	At     time.Time
}
