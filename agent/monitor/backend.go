package monitor

import (
	"context"

	"github.com/vigil-mesh/vigil/agent"
	"github.com/vigil-mesh/vigil/identity"
)

// Backend is the part of *agent.Client the sidecar uses. Every method may be called from any
// goroutine.
type Backend interface {
	// ID returns the agent's peer ID. It does not block.
	ID() identity.ID
	// Registration returns what the node last reported about the agent (zero before the first
	// attach). It does not block.
	Registration() agent.Registration
	// Send delivers body to the agent named to, naming capability, and blocks until the receipt,
	// a refusal (*agent.RefusedError) or ctx's end. The backend does not keep body.
	Send(ctx context.Context, to, capability string, body []byte) (agent.Receipt, error)
	// Handle installs h for messages naming capability ("" = every other capability). h is called
	// from the backend's goroutines and owns the message.
	Handle(capability string, h agent.Handler)
	// Report sends events to the node; it blocks until they are handed over or ctx ends.
	Report(ctx context.Context, events ...agent.Event) error
	// Notify returns the channel of connection state changes. The sidecar has one reader.
	Notify() <-chan agent.ConnEvent
}
