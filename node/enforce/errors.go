package enforce

import "errors"

// Sentinel errors; every error this package returns wraps one of them (test with errors.Is).
var (
	// ErrInvalidConfig reports a Config or GaterConfig field with a bad value.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrClosed reports a call on a closed Enforcer.
	ErrClosed = errors.New("closed")
)
