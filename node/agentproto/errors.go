package agentproto

import "errors"

// Sentinel errors; every error this package returns wraps one of them (test with errors.Is).
var (
	// ErrMalformed: a message does not follow the wire format (also wraps ErrTooLarge on a cap).
	ErrMalformed = errors.New("malformed message")
	// ErrTooLarge: a length exceeds its cap.
	ErrTooLarge = errors.New("too large")
	// ErrRefused: the node refused the attach; the error also wraps the reason's sentinel below.
	ErrRefused = errors.New("attach refused")
	// Refusal and re-verification reasons.
	ErrUnknownAgent = errors.New("unknown agent")
	ErrNotAgent     = errors.New("not an agent")
	ErrRevoked      = errors.New("revoked")
	ErrQuarantined  = errors.New("quarantined")
	ErrExpired      = errors.New("registration expired")
	ErrUnavailable  = errors.New("registry unavailable")
	ErrBadRequest   = errors.New("bad request")
	// ErrUnreachable: no session with the node (its gater refused us, or the network failed).
	ErrUnreachable = errors.New("node unreachable")
	// ErrBadSignature: a re-verification proof does not verify under the registered key.
	ErrBadSignature = errors.New("bad signature")
	// ErrChallengeFailed: the agent did not answer a challenge in time or correctly.
	ErrChallengeFailed = errors.New("challenge failed")
	// ErrInvalidArgument: a method argument is out of bounds (Router.Throttle).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrInvalidConfig: a Config field has a bad value.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrClosed: the server is closed.
	ErrClosed = errors.New("closed")
)
