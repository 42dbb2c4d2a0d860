package agent

import "errors"

// Sentinel errors (test with errors.Is). A refusal by a node is a *RefusedError instead.
var (
	// ErrInvalidConfig: a Config field has a bad value.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrInvalidArgument: a Send, Report or rotation argument is out of bounds.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrClosed: the Client is closed.
	ErrClosed = errors.New("client closed")
	// ErrNotConnected: the node connection failed during the call (the message may or may not
	// have been delivered; a retry may deliver it twice).
	ErrNotConnected = errors.New("not connected")
	// ErrThrottled matches (errors.Is) a *RefusedError with code "throttled": the agent's node
	// throttles it (the collective response's throttle step) and the send was beyond its rate.
	// The agent stays connected; RefusedError.Rule says the rate and when the throttle ends,
	// and Reason when the next send is allowed.
	ErrThrottled = errors.New("throttled")
	// ErrBadRotationRequest: a rotation request does not parse or does not verify.
	ErrBadRotationRequest = errors.New("bad rotation request")
)
